//! The thick-mode bundle against the real multus-daemon v4.3.0. With `multusConfigFile` set
//! (not `auto`) the daemon copies that file into `cniConfigDir` by truncating the
//! destination first; were the destination the file itself, it would be left empty. The
//! rendered daemon config keeps the copy in `multus.d`, so the agent's file survives; the
//! naive setting empties it, and the agent repairs it.

use serde_json::{Value, json};
use std::time::Duration;

use multus_e2e::ControlPlane;
use multus_e2e::agent::RunningAgent;
use multus_e2e::binaries::bin;
use multus_e2e::operator::eventually;
use multus_e2e::scenario::OneNode;

const MULTUS_CONF: &str = "etc/cni/net.d/00-multus.conf";
const DAEMON_CONF: &str = "etc/cni/net.d/multus.d/daemon-config.json";

/// Runs multus-daemon with `config` until it exits (it stops once it needs an in-cluster
/// client, after the copy this test is about).
async fn run_daemon(config: &std::path::Path) -> String {
    let daemon = bin("multus-daemon").unwrap();
    let mut child = tokio::process::Command::new(daemon)
        .arg("-config")
        .arg(config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    if waited.is_err() {
        let _ = child.start_kill();
    }
    let out = child.wait_with_output().await.unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_copies_beside_our_config_and_the_naive_setting_would_empty_it() {
    let _slot = multus_e2e::test_slot!();
    let cp = ControlPlane::shared();
    let scenario = OneNode::start_with(cp, "thick", |root| {
        // The daemon sees the host under the test's host root.
        json!({ "mode": "thick", "thick": { "daemonPathPrefix": root.display().to_string() } })
    })
    .await
    .unwrap();
    let root = scenario.root.path();
    let agent = RunningAgent::start_as(
        &scenario.agent_kubeconfig,
        &scenario.ns,
        &scenario.node,
        root,
    )
    .await
    .unwrap();
    agent
        .wait_ready("agent applied the thick bundle", Duration::from_secs(60))
        .await;
    let ours = std::fs::read(root.join(MULTUS_CONF)).unwrap();
    assert!(!ours.is_empty());
    let shim: Value = serde_json::from_slice(&ours).unwrap();
    assert_eq!(shim["type"], "multus-shim");
    assert_eq!(
        shim["clusterNetwork"],
        format!("{}/etc/cni/net.d/10-calico.conflist", root.display())
    );

    // The rendered daemon config: the daemon copies our file into multus.d and leaves it be.
    let output = run_daemon(&root.join(DAEMON_CONF)).await;
    assert_eq!(
        std::fs::read(root.join(MULTUS_CONF)).unwrap(),
        ours,
        "daemon output:\n{output}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/cni/net.d/multus.d/00-multus.conf")).unwrap(),
        ours,
        "the daemon's copy lands in multus.d; daemon output:\n{output}"
    );

    // The naive setting (copy into the directory the file is in) empties the config.
    assert!(agent.terminate().await.is_some_and(|s| s.success()));
    let mut naive: Value =
        serde_json::from_slice(&std::fs::read(root.join(DAEMON_CONF)).unwrap()).unwrap();
    naive["cniConfigDir"] = json!(format!("{}/etc/cni/net.d", root.display()));
    let naive_path = root.join("naive-daemon-config.json");
    std::fs::write(&naive_path, serde_json::to_vec(&naive).unwrap()).unwrap();
    let output = run_daemon(&naive_path).await;
    assert_eq!(
        std::fs::read(root.join(MULTUS_CONF)).unwrap().len(),
        0,
        "upstream's self-copy no longer empties the file? daemon output:\n{output}"
    );

    // The agent puts it back.
    let agent = RunningAgent::start_as(
        &scenario.agent_kubeconfig,
        &scenario.ns,
        &scenario.node,
        root,
    )
    .await
    .unwrap();
    eventually(
        "agent restored the emptied config",
        Duration::from_secs(60),
        || async {
            if std::fs::read(root.join(MULTUS_CONF)).is_ok_and(|b| b == ours) {
                Ok(())
            } else {
                Err(agent.log_tail())
            }
        },
    )
    .await;
    agent.terminate().await;
    scenario.operator.stop().await;
}

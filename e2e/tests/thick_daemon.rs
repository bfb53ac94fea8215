//! The thick-mode bundle against the real multus-daemon v4.3.0, run as the node pod's
//! container runs it (in-cluster credentials of the agent's account). Upstream's daemon exits
//! right after it starts serving when `multusConfigFile` names a file (upstream #1366), so
//! the rendered daemon config runs it in `auto` mode with its own config in `multus.d` as
//! its "primary": it stays up, writes its generated config only into `multus.d`, removes only
//! that one on exit, and never touches the agent's `00-multus.conf`.

use serde_json::{Value, json};
use std::time::Duration;

use multus_e2e::ControlPlane;
use multus_e2e::binaries::bin;
use multus_e2e::operator::eventually;
use multus_e2e::podnet::{AgentNode, interfaces_in, printed};
use multus_e2e::process::expect_success;
use multus_e2e::thick::{Daemon, Launch};

/// Our agent and the daemon, on a loaded 2-core machine (a second or two idle).
const WAIT: Duration = Duration::from_secs(60);

#[multus_e2e::test]
async fn the_real_daemon_stays_up_and_writes_and_removes_only_its_own_file() {
    let cp = ControlPlane::shared();
    let mut node = AgentNode::with_mode(cp, "thick", "thick").await.unwrap();
    node.start(cp, json!({})).await.unwrap();
    let ours = std::fs::read(node.multus_config()).unwrap();
    let shim: Value = serde_json::from_slice(&ours).unwrap();
    assert_eq!(shim["type"], "multus-shim");
    assert_eq!(
        shim["clusterNetwork"],
        node.host.path("net.d/10-bridge.conflist")
    );
    let generated = node.host.root().join("net.d/multus.d/00-multus.conf");

    let daemon = node.start_daemon(cp).await.unwrap();
    eventually("the daemon's config in multus.d", WAIT, || async {
        if generated.exists() {
            Ok(())
        } else {
            Err(daemon.log())
        }
    })
    .await;
    let pod = node.pod("client", "").await.unwrap();
    let added = node.shim("ADD", &pod).await.unwrap();
    assert!(
        added.status.success(),
        "{}\n{}",
        printed(&added),
        daemon.log()
    );
    assert_eq!(
        interfaces_in(&pod.netns).unwrap(),
        vec!["lo".to_string(), "eth0".to_string()]
    );
    let deleted = node.shim("DEL", &pod).await.unwrap();
    expect_success(&deleted, "multus-shim DEL");
    assert_eq!(std::fs::read(node.multus_config()).unwrap(), ours);

    // SIGTERM: the daemon removes the config it generated, and only that one.
    daemon.stop().await;
    assert!(!generated.exists(), "the daemon left its generated config");
    assert_eq!(std::fs::read(node.multus_config()).unwrap(), ours);
    node.stop().await;
}

#[multus_e2e::test]
async fn with_multus_config_file_naming_our_file_the_real_daemon_exits_right_after_starting() {
    let cp = ControlPlane::shared();
    let mut node = AgentNode::with_mode(cp, "thickpath", "thick")
        .await
        .unwrap();
    node.start(cp, json!({})).await.unwrap();
    // The rendering before upstream #1366 was known: the daemon copies our file into
    // multus.d and serves; then its main returns.
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(node.daemon_config()).unwrap()).unwrap();
    config["multusConfigFile"] = json!(node.multus_config().display().to_string());
    config["logLevel"] = json!("verbose");
    config["logToStderr"] = json!(true);
    let path = node.host.root().join("path-daemon-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let token = node.identities.agent_token(&node.node).await.unwrap();
    let launch = Launch {
        binary: bin("multus-daemon").unwrap(),
        config: &path,
        socket_dir: node.host.root().join("run/multus"),
        token: &token,
        node: &node.node,
        work: work.path(),
        hide: Vec::new(),
    };
    let mut daemon = Daemon::start(cp, &launch).unwrap();
    // It lists pods and NADs, serves, and returns from main: seconds on a busy machine.
    let status = daemon.wait_exit(WAIT).await;
    assert!(
        status.is_some(),
        "the daemon still runs; it printed:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    eprintln!(
        "multus-daemon v4.3.0 with multusConfigFile set exited ({status:?}) and printed:\n{log}"
    );
    assert!(log.contains("API readiness check done!"), "{log}");
    daemon.stop().await;
    node.stop().await;
}

//! Migration from upstream's Multus DaemonSet: a node prepared by upstream's thin
//! entrypoint (the release `e2e/testenv` builds, v4.3.0, with its DaemonSet's arguments)
//! and left behind when that DaemonSet is deleted. With the chart's take-over value the
//! agent backs upstream's files up outside every CNI directory and replaces them without
//! the node ever lacking a Multus config; without it the agent touches nothing and says
//! which value to set.

use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use multus_crds::bundle::feedback;
use multus_e2e::agent::{Launch, RunningAgent, snapshot};
use multus_e2e::fixtures::{self, BoundTo};
use multus_e2e::process::expect_success;
use multus_e2e::scenario::OneNode;
use multus_e2e::upstream::{InCluster, leave_thin_node};
use multus_e2e::{ControlPlane, E2eError};

/// Our operator and agent, on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
const BACKUP: &str = "var/lib/multus-node-agent/upstream-backup";
const MULTUS_CONF: &str = "etc/cni/net.d/00-multus.conf";
const KUBECONFIG: &str = "etc/cni/net.d/multus.d/multus.kubeconfig";

/// A scenario whose node upstream's thin DaemonSet prepared and left; returns upstream's
/// files (host root relative paths and bytes).
async fn node_left_by_upstream(
    prefix: &str,
) -> (OneNode, tempfile::TempDir, BTreeMap<String, Vec<u8>>) {
    let cp = ControlPlane::shared();
    let scenario = OneNode::start(cp, prefix, json!({})).await.unwrap();
    // The token upstream's pod would hold: its ServiceAccount's, bound to the node.
    let node: Node = Api::all(scenario.client.clone())
        .get(&scenario.node)
        .await
        .unwrap();
    let uid = node.metadata.uid.unwrap_or_default();
    let token = fixtures::token(
        &scenario.client,
        &scenario.ns,
        "multus",
        BoundTo::Node {
            name: &scenario.node,
            uid: &uid,
        },
        3600,
    )
    .await
    .unwrap()
    .status
    .and_then(|s| s.token)
    .unwrap_or_default();
    let work = tempfile::tempdir().unwrap();
    let written = leave_thin_node(
        scenario.root.path(),
        &InCluster { token: &token, cp },
        work.path(),
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        written,
        vec![
            "/etc/cni/net.d/00-multus.conf",
            "/etc/cni/net.d/multus.d/multus.kubeconfig"
        ],
        "upstream's thin entrypoint wrote its config and kubeconfig"
    );
    let files = snapshot(scenario.root.path())
        .into_iter()
        .filter(|(p, _)| p == MULTUS_CONF || p == KUBECONFIG)
        .collect();
    (scenario, work, files)
}

async fn agent(scenario: &OneNode, take_over_upstream: bool) -> Result<RunningAgent, E2eError> {
    scenario
        .agent_with(&Launch {
            take_over_upstream,
            ..Launch::default()
        })
        .await
}

async fn wait_state(scenario: &OneNode, state: &str) -> BTreeMap<String, String> {
    scenario.wait_state(state, WAIT).await
}

fn read(root: &Path, path: &str) -> Vec<u8> {
    std::fs::read(root.join(path)).unwrap_or_default()
}

#[multus_e2e::test]
async fn with_the_take_over_value_the_agent_replaces_upstreams_files_keeps_a_backup_and_the_node_is_ready()
 {
    let (scenario, _work, upstream) = node_left_by_upstream("takeover").await;
    let root = scenario.root.path();

    // Every removal in the CNI config directory, as the kernel reports it: replacing
    // upstream's config must never leave the directory without one.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && matches!(e.kind, notify::EventKind::Remove(_))
        {
            for path in e.paths {
                let _ = tx.send(path.display().to_string());
            }
        }
    })
    .unwrap();
    notify::Watcher::watch(
        &mut watcher,
        &root.join("etc/cni/net.d"),
        notify::RecursiveMode::NonRecursive,
    )
    .unwrap();

    let agent = agent(&scenario, true).await.unwrap();
    wait_state(&scenario, "Applied").await;
    let config = format!("mcfg/{}", scenario.ns);
    let wait = ["wait", "--for=condition=Ready", &config, "--timeout=60s"];
    let out = ControlPlane::shared()
        .kubectl_from_async(&wait)
        .await
        .unwrap();
    expect_success(&out, "kubectl wait");

    for (path, bytes) in &upstream {
        assert_eq!(
            &read(root, &format!("{BACKUP}/{path}")),
            bytes,
            "the backup of {path} holds upstream's bytes"
        );
        assert_ne!(&read(root, path), bytes, "{path} is the agent's now");
    }
    let ours: serde_json::Value = serde_json::from_slice(&read(root, MULTUS_CONF)).unwrap();
    assert_eq!(ours["confDir"], "/etc/cni/multus/net.d", "{ours}");
    assert_eq!(ours["delegates"][0]["name"], "k8s-pod-network", "{ours}");
    let removed: Vec<String> = rx.try_iter().collect();
    assert!(
        removed.iter().all(|p| !p.ends_with("/00-multus.conf")),
        "the Multus config was removed at some point: {removed:?}"
    );
    assert!(
        agent
            .metrics()
            .await
            .contains("multus_node_agent_upstream_backups_total 2"),
        "{}",
        agent.metrics().await
    );

    // A restart takes nothing over again: the files are the agent's own.
    assert!(agent.terminate().await.is_some_and(|s| s.success()));
    let before = snapshot(root);
    let agent = self::agent(&scenario, true).await.unwrap();
    agent.wait_ready("restarted agent", WAIT).await;
    assert!(
        agent
            .metrics()
            .await
            .contains("multus_node_agent_upstream_backups_total 0")
    );
    assert_eq!(snapshot(root), before);
    scenario.finish(agent).await;
}

#[multus_e2e::test]
async fn without_the_take_over_value_the_agent_touches_nothing_and_names_the_value() {
    let (scenario, _work, upstream) = node_left_by_upstream("notakeover").await;
    let root = scenario.root.path();
    let agent = agent(&scenario, false).await.unwrap();
    let annotations = wait_state(&scenario, "Failed").await;
    let message = &annotations[feedback::LAST_ERROR];
    assert!(
        message.contains("agent.takeOverUpstream=true") && message.contains("00-multus.conf"),
        "{message}"
    );
    for (path, bytes) in &upstream {
        assert_eq!(&read(root, path), bytes, "{path} is untouched");
    }
    assert!(!root.join(BACKUP).exists(), "no backup without the value");
    assert!(!agent.is_ready().await);
    scenario.finish(agent).await;
}

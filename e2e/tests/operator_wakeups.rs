//! What wakes the operator. Alone in its test binary (its own control plane): the node
//! trigger is cluster-wide, so Nodes that other tests create or relabel would wake this
//! test's operator too and blur what is measured.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

use multus_e2e::ControlPlane;
use multus_e2e::operator::eventually;
use multus_e2e::scenario::OneNode;

/// Deadline for what the operator does (about a second when idle), on a busy machine.
const WAIT: Duration = Duration::from_secs(60);

/// Waits until `count` has stood still for a second, and returns it.
async fn settled(count: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut last = count();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(1) {
        assert!(Instant::now() < deadline, "still moving: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if count() != last {
            last = count();
            since = Instant::now();
        }
    }
    last
}

#[multus_e2e::test]
async fn node_status_heartbeats_never_wake_the_operator_and_label_changes_do() {
    // One node, the operator, and a MultusConfig selecting the node.
    let scenario = OneNode::start(ControlPlane::shared(), "heartbeat", json!({}))
        .await
        .unwrap();
    let (op, node) = (&scenario.operator, &scenario.node);
    eventually("the node's bundle", WAIT, || async {
        match scenario.configmap().await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let before = settled(|| op.metrics.reconciles.get()).await;

    // What a kubelet does every few seconds: rewrite the Node's status.
    let nodes: Api<Node> = Api::all(scenario.client.clone());
    for beat in 0..10 {
        let status = json!({ "status": { "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": format!("heartbeat {beat}"),
            "lastHeartbeatTime": format!("2026-01-01T00:00:{beat:02}Z"),
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }] } });
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        // Beats further apart than the operator's debounce, so each would count.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        settled(|| op.metrics.reconciles.get()).await,
        before,
        "a status heartbeat woke the operator"
    );

    // A label is an input of node selection: it wakes the operator.
    let patch = json!({ "metadata": { "labels": { "e2e.multus.dev/rack": "r1" } } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("a reconcile after the label change", WAIT, || async {
        match op.metrics.reconciles.get() {
            n if n > before => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    scenario.operator.stop().await;
}

//! The reconcile decisions (pure): writes, removal marks, deletions and cleanup.

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::{AgentState, feedback};
use multus_operator::desired::{Decisions, OwnedConfigMap, Snapshot, decide, decide_cleanup};
use multus_operator::render::RenderDefaults;
use multus_operator::rollout::NodeState;

const TIMEOUT: Duration = Duration::from_secs(300);
/// When most removal marks in these tests were set.
const MARKED: &str = "2026-01-01T00:00:00Z";

fn config() -> MultusConfig {
    serde_saphyr::from_str(
        "apiVersion: operator.multus.dev/v1alpha1\nkind: MultusConfig\nmetadata: { name: c, uid: u1, generation: 2 }\nspec:\n  primary: { auto: {} }\n  nodeSelector: { matchLabels: { pool: a } }\n",
    )
    .unwrap()
}

fn node(name: &str, pool: &str) -> Node {
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{ name: {name}, labels: {{ pool: {pool} }} }}\n"
    ))
    .unwrap()
}

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

/// An owned ConfigMap for `node`, optionally marked for removal at `marked_at`, with the
/// agent's state.
fn owned(node: &str, marked_at: Option<&str>, agent: Option<AgentState>) -> OwnedConfigMap {
    let mut annotations =
        BTreeMap::from([("operator.multus.dev/node".to_string(), node.to_string())]);
    if let Some(at) = marked_at {
        annotations.insert("operator.multus.dev/remove".into(), "true".into());
        annotations.insert("operator.multus.dev/remove-requested-at".into(), at.into());
    }
    if let Some(state) = agent {
        annotations.insert(feedback::STATE.into(), state.as_str().into());
    }
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(format!("multus-node-{node}"));
    cm.metadata.annotations = Some(annotations);
    OwnedConfigMap::from_configmap(&cm).unwrap()
}

fn snapshot<'a>(
    config: &'a MultusConfig,
    nodes: &'a [Node],
    owned: Vec<OwnedConfigMap>,
    now: &str,
) -> Snapshot<'a> {
    Snapshot {
        config,
        all_configs: vec![config],
        nodes: nodes.iter().collect(),
        nads: vec![],
        namespaces: BTreeMap::new(),
        owned: owned.into_iter().map(|o| (o.node.clone(), o)).collect(),
        old_status: None,
        now: time(now),
    }
}

/// `decide_cleanup` at `now`, with the named nodes still in the cluster: the decisions and
/// the nodes cleanup still waits for.
fn cleanup_at(now: &str, live: &[&str], owned: Vec<OwnedConfigMap>) -> (Decisions, Vec<String>) {
    let c = config();
    let nodes: Vec<Node> = live.iter().map(|name| node(name, "a")).collect();
    decide_cleanup(&snapshot(&c, &nodes, owned, now), TIMEOUT)
}

#[test]
fn new_nodes_are_written_and_counted_as_updating() {
    let c = config();
    let nodes = [node("n1", "a"), node("n2", "a"), node("n3", "b")];
    let d = decide(
        &snapshot(&c, &nodes, vec![], "2026-01-01T00:00:00Z"),
        &RenderDefaults::default(),
        TIMEOUT,
    );
    let written: Vec<&str> = d.write.iter().map(String::as_str).collect();
    assert_eq!(written, vec!["n1", "n2"]);
    assert!(d.findings.nodes.values().all(|s| *s == NodeState::Updating));
    assert_eq!(d.findings.generation, Some(2));
}

#[test]
fn removal_is_marked_then_confirmed_or_timed_out_and_gone_nodes_go_at_once() {
    let c = config();
    let nodes = [
        node("unmarked", "b"),
        node("confirmed", "b"),
        node("silent", "b"),
        node("late", "b"),
    ];
    let owned_cms = vec![
        owned("unmarked", None, Some(AgentState::Applied)),
        owned("confirmed", Some(MARKED), Some(AgentState::Removed)),
        owned("silent", Some(MARKED), Some(AgentState::Applied)),
        owned(
            "late",
            Some("2026-01-01T00:04:00Z"),
            Some(AgentState::Applied),
        ),
        owned("vanished", None, None),
    ];
    let d = decide(
        &snapshot(&c, &nodes, owned_cms, "2026-01-01T00:05:01Z"),
        &RenderDefaults::default(),
        TIMEOUT,
    );
    assert_eq!(d.mark_removal, vec!["unmarked"]);
    let mut deleted = d.delete.clone();
    deleted.sort();
    // confirmed by its agent; silent for longer than the timeout; vanished node.
    assert_eq!(
        deleted,
        vec![
            "multus-node-confirmed",
            "multus-node-silent",
            "multus-node-vanished"
        ]
    );
    // "late" was marked a minute ago: look again when its timeout runs out.
    assert_eq!(d.requeue_after, Some(Duration::from_secs(239)));
    // Only the silent one is reported as given up: the others confirmed or no longer exist.
    assert_eq!(d.given_up, vec!["silent"]);
}

#[test]
fn cleanup_waits_for_every_live_node_that_has_not_confirmed() {
    let owned_cms = vec![
        owned("n1", Some(MARKED), Some(AgentState::Removed)),
        owned("n2", None, Some(AgentState::Applied)),
        owned("gone", Some(MARKED), None),
    ];
    let (d, pending) = cleanup_at("2026-01-01T00:00:10Z", &["n1", "n2"], owned_cms);
    assert_eq!(d.mark_removal, vec!["n2"]);
    assert_eq!(pending, vec!["n2"]);
    assert!(
        d.findings
            .cleanup
            .unwrap()
            .contains("waiting for 1 node to confirm file removal: n2")
    );
}

#[test]
fn cleanup_that_times_out_on_a_node_says_so_instead_of_claiming_confirmation() {
    let owned_cms = vec![
        owned("n1", Some(MARKED), Some(AgentState::Removed)),
        owned("offline", Some(MARKED), Some(AgentState::Applied)),
    ];
    let (d, pending) = cleanup_at("2026-01-01T00:05:01Z", &["n1", "offline"], owned_cms);
    assert!(pending.is_empty(), "the timeout releases the finalizer");
    assert_eq!(d.given_up, vec!["offline"]);
    let message = d.findings.cleanup.unwrap();
    assert!(
        message
            .contains("gave up on 1 node that did not confirm file removal within 300 s: offline"),
        "{message}"
    );
}

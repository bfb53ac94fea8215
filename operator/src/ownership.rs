//! Which MultusConfig owns which node. Two configs selecting one node conflict; the oldest
//! (by creation time, then name) wins and the others report the node as conflicted.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

use multus_crds::MultusConfig;
use multus_crds::multus_config::MultusConfigSpec;

/// A MultusConfig's node selector that cannot be evaluated.
#[derive(Debug, thiserror::Error)]
#[error("spec.nodeSelector: {0}")]
pub struct SelectorError(String);

impl SelectorError {
    /// The Event reason and status condition reason.
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }
}

/// A MultusConfig's node selector, parsed once for all nodes.
#[derive(Clone, Debug)]
pub struct NodeSelector(Selector);

impl NodeSelector {
    pub fn of(spec: &MultusConfigSpec) -> Result<NodeSelector, SelectorError> {
        spec.node_selector
            .clone()
            .unwrap_or_default()
            .try_into()
            .map(NodeSelector)
            .map_err(|e: kube::core::ParseExpressionError| SelectorError(e.to_string()))
    }

    /// Whether a node with these labels is selected (an absent or empty selector selects
    /// every node).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }
}

/// Whether the MultusConfig's node selector picks a node with these labels.
pub fn selects(
    spec: &MultusConfigSpec,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    Ok(NodeSelector::of(spec)?.selects(labels))
}

/// The nodes one MultusConfig owns, and those it loses to an older config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Node names this config owns, sorted.
    pub owned: Vec<String>,
    /// Node name to the name of the config that owns it instead, sorted by node.
    pub conflicted: BTreeMap<String, String>,
}

/// Orders configs so the first is the one that wins a node.
fn seniority(config: &MultusConfig) -> (Option<Time>, String) {
    (
        config.metadata.creation_timestamp.clone(),
        config.metadata.name.clone().unwrap_or_default(),
    )
}

/// The assignment for `config` among `all` configs (which must include it) over `nodes`.
/// A config being deleted still owns its nodes until its cleanup is done.
pub fn assign(
    config: &MultusConfig,
    all: &[&MultusConfig],
    nodes: &[&Node],
) -> Result<Assignment, SelectorError> {
    let mine = seniority(config);
    let selector = NodeSelector::of(&config.spec)?;
    // Only older rivals can take a node. A rival with an invalid selector selects nothing;
    // its own status says why.
    let mut older: Vec<(&MultusConfig, NodeSelector)> = all
        .iter()
        .copied()
        .filter(|c| c.metadata.name != config.metadata.name && seniority(c) < mine)
        .filter_map(|c| NodeSelector::of(&c.spec).ok().map(|s| (c, s)))
        .collect();
    older.sort_by_key(|(c, _)| seniority(c));
    let mut assignment = Assignment::default();
    let empty = BTreeMap::new();
    for node in nodes {
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        let name = node.metadata.name.clone().unwrap_or_default();
        if !selector.selects(labels) {
            continue;
        }
        match older
            .iter()
            .find(|(_, s)| s.selects(labels))
            .map(|(c, _)| c)
        {
            Some(winner) => {
                assignment
                    .conflicted
                    .insert(name, winner.metadata.name.clone().unwrap_or_default());
            }
            None => assignment.owned.push(name),
        }
    }
    assignment.owned.sort();
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, created: &str, selector: &str) -> MultusConfig {
        serde_saphyr::from_str(&format!(
            "apiVersion: operator.multus.dev/v1alpha1\nkind: MultusConfig\nmetadata: {{ name: {name}, creationTimestamp: \"{created}\" }}\nspec:\n  primary: {{ auto: {{}} }}\n  nodeSelector: {selector}\n"
        ))
        .expect("valid config")
    }

    fn node(name: &str, labels: &str) -> Node {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{ name: {name}, labels: {labels} }}\n"
        ))
        .expect("valid node")
    }

    #[test]
    fn the_older_config_wins_a_shared_node_and_the_newer_reports_it() {
        let old = config("old", "2026-01-01T00:00:00Z", "{}");
        let new = config(
            "new",
            "2026-02-01T00:00:00Z",
            "{ matchLabels: { pool: gpu } }",
        );
        let a = node("a", "{ pool: gpu }");
        let b = node("b", "{ pool: cpu }");
        let all = [&old, &new];
        let nodes = [&a, &b];
        let old_assignment = assign(&old, &all, &nodes).unwrap();
        assert_eq!(old_assignment.owned, vec!["a", "b"]);
        assert!(old_assignment.conflicted.is_empty());
        let new_assignment = assign(&new, &all, &nodes).unwrap();
        assert!(new_assignment.owned.is_empty());
        assert_eq!(
            new_assignment.conflicted,
            BTreeMap::from([("a".to_string(), "old".to_string())])
        );
    }

    #[test]
    fn same_age_configs_are_ordered_by_name() {
        let x = config("x", "2026-01-01T00:00:00Z", "{}");
        let y = config("y", "2026-01-01T00:00:00Z", "{}");
        let n = node("n", "{}");
        assert_eq!(assign(&x, &[&x, &y], &[&n]).unwrap().owned, vec!["n"]);
        assert_eq!(assign(&y, &[&x, &y], &[&n]).unwrap().conflicted.len(), 1);
    }
}

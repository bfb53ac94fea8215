//! Which MultusConfig owns which node. Two configs selecting one node conflict; the oldest
//! (by creation time, then name) wins and the others report the node as conflicted.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

use multus_crds::MultusConfig;

use crate::render::{RenderError, selects};

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
) -> Result<Assignment, RenderError> {
    let mut rivals: Vec<&MultusConfig> = all
        .iter()
        .copied()
        .filter(|c| c.metadata.name != config.metadata.name)
        .collect();
    rivals.sort_by_key(|c| seniority(c));
    let mine = seniority(config);
    let mut assignment = Assignment::default();
    let empty = BTreeMap::new();
    for node in nodes {
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        let name = node.metadata.name.clone().unwrap_or_default();
        if !selects(&config.spec, labels)? {
            continue;
        }
        // A rival with an invalid selector selects nothing; its own status says why.
        let older = rivals
            .iter()
            .find(|r| seniority(r) < mine && selects(&r.spec, labels).unwrap_or(false));
        match older {
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

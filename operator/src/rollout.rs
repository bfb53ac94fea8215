//! Staged rollout: what each node reports, and which outdated nodes get the new bundle now.
//! A node is done when its agent reports the new bundle hash applied; a failing node stops
//! the rollout.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use multus_crds::bundle::{AgentState, BUNDLE_HASH_ANNOTATION, feedback};

/// What the operator sees on a node's ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The stored bundle's hash, from its annotation (the operator's cache of its
    /// ConfigMaps holds metadata only). A ConfigMap written before that annotation existed
    /// has none and so reads as outdated: it is written again once.
    pub bundle_hash: Option<String>,
    /// Feedback from the agent.
    pub applied_hash: Option<String>,
    pub agent_state: Option<AgentState>,
    pub last_error: Option<String>,
}

impl Observed {
    /// Reads a ConfigMap's annotations: the operator follows its ConfigMaps by metadata
    /// alone, so the bundle hash is the one its annotation repeats.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Observed {
        let annotation = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        Observed {
            bundle_hash: annotation(BUNDLE_HASH_ANNOTATION),
            applied_hash: annotation(feedback::APPLIED_HASH),
            agent_state: annotation(feedback::STATE).and_then(|s| AgentState::parse(&s)),
            last_error: annotation(feedback::LAST_ERROR),
        }
    }
}

/// A node's place in the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// No ConfigMap yet.
    Missing,
    /// The ConfigMap holds an older bundle.
    Outdated,
    /// The ConfigMap holds the current bundle; the agent has not confirmed it yet.
    Updating,
    /// The agent waits for the primary network (or readiness indicator) before writing.
    Waiting,
    /// The agent applied the current bundle.
    Ready,
    /// The agent reports an error.
    Failing { message: String },
}

/// The state of a node whose desired bundle hash is `desired`.
pub fn node_state(desired: &str, observed: Option<&Observed>) -> NodeState {
    let Some(observed) = observed else {
        return NodeState::Missing;
    };
    if observed.bundle_hash.as_deref() != Some(desired) {
        return NodeState::Outdated;
    }
    match observed.agent_state {
        Some(AgentState::Failed) => NodeState::Failing {
            message: observed
                .last_error
                .clone()
                .unwrap_or_else(|| "the agent reports a failure without detail".into()),
        },
        Some(AgentState::WaitingForPrimary) => NodeState::Waiting,
        Some(AgentState::Applied) if observed.applied_hash.as_deref() == Some(desired) => {
            NodeState::Ready
        }
        _ => NodeState::Updating,
    }
}

/// What to write in this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Nodes whose ConfigMap gets the current bundle now, sorted.
    pub write: Vec<String>,
    /// Outdated nodes that wait for the rollout budget.
    pub held: Vec<String>,
    /// A node failed on the current bundle: no further node is updated.
    pub halted: bool,
}

/// `maxUnavailable`, parsed: a node count or a share of the selected nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// At least 1.
    Count(usize),
    /// 1 to 100 percent, rounded up.
    Percent(u8),
}

impl Budget {
    /// Parses `spec.rollout.maxUnavailable`; anything else than an integer >= 1 or a
    /// percentage from 1% to 100% is refused, never replaced by a default.
    pub fn parse(max_unavailable: &IntOrString) -> Result<Budget, String> {
        let refused = |found: String| {
            format!("{found} is not an integer >= 1 or a percentage from 1% to 100%")
        };
        match max_unavailable {
            IntOrString::Int(n) => usize::try_from(*n)
                .ok()
                .filter(|n| *n >= 1)
                .map(Budget::Count)
                .ok_or_else(|| refused(n.to_string())),
            IntOrString::String(s) => s
                .strip_suffix('%')
                .filter(|p| !p.starts_with('0'))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=100).contains(p))
                .map(Budget::Percent)
                .ok_or_else(|| refused(format!("{s:?}"))),
        }
    }

    /// How many of `selected` nodes may update at once; at least 1.
    pub fn nodes(self, selected: usize) -> usize {
        match self {
            Budget::Count(n) => n,
            Budget::Percent(p) => (selected * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

/// Chooses the nodes to update. New nodes always get their bundle (they have nothing to
/// break); outdated nodes go in name order while fewer than `budget` nodes are updating,
/// waiting or failing, and not at all once a node failed on the current bundle.
pub fn plan(states: &BTreeMap<String, NodeState>, budget: usize) -> Plan {
    let mut plan = Plan::default();
    let unavailable = states
        .values()
        .filter(|s| {
            matches!(
                s,
                NodeState::Updating | NodeState::Waiting | NodeState::Failing { .. }
            )
        })
        .count();
    plan.halted = states
        .values()
        .any(|s| matches!(s, NodeState::Failing { .. }));
    let mut room = if plan.halted {
        0
    } else {
        budget.saturating_sub(unavailable)
    };
    for (node, state) in states {
        match state {
            NodeState::Missing => plan.write.push(node.clone()),
            NodeState::Outdated if room > 0 => {
                room -= 1;
                plan.write.push(node.clone());
            }
            NodeState::Outdated => plan.held.push(node.clone()),
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(list: &[(&str, NodeState)]) -> BTreeMap<String, NodeState> {
        list.iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn node_state_follows_the_configmap_and_agent_feedback() {
        let observed = |bundle: &str, applied: &str, state: Option<AgentState>| Observed {
            bundle_hash: Some(bundle.into()),
            applied_hash: Some(applied.into()),
            agent_state: state,
            last_error: Some("boom".into()),
        };
        let table = [
            (None, NodeState::Missing),
            (
                Some(observed("old", "old", Some(AgentState::Applied))),
                NodeState::Outdated,
            ),
            (
                Some(observed("new", "old", Some(AgentState::Applied))),
                NodeState::Updating,
            ),
            (
                Some(observed("new", "new", Some(AgentState::Applied))),
                NodeState::Ready,
            ),
            (
                Some(observed("new", "old", Some(AgentState::WaitingForPrimary))),
                NodeState::Waiting,
            ),
            (
                Some(observed("new", "old", Some(AgentState::Failed))),
                NodeState::Failing {
                    message: "boom".into(),
                },
            ),
            (Some(observed("new", "", None)), NodeState::Updating),
        ];
        for (observed, want) in table {
            assert_eq!(node_state("new", observed.as_ref()), want, "{observed:?}");
        }
    }

    #[test]
    fn the_bundle_hash_is_its_annotation_and_an_empty_one_reads_as_none() {
        let read = |value: &str| {
            let annotations = BTreeMap::from([(BUNDLE_HASH_ANNOTATION.to_string(), value.into())]);
            Observed::from_annotations(Some(&annotations)).bundle_hash
        };
        assert_eq!(read("abc").as_deref(), Some("abc"));
        assert_eq!(read(""), None);
        assert_eq!(Observed::from_annotations(None).bundle_hash, None);
    }

    #[test]
    fn budget_counts_or_rounds_percentages_up_and_is_never_zero() {
        let nodes = |v: IntOrString, selected| Budget::parse(&v).unwrap().nodes(selected);
        assert_eq!(nodes(IntOrString::Int(2), 10), 2);
        assert_eq!(nodes(IntOrString::String("25%".into()), 10), 3);
        assert_eq!(nodes(IntOrString::String("1%".into()), 10), 1);
        assert_eq!(nodes(IntOrString::String("100%".into()), 0), 1);
    }

    #[test]
    fn a_budget_outside_its_type_is_refused_not_defaulted() {
        for bad in [
            IntOrString::Int(0),
            IntOrString::Int(-3),
            IntOrString::String("0%".into()),
            IntOrString::String("150%".into()),
            IntOrString::String("05%".into()),
            IntOrString::String("3".into()),
            IntOrString::String("half".into()),
        ] {
            assert!(Budget::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outdated_nodes_go_one_budget_at_a_time_and_new_nodes_at_once() {
        let s = states(&[
            ("a", NodeState::Outdated),
            ("b", NodeState::Outdated),
            ("c", NodeState::Missing),
            ("d", NodeState::Ready),
        ]);
        let p = plan(&s, 1);
        assert_eq!(p.write, vec!["a", "c"]);
        assert_eq!(p.held, vec!["b"]);
        assert!(!p.halted);
    }

    #[test]
    fn an_updating_node_uses_the_budget() {
        let s = states(&[("a", NodeState::Updating), ("b", NodeState::Outdated)]);
        assert_eq!(plan(&s, 1).write, Vec::<String>::new());
        assert_eq!(plan(&s, 2).write, vec!["b"]);
    }

    #[test]
    fn a_failing_node_halts_the_rollout() {
        let s = states(&[
            (
                "a",
                NodeState::Failing {
                    message: "x".into(),
                },
            ),
            ("b", NodeState::Outdated),
            ("c", NodeState::Missing),
        ]);
        let p = plan(&s, 5);
        assert!(p.halted);
        assert_eq!(p.write, vec!["c"]);
        assert_eq!(p.held, vec!["b"]);
    }
}

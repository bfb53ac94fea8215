//! The MultusConfig status computed from one reconcile's findings. Pure: conditions keep
//! their lastTransitionTime unless their status flips, so an unchanged world computes an
//! identical status and no write is needed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;

use multus_crds::status::{
    AttachmentsStatus, MAX_LISTED_FAILING_NODES, MultusConfigStatus, NodeCounts, NodeFailure,
    RejectedAttachment, condition,
};

use crate::rollout::NodeState;

/// Everything one reconcile learned, as input to the status.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub generation: Option<i64>,
    /// State of every owned node.
    pub nodes: BTreeMap<String, NodeState>,
    /// Nodes lost to an older MultusConfig, with its name.
    pub conflicted: BTreeMap<String, String>,
    /// Nodes whose bundle could not be rendered (reason, message).
    pub render_failures: BTreeMap<String, (String, String)>,
    /// A spec-level failure that stops every bundle (reason, message).
    pub spec_error: Option<(String, String)>,
    pub materialized: Vec<String>,
    pub rejected: Vec<RejectedAttachment>,
    pub warnings: Vec<String>,
    /// The rollout waits on a failing node.
    pub halted: bool,
    /// Set while the MultusConfig is being deleted: what cleanup still waits for.
    pub cleanup: Option<String>,
}

/// The status for `findings`, reusing transition times from `old`.
pub fn compute(
    findings: &Findings,
    old: Option<&MultusConfigStatus>,
    now: &Time,
) -> MultusConfigStatus {
    let count = |f: fn(&NodeState) -> bool| findings.nodes.values().filter(|s| f(s)).count();
    let selected = findings.nodes.len();
    let ready = count(|s| matches!(s, NodeState::Ready));
    let failing =
        count(|s| matches!(s, NodeState::Failing { .. })) + findings.render_failures.len();
    let updated = count(|s| {
        matches!(
            s,
            NodeState::Ready | NodeState::Updating | NodeState::Waiting | NodeState::Failing { .. }
        )
    });
    let pending = selected - updated;

    let mut failing_nodes: Vec<NodeFailure> = findings
        .nodes
        .iter()
        .filter_map(|(node, s)| match s {
            NodeState::Failing { message } => Some(NodeFailure {
                node: node.clone(),
                reason: "AgentFailed".into(),
                message: message.clone(),
            }),
            _ => None,
        })
        .chain(
            findings
                .render_failures
                .iter()
                .map(|(node, (reason, message))| NodeFailure {
                    node: node.clone(),
                    reason: reason.clone(),
                    message: message.clone(),
                }),
        )
        .collect();
    failing_nodes.sort_by(|a, b| a.node.cmp(&b.node));
    failing_nodes.truncate(MAX_LISTED_FAILING_NODES);

    let first_failure = failing_nodes
        .first()
        .map(|f| format!("node {} failing: {}", f.node, f.message));
    let waiting = count(|s| matches!(s, NodeState::Waiting));

    let readiness = if let Some((reason, message)) = &findings.spec_error {
        Verdict::false_because(reason, message)
    } else if let Some(cleanup) = &findings.cleanup {
        Verdict::false_because("Deleting", cleanup)
    } else if ready == selected {
        Verdict::true_because("AllNodesReady", format!("{ready}/{selected} nodes ready"))
    } else {
        Verdict::false_because("NodesNotReady", format!("{ready}/{selected} nodes ready"))
    };

    let progress = if findings.halted {
        Verdict::false_because("RolloutHalted", first_failure.clone().unwrap_or_default())
    } else if pending > 0 || updated > ready + failing {
        Verdict::true_because(
            "RollingOut",
            format!(
                "{updated}/{selected} nodes updated, {ready} ready, {waiting} waiting for their primary network"
            ),
        )
    } else {
        Verdict::false_because(
            "RolloutComplete",
            format!("{updated}/{selected} nodes updated"),
        )
    };

    let degraded = match (&findings.spec_error, &first_failure) {
        (Some((reason, message)), _) => Verdict::true_because(reason, message),
        (None, Some(message)) => {
            Verdict::true_because("NodesFailing", format!("{failing} failing; {message}"))
        }
        (None, None) => Verdict::false_because("AsExpected", "no node is failing"),
    };

    let conflicted = CONFLICTS.verdict(
        findings
            .conflicted
            .iter()
            .map(|(node, owner)| format!("{node} (owned by {owner})"))
            .collect(),
    );
    let invalid = REJECTIONS.verdict(
        findings
            .rejected
            .iter()
            .map(|r| format!("{} ({})", r.name, r.reason))
            .collect(),
    );
    let warned = if findings.warnings.is_empty() {
        Verdict::false_because("NoWarnings", "no attachment lint warnings")
    } else {
        Verdict::true_because("LintWarnings", findings.warnings.join("; "))
    };

    let mut conditions: Vec<Condition> = [
        (condition::READY, &readiness),
        (condition::PROGRESSING, &progress),
        (condition::DEGRADED, &degraded),
        (condition::CONFLICTED, &conflicted),
        (condition::INVALID_ATTACHMENTS, &invalid),
        (condition::ATTACHMENT_WARNINGS, &warned),
    ]
    .into_iter()
    .map(|(type_, verdict)| verdict.condition(type_))
    .collect();
    for c in &mut conditions {
        c.observed_generation = findings.generation;
        let previous = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
    }

    let message = if let Some((_, message)) = &findings.spec_error {
        message.clone()
    } else if let Some(cleanup) = &findings.cleanup {
        cleanup.clone()
    } else if let Some(failure) = &first_failure {
        failure.clone()
    } else if pending > 0 || updated > ready {
        progress.message
    } else if !findings.conflicted.is_empty() {
        conflicted.message
    } else if !findings.rejected.is_empty() {
        invalid.message
    } else {
        format!("{ready}/{selected} nodes ready")
    };

    MultusConfigStatus {
        observed_generation: findings.generation,
        conditions,
        nodes: NodeCounts {
            selected: to_i32(selected),
            updated: to_i32(updated),
            ready: to_i32(ready),
            failing: to_i32(failing),
        },
        ready_nodes: format!("{ready}/{selected}"),
        failing_nodes,
        attachments: AttachmentsStatus {
            materialized: findings.materialized.clone(),
            rejected: findings.rejected.clone(),
        },
        message: truncate(message, 256),
    }
}

/// A condition that is `True` while anything is listed.
struct Listing {
    /// The reason while something is listed.
    raised: &'static str,
    /// What the message says before the list.
    lead: &'static str,
    /// The reason while nothing is listed.
    calm: &'static str,
    /// The whole message while nothing is listed.
    calm_message: &'static str,
}

const CONFLICTS: Listing = Listing {
    raised: "NodesOwnedElsewhere",
    lead: "selected nodes owned by an older MultusConfig: ",
    calm: "NoConflict",
    calm_message: "no selected node is owned by another MultusConfig",
};

const REJECTIONS: Listing = Listing {
    raised: "AttachmentsRejected",
    lead: "not written to any node: ",
    calm: "AllValid",
    calm_message: "every selected attachment is valid",
};

impl Listing {
    fn verdict(&self, listed: Vec<String>) -> Verdict {
        if listed.is_empty() {
            Verdict::false_because(self.calm, self.calm_message)
        } else {
            Verdict::true_because(self.raised, format!("{}{}", self.lead, listed.join(", ")))
        }
    }
}

/// What one condition says, before it gets its type, generation and transition time.
struct Verdict {
    status: bool,
    reason: String,
    message: String,
}

impl Verdict {
    fn true_because(reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict {
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn false_because(reason: impl Into<String>, message: impl Into<String>) -> Verdict {
        Verdict {
            status: false,
            ..Verdict::true_because(reason, message)
        }
    }

    /// The condition of type `type_`, its message cut to 1024 bytes.
    fn condition(&self, type_: &str) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: if self.status { "True" } else { "False" }.to_string(),
            reason: self.reason.clone(),
            message: truncate(self.message.clone(), 1024),
            observed_generation: None,
            last_transition_time: Time(Default::default()),
        }
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    fn get<'a>(s: &'a MultusConfigStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn all_ready_is_ready_and_not_progressing() {
        let f = Findings {
            nodes: BTreeMap::from([
                ("a".into(), NodeState::Ready),
                ("b".into(), NodeState::Ready),
            ]),
            ..Findings::default()
        };
        let s = compute(&f, None, &time("2026-01-01T00:00:00Z"));
        assert_eq!(get(&s, condition::READY).status, "True");
        assert_eq!(get(&s, condition::PROGRESSING).status, "False");
        assert_eq!(s.ready_nodes, "2/2");
        assert_eq!(s.message, "2/2 nodes ready");
    }

    #[test]
    fn a_failing_node_is_named_and_degrades_the_config() {
        let f = Findings {
            nodes: BTreeMap::from([
                (
                    "a".into(),
                    NodeState::Failing {
                        message: "disk full".into(),
                    },
                ),
                ("b".into(), NodeState::Outdated),
            ]),
            halted: true,
            ..Findings::default()
        };
        let s = compute(&f, None, &time("2026-01-01T00:00:00Z"));
        assert_eq!(get(&s, condition::DEGRADED).status, "True");
        assert_eq!(get(&s, condition::PROGRESSING).reason, "RolloutHalted");
        assert_eq!(s.failing_nodes[0].node, "a");
        assert!(
            s.message.contains("node a failing: disk full"),
            "{}",
            s.message
        );
        assert_eq!(s.nodes.failing, 1);
    }

    #[test]
    fn transition_times_survive_when_status_does_not_flip() {
        let f = Findings {
            nodes: BTreeMap::from([("a".into(), NodeState::Ready)]),
            ..Findings::default()
        };
        let first = compute(&f, None, &time("2026-01-01T00:00:00Z"));
        let again = compute(&f, Some(&first), &time("2026-05-05T00:00:00Z"));
        assert_eq!(
            first, again,
            "an unchanged world computes an identical status"
        );
        let f2 = Findings {
            nodes: BTreeMap::from([("a".into(), NodeState::Updating)]),
            ..Findings::default()
        };
        let flipped = compute(&f2, Some(&first), &time("2026-05-05T00:00:00Z"));
        assert_eq!(
            get(&flipped, condition::READY).last_transition_time,
            time("2026-05-05T00:00:00Z")
        );
        assert_eq!(
            get(&flipped, condition::CONFLICTED).last_transition_time,
            time("2026-01-01T00:00:00Z")
        );
    }
}

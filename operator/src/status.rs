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

    let mut conditions = Vec::new();
    let (ready_status, ready_reason, ready_message) =
        if let Some((reason, message)) = &findings.spec_error {
            ("False", reason.clone(), message.clone())
        } else if findings.cleanup.is_some() {
            (
                "False",
                "Deleting".into(),
                findings.cleanup.clone().unwrap_or_default(),
            )
        } else if ready == selected {
            (
                "True",
                "AllNodesReady".into(),
                format!("{ready}/{selected} nodes ready"),
            )
        } else {
            (
                "False",
                "NodesNotReady".into(),
                format!("{ready}/{selected} nodes ready"),
            )
        };
    conditions.push(cond(
        condition::READY,
        ready_status,
        &ready_reason,
        &ready_message,
    ));

    let (p_status, p_reason, p_message) = if findings.halted {
        (
            "False",
            "RolloutHalted",
            first_failure.clone().unwrap_or_default(),
        )
    } else if pending > 0 || updated > ready + failing {
        (
            "True",
            "RollingOut",
            format!(
                "{updated}/{selected} nodes updated, {ready} ready, {waiting} waiting for their primary network"
            ),
        )
    } else {
        (
            "False",
            "RolloutComplete",
            format!("{updated}/{selected} nodes updated"),
        )
    };
    conditions.push(cond(condition::PROGRESSING, p_status, p_reason, &p_message));

    let degraded = match (&findings.spec_error, &first_failure) {
        (Some((reason, message)), _) => ("True", reason.clone(), message.clone()),
        (None, Some(message)) => (
            "True",
            "NodesFailing".to_string(),
            format!("{failing} failing; {message}"),
        ),
        (None, None) => (
            "False",
            "AsExpected".to_string(),
            "no node is failing".to_string(),
        ),
    };
    conditions.push(cond(
        condition::DEGRADED,
        degraded.0,
        &degraded.1,
        &degraded.2,
    ));

    let conflicted = if findings.conflicted.is_empty() {
        (
            "False",
            "NoConflict".to_string(),
            "no selected node is owned by another MultusConfig".to_string(),
        )
    } else {
        let list: Vec<String> = findings
            .conflicted
            .iter()
            .map(|(node, owner)| format!("{node} (owned by {owner})"))
            .collect();
        (
            "True",
            "NodesOwnedElsewhere".to_string(),
            format!(
                "selected nodes owned by an older MultusConfig: {}",
                list.join(", ")
            ),
        )
    };
    conditions.push(cond(
        condition::CONFLICTED,
        conflicted.0,
        &conflicted.1,
        &conflicted.2,
    ));

    let invalid = if findings.rejected.is_empty() {
        (
            "False",
            "AllValid",
            "every selected attachment is valid".to_string(),
        )
    } else {
        let list: Vec<String> = findings
            .rejected
            .iter()
            .map(|r| format!("{} ({})", r.name, r.reason))
            .collect();
        (
            "True",
            "AttachmentsRejected",
            format!("not written to any node: {}", list.join(", ")),
        )
    };
    conditions.push(cond(
        condition::INVALID_ATTACHMENTS,
        invalid.0,
        invalid.1,
        &invalid.2,
    ));

    let warned = if findings.warnings.is_empty() {
        (
            "False",
            "NoWarnings",
            "no attachment lint warnings".to_string(),
        )
    } else {
        ("True", "LintWarnings", findings.warnings.join("; "))
    };
    conditions.push(cond(
        condition::ATTACHMENT_WARNINGS,
        warned.0,
        warned.1,
        &warned.2,
    ));

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
        p_message.clone()
    } else if !findings.conflicted.is_empty() {
        conflicted.2.clone()
    } else if !findings.rejected.is_empty() {
        invalid.2.clone()
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

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message.to_string(), 1024),
        observed_generation: None,
        last_transition_time: Time(Default::default()),
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

//! The fleet's API requests as the audit log shows them: when every agent has its bundle
//! watch open, which requests are the agents', and requests per hour by kind for a table.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::E2eError;
use crate::audit::{self, AuditLog, Tally};

/// The prefix of every ServiceAccount's user name.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:";

/// Waits until `n` agents (told apart by the node their token is bound to) have their
/// bundle watch open; `agent_user` is the agents' ServiceAccount user.
pub async fn until_watching(
    log: &mut AuditLog,
    agent_user: &str,
    n: usize,
    timeout: Duration,
) -> Result<(), E2eError> {
    let start = Instant::now();
    let mut nodes = HashSet::new();
    loop {
        log.for_each_new(|e| {
            if audit::user(e) == agent_user
                && audit::kind(e) == "watch configmaps"
                && let Some(node) = audit::node(e)
            {
                nodes.insert(node.to_string());
            }
        })?;
        if nodes.len() >= n {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(E2eError::Io(format!(
                "only {} of {n} agents watch their ConfigMap after {timeout:?}",
                nodes.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The agents' requests by kind: those of `agent_user`, and those of any other
/// ServiceAccount but `operator_user` whose tokens were bound to a node (the Multus
/// account's token requests, made with the agents' tokens), tagged `(as <account>)`.
pub fn agent_kinds(tally: &Tally, agent_user: &str, operator_user: &str) -> BTreeMap<String, u64> {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (user, counted) in &tally.by_user {
        let of_agents = user == agent_user
            || (user != operator_user
                && user.starts_with(SERVICE_ACCOUNT)
                && tally.nodes.contains_key(user));
        if !of_agents {
            continue;
        }
        let tag = if user == agent_user {
            String::new()
        } else {
            format!(" (as {})", user.trim_start_matches(SERVICE_ACCOUNT))
        };
        for (kind, count) in counted {
            *kinds.entry(format!("{kind}{tag}")).or_default() += count;
        }
    }
    kinds
}

/// Requests per hour by kind (per node when `per` is the node count) over a window of
/// `seconds`, for a table cell; says `lists 0` when there was no list.
pub fn rates(kinds: &BTreeMap<String, u64>, per: usize, seconds: u64) -> String {
    let scale = 3600.0 / seconds as f64 / per.max(1) as f64;
    let lists: u64 = kinds
        .iter()
        .filter(|(k, _)| k.starts_with("list "))
        .map(|(_, v)| v)
        .sum();
    let mut parts: Vec<String> = kinds
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 * scale))
        .collect();
    if lists == 0 {
        parts.push("lists 0".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_requests_include_node_bound_accounts_but_not_the_operators() {
        let mut tally = Tally::default();
        let count = |n| BTreeMap::from([("create serviceaccounts/token".to_string(), n)]);
        for user in [
            "agent",
            "system:serviceaccount:ns:multus",
            "operator",
            "admin",
        ] {
            tally.by_user.insert(user.into(), count(2));
        }
        for user in ["system:serviceaccount:ns:multus", "operator"] {
            tally
                .nodes
                .insert(user.into(), HashSet::from(["n1".into()]));
        }
        let kinds = agent_kinds(&tally, "agent", "operator");
        assert_eq!(
            kinds.keys().collect::<Vec<_>>(),
            [
                "create serviceaccounts/token",
                "create serviceaccounts/token (as ns:multus)"
            ]
        );
        assert_eq!(
            rates(&kinds, 2, 1800),
            "create serviceaccounts/token 2.0, create serviceaccounts/token (as ns:multus) 2.0, \
             lists 0"
        );
    }
}

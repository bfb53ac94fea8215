//! Node agent cost when nothing changes: RSS after an idle period and the API requests it
//! made during it (counted in the API server's audit log by the agent's own identity).
//! Prints the figures; asserts nothing about them.
//!
//! `cargo bench -p multus-e2e --bench agent_idle` (IDLE_SECONDS=600 by default).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use multus_e2e::ControlPlane;
use multus_e2e::agent::RunningAgent;
use multus_e2e::control_plane::AGENT_USER;
use multus_e2e::process::status_kib;
use multus_e2e::scenario::OneNode;

/// Requests by the agent's identity: audit ID -> "verb resource".
fn agent_requests(cp: &ControlPlane) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(cp.dir.join("audit.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == AGENT_USER)
        .filter_map(|e| {
            let id = e["auditID"].as_str()?.to_string();
            let what = format!(
                "{} {}",
                e["verb"].as_str().unwrap_or_default(),
                e["objectRef"]["resource"].as_str().unwrap_or_default()
            );
            Some((id, what))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let idle: u64 = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let cp: &'static ControlPlane = Box::leak(Box::new(
        tokio::task::spawn_blocking(ControlPlane::start_with_audit)
            .await
            .unwrap()
            .expect("control plane"),
    ));
    let scenario = OneNode::start(cp.client().await.unwrap(), "idle", json!({}))
        .await
        .unwrap();
    let agent = RunningAgent::start_release_as(
        &cp.dir.join("agent.kubeconfig"),
        &scenario.ns,
        &scenario.node,
        scenario.root.path(),
    )
    .await
    .unwrap();
    agent
        .wait_ready("agent applied its bundle", Duration::from_secs(120))
        .await;
    // The operator has done its part; from here on nothing in the cluster changes.
    scenario.operator.stop().await;
    let pid = agent.pid().expect("agent running");
    let before: BTreeSet<String> = agent_requests(cp).into_keys().collect();
    let rss_start = status_kib(pid, "VmRSS:");
    eprintln!("idling for {idle} s ...");
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let rss_end = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    let after = agent_requests(cp);
    let during: Vec<&String> = after
        .iter()
        .filter(|(id, _)| !before.contains(*id))
        .map(|(_, w)| w)
        .collect();
    let mut by_kind: BTreeMap<&String, usize> = BTreeMap::new();
    for w in &during {
        *by_kind.entry(w).or_default() += 1;
    }
    println!(
        "node agent idle for {idle} s (release build, token lifetime 3600 s, one bundle, one primary)"
    );
    println!(
        "  RSS when the bundle was applied:   {:>7.1} MiB",
        rss_start as f64 / 1024.0
    );
    println!(
        "  RSS after the idle period:         {:>7.1} MiB",
        rss_end as f64 / 1024.0
    );
    println!(
        "  peak RSS:                          {:>7.1} MiB",
        peak as f64 / 1024.0
    );
    println!("  API requests during the idle period: {}", during.len());
    for (what, n) in by_kind {
        println!("    {n:>4}  {what}");
    }
    println!(
        "  API requests from agent start to applied: {}",
        before.len()
    );
    agent.terminate().await;
}

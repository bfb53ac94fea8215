//! Cost when nothing changes, for the node agent and the operator, both as shipped builds
//! (`binaries_local::SHIPPED`) run as processes: CPU seconds per idle minute (from /proc) while the agent waits for a primary
//! and after its bundle is applied, RSS, and the API requests the agent made (counted in the
//! API server's audit log by the agent's own identity). Prints the figures; asserts nothing.
//!
//! `cargo bench -p multus-e2e --bench agent_idle` (IDLE_SECONDS=600 by default; the
//! waiting phase lasts min(60, IDLE_SECONDS)). `MULTUS_E2E_WORKSPACE_BINS=<dir>` measures
//! the binaries in that directory instead of this workspace's (for example an older build).

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use multus_e2e::agent::RunningAgent;
use multus_e2e::identities::Identities;
use multus_e2e::operator_process::{OperatorProcess, Options};
use multus_e2e::process::{cpu_seconds, status_kib};
use multus_e2e::scenario::{CALICO, host_root, wait_agent_state};
use multus_e2e::{ControlPlane, bench, fixtures, http};

const WAIT: Duration = Duration::from_secs(120);

/// Requests by `user` (the agent's ServiceAccount): audit ID -> "verb resource".
fn agent_requests(cp: &ControlPlane, user: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(cp.dir.join("audit.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == user)
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

/// CPU seconds `pid` used over `window`, scaled to one minute.
async fn cpu_per_minute(pids: &[u32], window: Duration) -> Vec<f64> {
    let before: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    tokio::time::sleep(window).await;
    pids.iter()
        .zip(before)
        .map(|(p, b)| (cpu_seconds(*p) - b) * 60.0 / window.as_secs_f64())
        .collect()
}

#[tokio::main]
async fn main() {
    let idle: u64 = bench::env_or("IDLE_SECONDS", 600);
    let waiting = Duration::from_secs(idle.min(60));
    let cp: &'static ControlPlane = Box::leak(Box::new(
        ControlPlane::own(ControlPlane::start_with_audit).await,
    ));
    let client = cp.client().await.unwrap();
    let ns = "idle";
    let node = "idle-node";
    fixtures::namespace(&client, ns).await.unwrap();
    fixtures::node(&client, node, &[("pool", ns)], &[])
        .await
        .unwrap();
    // The operator and the agent run with the chart's identities.
    let identities = Identities::apply(cp, ns, "thin").await.unwrap();
    let agent_user = format!(
        "system:serviceaccount:{ns}:{}-agent",
        multus_e2e::chart::fullname(&identities.release)
    );

    let operator_kubeconfig = identities.operator_kubeconfig(cp).await.unwrap();
    let multus_account = format!("{ns}/multus");
    let options = Options {
        kubeconfig: &operator_kubeconfig,
        namespace: ns,
        multus_account: Some(&multus_account),
        log: None,
    };
    let operator = OperatorProcess::start_ready(&options, Duration::from_secs(120))
        .await
        .expect("operator ready");
    let operator_pid = operator.pid;

    let root = host_root(false).unwrap();
    let config = serde_json::from_value::<multus_crds::MultusConfig>(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": ns },
        "spec": {
            "nodeSelector": { "matchLabels": { "pool": ns } },
            "primary": { "auto": {} },
        },
    }))
    .unwrap();
    Api::<multus_crds::MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let agent = RunningAgent::start_release_as(
        &identities.agent_kubeconfig(cp, node).await.unwrap(),
        ns,
        node,
        root.path(),
    )
    .await
    .unwrap();
    let agent_pid = agent.pid().expect("agent running");
    // Phase 1: no primary CNI config yet.
    wait_agent_state(&client, ns, node, "WaitingForPrimary", WAIT).await;
    eprintln!(
        "waiting for a primary: measuring {} s ...",
        waiting.as_secs()
    );
    let waiting_cpu = cpu_per_minute(&[agent_pid], waiting).await;

    // Phase 2: the primary appears; once applied, nothing changes any more.
    std::fs::write(root.path().join("etc/cni/net.d/10-calico.conflist"), CALICO).unwrap();
    agent.wait_ready("agent applied its bundle", WAIT).await;
    let before: BTreeSet<String> = agent_requests(cp, &agent_user).into_keys().collect();
    let rss_start = status_kib(agent_pid, "VmRSS:");
    let operator_rss_start = status_kib(operator_pid, "VmRSS:");
    eprintln!("applied: idling for {idle} s ...");
    let applied_cpu = cpu_per_minute(&[agent_pid, operator_pid], Duration::from_secs(idle)).await;
    let rss_end = status_kib(agent_pid, "VmRSS:");
    let peak = status_kib(agent_pid, "VmHWM:");
    let operator_rss_end = status_kib(operator_pid, "VmRSS:");
    let after = agent_requests(cp, &agent_user);
    let during: Vec<&String> = after
        .iter()
        .filter(|(id, _)| !before.contains(*id))
        .map(|(_, w)| w)
        .collect();
    let mut by_kind: BTreeMap<&String, usize> = BTreeMap::new();
    for w in &during {
        *by_kind.entry(w).or_default() += 1;
    }
    let passes = http::metric(&agent.metrics().await, "multus_node_agent_passes_total");

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "idle cost (shipped builds: operator `release`, agent `agent` profile; token lifetime 3600 s, one bundle, one primary; waiting {} s, applied {idle} s)",
        waiting.as_secs()
    );
    println!(
        "  agent CPU while waiting for a primary:  {:>8.3} s per idle minute",
        waiting_cpu[0]
    );
    println!(
        "  agent CPU with its bundle applied:      {:>8.3} s per idle minute",
        applied_cpu[0]
    );
    println!(
        "  operator CPU, same period:              {:>8.3} s per idle minute",
        applied_cpu[1]
    );
    println!(
        "  agent RSS when applied / after idling:  {:>6.1} / {:.1} MiB (peak {:.1})",
        mib(rss_start),
        mib(rss_end),
        mib(peak)
    );
    println!(
        "  operator RSS at start / end of idling:  {:>6.1} / {:.1} MiB",
        mib(operator_rss_start),
        mib(operator_rss_end)
    );
    match passes {
        Some(p) => println!("  agent passes since start:               {p:>6.0}"),
        None => {
            println!("  agent passes since start:               (no pass counter in this build)")
        }
    }
    println!(
        "  agent API requests while applied and idle: {}",
        during.len()
    );
    for (what, n) in by_kind {
        println!("    {n:>4}  {what}");
    }
    println!(
        "  agent API requests from start to applied:  {}",
        before.len()
    );
    agent.terminate().await;
    drop(operator);
}

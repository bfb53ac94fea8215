//! A fleet of real node agents against the real control plane, with the operator running as
//! a release-built process with the chart's identity. Each simulated node has its own agent
//! (run in this process through the agent's library entry, with the node's own DaemonSet pod
//! token, client, watch and host root) and a status heartbeat every 10 s, as kubelet sends.
//! Per size: MultusConfig created until the status shows every node Ready; NAD edit until the
//! new file content is on every node's disk (p50 / p99 / max); the operator's and the agents'
//! peak memory. At the largest size, with nothing changing for IDLE_SECONDS: the operator's
//! CPU per hour and the API requests per node per hour by kind, from the audit log. Prints
//! the figures; asserts nothing about them.
//!
//! `cargo bench -p multus-e2e --bench fleet` (NODES="100,500,1000", IDLE_SECONDS=300 by
//! default; each size runs in a process of its own, on a control plane of its own).

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

use multus_crds::MultusConfig;
use multus_e2e::audit::{self, AuditLog, Tally};
use multus_e2e::bench::{ms, row, spread_ms};
use multus_e2e::bench_cluster::BenchCluster;
use multus_e2e::fleet::agents::{self, Agents};
use multus_e2e::fleet::disk::FileWatch;
use multus_e2e::fleet::heartbeat::Heartbeats;
use multus_e2e::fleet::interrupt::{kill_operator_on_interrupt, operator_pid};
use multus_e2e::fleet::objects::{POOL_LABEL, apply_nad, multus_config, nad_file, until_ready};
use multus_e2e::fleet::requests::{agent_kinds, rates, until_watching};
use multus_e2e::fleet::sizes::Sizes;
use multus_e2e::operator_process::{OperatorProcess, Options};
use multus_e2e::process::status_kib;
use multus_e2e::scale::bounded;
use multus_e2e::scenario::host_root;
use multus_e2e::{chart, fixtures};

const NS: &str = "fleet";
const HEARTBEAT: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    let sizes = Sizes::from_env().expect("NODES and IDLE_SECONDS");
    sizes.run(fleet).expect("the fleet runs")
}

async fn fleet(n: usize, idle: u64) {
    agents::check_inotify_limit(n).expect("inotify instances");
    agents::quiet_logs();
    kill_operator_on_interrupt().expect("interrupt handler");
    let began = Instant::now();
    let cluster = BenchCluster::start(NS).await.expect("control plane");
    let (cp, admin, identities) = (&cluster.cp, &cluster.admin, &cluster.identities);
    let release = chart::fullname(&identities.release);
    let agent_user = format!("system:serviceaccount:{NS}:{release}-agent");
    let operator_user = format!("system:serviceaccount:{NS}:{release}-operator");

    let names: Vec<String> = (0..n).map(|i| format!("fleet-node-{i:04}")).collect();
    let nodes = &names;
    bounded(n, 32, |i| async move {
        let labels = [(POOL_LABEL, NS)];
        fixtures::node(admin, &nodes[i], &labels, &[])
            .await
            .map(|_| ())
    })
    .await
    .expect("create nodes");
    let heartbeats = Heartbeats::start(admin.clone(), names.clone(), HEARTBEAT);
    apply_nad(admin, NS, "br-one").await.expect("apply the NAD");
    let kubeconfig = identities
        .operator_kubeconfig(cp)
        .await
        .expect("operator kubeconfig");
    let operator = OperatorProcess::start(&Options {
        kubeconfig: &kubeconfig,
        namespace: NS,
        multus_account: Some(&format!("{NS}/multus")),
        log: Some(&cp.dir.join("operator.log")),
    })
    .await
    .expect("operator");
    operator_pid(operator.pid);
    operator
        .wait_ready(Duration::from_secs(120))
        .await
        .expect("operator ready");

    let roots: Vec<tempfile::TempDir> = (0..n)
        .map(|_| host_root(true).expect("host root"))
        .collect();
    let specs = agents::specs(cp, identities, &names, &roots)
        .await
        .expect("agent kubeconfigs");
    let me = std::process::id();
    let rss_before_agents = status_kib(me, "VmRSS:");
    let agents_started = Instant::now();
    let running = Agents::start(NS, &specs).expect("agents");
    let mut log = AuditLog::from_start(&cluster.audit_log());
    until_watching(&mut log, &agent_user, n, Duration::from_secs(900))
        .await
        .expect("agents watching");
    let agents_up = agents_started.elapsed();
    let errors = running.errors();
    assert!(errors.is_empty(), "agents stopped: {errors:?}");
    let inotify = agents::inotify_instances();
    eprintln!(
        "fleet: {n} nodes created, operator ready, {n} agents watching after {:.1} s \
         ({inotify} inotify instances in this process); setup {:.0} s",
        agents_up.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );

    // MultusConfig created -> every node Ready.
    Api::<MultusConfig>::all(admin.clone())
        .create(
            &PostParams::default(),
            &multus_config(NS).expect("MultusConfig"),
        )
        .await
        .expect("create the MultusConfig");
    let ready = until_ready(admin, NS, n, Duration::from_secs(900))
        .await
        .expect("all nodes Ready");
    let files = roots.iter().map(|r| r.path().join(nad_file(NS))).collect();
    let watch = FileWatch::start(files).expect("watch the NAD files");
    let holding = watch.all_hold("br-one");
    assert_eq!(
        holding, n,
        "Ready, but only {holding} of {n} NAD files on disk"
    );
    row(
        &format!("fleet {n} nodes: MultusConfig created to all nodes Ready (real agents)"),
        &format!("{:.2} s", ready.as_secs_f64()),
        None,
        None,
    );

    // NAD edit -> the new content on every node's disk.
    log.for_each_new(|_| {}).expect("audit log");
    let edited_at = Timestamp::now();
    let start = watch.arm("br-two");
    apply_nad(admin, NS, "br-two").await.expect("edit the NAD");
    let seen = watch.wait(start, Duration::from_secs(300)).await;
    // The operator's part of that: its ConfigMap writes, as the API server received them.
    let mut operator_writes: Vec<Timestamp> = Vec::new();
    log.for_each_new(|e| {
        if audit::user(e) == operator_user
            && audit::kind(e) == "patch configmaps"
            && let Some(at) = audit::received(e)
        {
            operator_writes.push(at);
        }
    })
    .expect("audit log");
    let latencies: Vec<Duration> = seen.iter().flatten().copied().collect();
    let missing = n - latencies.len();
    row(
        &format!("fleet {n} nodes: NAD edit to the new file on every node's disk"),
        &if missing == 0 {
            spread_ms(&latencies)
        } else {
            format!("{} ({missing} nodes never got it)", spread_ms(&latencies))
        },
        None,
        None,
    );

    let after_edit = |at: Option<&Timestamp>| {
        at.map_or(f64::NAN, |at| {
            at.duration_since(edited_at).as_secs_f64() * 1000.0
        })
    };
    row(
        &format!(
            "fleet {n} nodes: NAD edit to the operator's ConfigMap writes received (audit log)"
        ),
        &format!(
            "{} writes, first {:.0} ms / last {:.0} ms after the edit",
            operator_writes.len(),
            after_edit(operator_writes.iter().min()),
            after_edit(operator_writes.iter().max())
        ),
        None,
        None,
    );

    if idle > 0 {
        idle_window(
            &IdleContext {
                n,
                idle,
                admin,
                operator: &operator,
                heartbeats: &heartbeats,
                agent_user: &agent_user,
                operator_user: &operator_user,
            },
            &mut log,
        )
        .await;
    }

    let mib = |kib: u64| kib as f64 / 1024.0;
    row(
        &format!("fleet {n} nodes: operator peak RSS"),
        &format!("{:.1} MiB", operator.peak_rss_mib()),
        None,
        None,
    );
    let peak = status_kib(me, "VmHWM:");
    row(
        &format!("fleet {n} nodes: agent memory, (process peak RSS - RSS before the agents) / {n}"),
        &format!(
            "{:.2} MiB (process peak {:.0} MiB, before the agents {:.0} MiB)",
            mib(peak.saturating_sub(rss_before_agents)) / n as f64,
            mib(peak),
            mib(rss_before_agents)
        ),
        None,
        None,
    );
    eprintln!(
        "fleet: heartbeats every {} per node on average ({} sent, {} failed); edit seen on {} of {n} nodes; run {:.0} s",
        heartbeats.interval().map_or("-".into(), ms),
        heartbeats.sent(),
        heartbeats.failed(),
        latencies.len(),
        began.elapsed().as_secs_f64()
    );
    let errors = running.errors();
    if !errors.is_empty() {
        eprintln!("fleet: agents stopped: {errors:?}");
    }
    running.stop();
    drop(heartbeats);
    operator.stop().await;
    operator_pid(0);
    drop(roots);
    cluster.stop().await;
}

struct IdleContext<'a> {
    n: usize,
    idle: u64,
    admin: &'a Client,
    operator: &'a OperatorProcess,
    heartbeats: &'a Heartbeats,
    agent_user: &'a str,
    operator_user: &'a str,
}

/// Nothing changes for `idle` seconds but the heartbeats: the operator's CPU, the agents'
/// CPU and the API requests of both, per hour.
async fn idle_window(c: &IdleContext<'_>, log: &mut AuditLog) {
    let n = c.n;
    // Steady state: every node reports the edit applied and the operator has stopped
    // reconciling (no reconcile for 5 s).
    until_ready(c.admin, NS, n, Duration::from_secs(300))
        .await
        .expect("all nodes Ready after the edit");
    c.operator
        .settle(Duration::from_secs(5), Duration::from_secs(120))
        .await
        .expect("the operator settles after the edit");
    log.for_each_new(|_| {}).expect("audit log");
    let from = Timestamp::now();
    let to = from
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(c.idle as i64))
        .expect("window end");
    let operator_cpu = c.operator.cpu_seconds();
    let agents_cpu = agents::agents_cpu_seconds();
    let reconciles = c.operator.metric("multus_operator_reconciles_total").await;
    let writes = c.operator.metric("multus_operator_api_writes_total").await;
    let beats = c.heartbeats.sent();
    let mut tally = Tally::default();
    eprintln!(
        "fleet: idle for {} s with {n} nodes heartbeating ...",
        c.idle
    );
    let end = Instant::now() + Duration::from_secs(c.idle);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5).min(end - Instant::now())).await;
        log.for_each_new(|e| tally.add(e, from, to))
            .expect("audit log");
    }
    let operator_cpu = c.operator.cpu_seconds() - operator_cpu;
    let agents_cpu = agents::agents_cpu_seconds() - agents_cpu;
    let reconciles = c.operator.metric("multus_operator_reconciles_total").await - reconciles;
    let writes = c.operator.metric("multus_operator_api_writes_total").await - writes;
    let beats = c.heartbeats.sent() - beats;
    // Requests received before the end may be logged a moment later: read on until the log
    // holds one received after it (the heartbeats keep requests coming).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut past_end = false;
    while !past_end {
        log.for_each_new(|e| {
            tally.add(e, from, to);
            past_end |= audit::received(e).is_some_and(|at| at >= to);
        })
        .expect("audit log");
        assert!(
            past_end || Instant::now() < deadline,
            "no audit event after the window's end within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let per_hour = 3600.0 / c.idle as f64;
    let label = format!("fleet {n} nodes heartbeating, idle {} s", c.idle);
    row(
        &format!("{label}: operator CPU per hour"),
        &format!(
            "{:.1} s ({reconciles:.0} reconciles, {writes:.0} API writes in the window)",
            operator_cpu * per_hour
        ),
        None,
        None,
    );
    row(
        &format!("{label}: agent CPU per agent per hour"),
        &format!("{:.2} s", agents_cpu * per_hour / n as f64),
        None,
        None,
    );
    row(
        &format!("{label}: agent API requests per node per hour"),
        &rates(
            &agent_kinds(&tally, c.agent_user, c.operator_user),
            n,
            c.idle,
        ),
        None,
        None,
    );
    row(
        &format!("{label}: operator API requests per hour"),
        &rates(
            &tally
                .by_user
                .get(c.operator_user)
                .cloned()
                .unwrap_or_default(),
            1,
            c.idle,
        ),
        None,
        None,
    );
    eprintln!(
        "fleet: {beats} heartbeats in the window ({:.1} per node per minute); requests by user:",
        beats as f64 / n as f64 * 60.0 / c.idle as f64
    );
    for (user, kinds) in &tally.by_user {
        let total: u64 = kinds.values().sum();
        eprintln!("  {total:>8}  {user}");
    }
}

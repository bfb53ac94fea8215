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

use futures::{StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multus_crds::{MultusConfig, NetworkAttachmentDefinition};
use multus_e2e::bench::{ms, row, spread_ms};
use multus_e2e::fleet::agents::{self, AgentSpec, Agents};
use multus_e2e::fleet::audit::{self, AuditLog, Tally};
use multus_e2e::fleet::disk::FileWatch;
use multus_e2e::fleet::heartbeat::Heartbeats;
use multus_e2e::fleet::operator_process::OperatorProcess;
use multus_e2e::identities::Identities;
use multus_e2e::process::status_kib;
use multus_e2e::scenario::host_root;
use multus_e2e::{ControlPlane, chart, fixtures};

const NS: &str = "fleet";
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Where the NAD `fleet/net` lands under each host root (the default `multusConfDir`).
const NAD_FILE: &str = "etc/cni/multus/net.d/fleet-net.conf";

/// The operator's pid, so that an interrupted run does not leave it behind.
static OPERATOR_PID: AtomicU32 = AtomicU32::new(0);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn main() -> std::process::ExitCode {
    let mut sizes: Vec<usize> = env_or("NODES", "100,500,1000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let idle: u64 = env_or("IDLE_SECONDS", "300").parse().unwrap_or(300);
    let began = Instant::now();
    let code = match sizes.as_slice() {
        [] => panic!("NODES names no size"),
        [n] => {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(fleet(*n, idle));
            runtime.shutdown_background();
            std::process::ExitCode::SUCCESS
        }
        // One process per size: a clean memory peak, and nothing carried over.
        several => {
            let exe = std::env::current_exe().expect("this benchmark's path");
            let mut code = std::process::ExitCode::SUCCESS;
            for (i, n) in several.iter().enumerate() {
                let last = i + 1 == several.len();
                let status = std::process::Command::new(&exe)
                    .env("NODES", n.to_string())
                    .env("IDLE_SECONDS", if last { idle } else { 0 }.to_string())
                    .status()
                    .expect("run one size");
                if !status.success() {
                    eprintln!("fleet: the {n}-node run failed ({status}); larger sizes skipped");
                    code = std::process::ExitCode::FAILURE;
                    break;
                }
            }
            code
        }
    };
    eprintln!(
        "fleet: NODES={} done in {:.0} s",
        sizes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        began.elapsed().as_secs_f64()
    );
    code
}

fn nad(bridge: &str) -> serde_json::Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "net", "namespace": NS },
        "spec": { "config": format!(r#"{{"cniVersion":"0.3.1","type":"bridge","bridge":"{bridge}"}}"#) },
    })
}

async fn apply_nad(client: &Client, bridge: &str) {
    Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), NS)
        .patch(
            "net",
            &PatchParams::apply("fleet-bench"),
            &Patch::Apply(&nad(bridge)),
        )
        .await
        .expect("apply the NAD");
}

/// Waits until the MultusConfig's status counts `n` nodes selected and ready.
async fn until_ready(client: &Client, n: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let api: Api<MultusConfig> = Api::all(client.clone());
    let mut last = String::new();
    loop {
        if let Ok(config) = api.get(NS).await {
            let counts = config.status.map(|s| s.nodes).unwrap_or_default();
            if counts.selected as usize == n && counts.ready as usize == n {
                return start.elapsed();
            }
            last = format!("{counts:?}");
        }
        assert!(
            start.elapsed() < timeout,
            "not all {n} nodes Ready within {timeout:?}; last status: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `n` agents (told apart by the node their token is bound to) have their
/// bundle watch open, as the audit log shows it.
async fn until_watching(log: &mut AuditLog, agent_user: &str, n: usize, timeout: Duration) {
    let start = Instant::now();
    let mut nodes = std::collections::HashSet::new();
    loop {
        log.for_each_new(|e| {
            if audit::user(e) == agent_user
                && audit::kind(e) == "watch configmaps"
                && let Some(node) = audit::node(e)
            {
                nodes.insert(node.to_string());
            }
        });
        if nodes.len() >= n {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "only {} of {n} agents watch their ConfigMap after {timeout:?}",
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Requests per hour by kind (per node when `per` is the node count), for a table cell.
fn rates(kinds: &BTreeMap<String, u64>, per: usize, seconds: u64) -> String {
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

async fn fleet(n: usize, idle: u64) {
    let limit = agents::inotify_limit().unwrap_or(0);
    assert!(
        limit >= n + 64,
        "{n} agents in one process need {n} inotify instances, and this user may hold {limit} \
         (fs.inotify.max_user_instances); raise it, e.g. `sysctl -w fs.inotify.max_user_instances={}`",
        (n + 1024).next_power_of_two()
    );
    agents::quiet_logs();
    tokio::spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let pid = OPERATOR_PID.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::process::exit(130);
    });
    let began = Instant::now();
    let cp = tokio::task::spawn_blocking(ControlPlane::start_with_audit)
        .await
        .expect("control plane thread")
        .expect("control plane");
    let admin = cp.client().await.expect("admin client");
    fixtures::namespace(&admin, NS).await.expect("namespace");
    let identities = Identities::apply(&cp, NS, "thin")
        .await
        .expect("the chart's identities");
    let release = chart::fullname(&identities.release);
    let agent_user = format!("system:serviceaccount:{NS}:{release}-agent");
    let operator_user = format!("system:serviceaccount:{NS}:{release}-operator");

    let names: Vec<String> = (0..n).map(|i| format!("fleet-node-{i:04}")).collect();
    stream::iter(names.iter())
        .map(|name| {
            let admin = admin.clone();
            async move {
                fixtures::node(&admin, name, &[("pool", NS)], &[])
                    .await
                    .expect("create node")
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let heartbeats = Heartbeats::start(admin.clone(), names.clone(), HEARTBEAT);
    apply_nad(&admin, "br-one").await;
    let operator = OperatorProcess::start(
        &identities
            .operator_kubeconfig(&cp)
            .await
            .expect("operator kubeconfig"),
        NS,
        &format!("{NS}/multus"),
        &cp.dir.join("operator.log"),
    )
    .await
    .expect("operator");
    OPERATOR_PID.store(operator.pid, Ordering::SeqCst);
    operator
        .wait_ready(Duration::from_secs(120))
        .await
        .expect("operator ready");

    let roots: Vec<tempfile::TempDir> = (0..n)
        .map(|_| host_root(true).expect("host root"))
        .collect();
    let kubeconfigs: Vec<std::path::PathBuf> = stream::iter(names.iter())
        .map(|node| identities.agent_kubeconfig(&cp, node))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("agent kubeconfigs");
    let specs: Vec<AgentSpec> = names
        .iter()
        .zip(&kubeconfigs)
        .zip(&roots)
        .map(|((node, kubeconfig), root)| AgentSpec {
            node: node.clone(),
            kubeconfig: kubeconfig.clone(),
            host_root: root.path().to_path_buf(),
        })
        .collect();
    let me = std::process::id();
    let rss_before_agents = status_kib(me, "VmRSS:");
    let agents_started = Instant::now();
    let running = Agents::start(NS, &specs).expect("agents");
    let mut log = AuditLog::from_start(&cp.dir.join("audit.log"));
    until_watching(&mut log, &agent_user, n, Duration::from_secs(900)).await;
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
    let config: MultusConfig = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": NS },
        "spec": {
            "nodeSelector": { "matchLabels": { "pool": NS } },
            "primary": { "auto": {} },
            "attachments": {},
            "rollout": { "maxUnavailable": "100%" },
        },
    }))
    .expect("MultusConfig");
    Api::<MultusConfig>::all(admin.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("create the MultusConfig");
    let ready = until_ready(&admin, n, Duration::from_secs(900)).await;
    let files: Vec<std::path::PathBuf> = roots.iter().map(|r| r.path().join(NAD_FILE)).collect();
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
    let start = watch.arm("br-two");
    apply_nad(&admin, "br-two").await;
    let seen = watch.wait(start, Duration::from_secs(300)).await;
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

    if idle > 0 {
        idle_window(
            &IdleContext {
                n,
                idle,
                admin: &admin,
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
        &format!("{:.1} MiB", mib(operator.peak_rss_kib())),
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
    operator.kill().await;
    OPERATOR_PID.store(0, Ordering::SeqCst);
    drop(identities);
    drop(roots);
    tokio::task::spawn_blocking(move || drop(cp))
        .await
        .expect("stop the control plane");
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
    until_ready(c.admin, n, Duration::from_secs(300)).await;
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut last = (
        c.operator.metric("multus_operator_reconciles_total").await,
        Instant::now(),
    );
    while last.1.elapsed() < Duration::from_secs(5) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = c.operator.metric("multus_operator_reconciles_total").await;
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    log.for_each_new(|_| {});
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
        log.for_each_new(|e| tally.add(e, from, to));
    }
    let operator_cpu = c.operator.cpu_seconds() - operator_cpu;
    let agents_cpu = agents::agents_cpu_seconds() - agents_cpu;
    let reconciles = c.operator.metric("multus_operator_reconciles_total").await - reconciles;
    let writes = c.operator.metric("multus_operator_api_writes_total").await - writes;
    let beats = c.heartbeats.sent() - beats;
    // Requests received before the end may be logged a moment later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    log.for_each_new(|e| tally.add(e, from, to));

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
    let mut agent_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (user, kinds) in &tally.by_user {
        let of_agents = user == c.agent_user
            || (user != c.operator_user
                && user.starts_with("system:serviceaccount:")
                && tally.nodes.contains_key(user));
        if of_agents {
            let tag = if user == c.agent_user {
                String::new()
            } else {
                format!(
                    " (as {})",
                    user.trim_start_matches("system:serviceaccount:")
                )
            };
            for (kind, count) in kinds {
                *agent_kinds.entry(format!("{kind}{tag}")).or_default() += count;
            }
        }
    }
    row(
        &format!("{label}: agent API requests per node per hour"),
        &rates(&agent_kinds, n, c.idle),
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

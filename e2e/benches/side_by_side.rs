//! Our node agent beside upstream Multus v4.3.0's entrypoints on the same machine in the same
//! run, each on its own temporary host root (ours: built as it ships, with the `agent`
//! profile, its bundle from the API server through the chart's identities; upstream: with
//! its own ServiceAccount's token, in a private mount namespace, as its DaemonSets run it).
//! Every primary CNI config is renamed into place, as CNI installers do, and carries a
//! capability unique to its trial that every Multus config copies (see
//! `multus_e2e::side_by_side`); the bench times, with inotify on the directory, from the
//! rename until a Multus config holds it. Prints one row per figure with
//! `multus_e2e::bench::row`; asserts nothing.
//!
//! What each process is doing when the primary appears or changes:
//!
//! - Primary appears. Ours: started on an empty host root, it has fetched its bundle and
//!   reported `WaitingForPrimary`; the primary lands 1-2 s (uniformly drawn) after its start.
//!   multus-daemon: started fresh with its thick DaemonSet's config on an empty host root, it
//!   lists the directory every second (up to 120 times); the primary lands 1-2 s (uniform)
//!   after its start, so every phase of that poll is met alike; after finding it, it starts
//!   its API clients and socket server, then writes its config. thin_entrypoint, with its
//!   DaemonSet's arguments and in poll mode alike, exits on an empty root after writing its
//!   kubeconfig; kubelet would restart it after a back-off of 10 s doubling to 300 s. That
//!   row reports the measured exit and the back-off instead of a time to config.
//! - Primary changes. Each process started with a primary, wrote its config, and runs; the
//!   next primary lands 0.1-1.1 s (uniform) after the previous trial ended. thin_entrypoint
//!   with `--cleanup-config-on-exit=true` re-reads the primary every second; multus-daemon
//!   watches its primary's path with fsnotify; thin_entrypoint with its DaemonSet's arguments
//!   never looks again (one trial, watched for 5 s).
//! - Start with the primary present: a fresh host root holding the primary; timed from just
//!   before the process is spawned until its config holds the marker. thin_entrypoint's time
//!   includes `unshare` and the shell that set up its pod files, and the copy of the 47 MB
//!   `multus` binary that its DaemonSet makes it do on every start.
//! - Idle: ours, multus-daemon, thin_entrypoint (DaemonSet arguments) and thin_entrypoint in
//!   poll mode run at the same time, each on its own root with a primary and its config
//!   written; CPU time and RSS are read from /proc over one window of `IDLE_SECONDS`.
//!
//! Upstream's DaemonSets cap each container at 100m CPU; the bench sets no limits.
//!
//! `cargo bench -p multus-e2e --bench side_by_side` (TRIALS=50, IDLE_SECONDS=600 by default).

use serde_json::json;
use std::time::{Duration, Instant};

use multus_e2e::ControlPlane;
use multus_e2e::agent::{Launch, RunningAgent};
use multus_e2e::bench::{self, env_or, ms, row, spread_ms};
use multus_e2e::process::{cpu_seconds, status_kib};
use multus_e2e::scenario::{OneNode, host_root};
use multus_e2e::side_by_side::{
    CniDir, Pressure, Thick, Thin, ThinMode, Upstream, at, fsync_probe, gap, marked_primary,
    random_moment_after, ratios,
};
use multus_e2e::upstream_node::UpstreamNode;

/// How long one trial may take before the bench gives up.
const TRIAL: Duration = Duration::from_secs(30);
/// How long an agent may take to report a state.
const REPORT: Duration = Duration::from_secs(120);
/// Starts of thin_entrypoint on an empty root, per mode.
const EXIT_RUNS: usize = 5;
/// How long thin_entrypoint with its DaemonSet's arguments is watched for a rewrite.
const NEVER: Duration = Duration::from_secs(5);

/// Our agent, built as it ships (the `agent` profile), for the scenario's node on `root`.
async fn agent_on(scenario: &OneNode, root: &std::path::Path) -> RunningAgent {
    let launch = Launch {
        release: true,
        ..Launch::default()
    };
    let (ns, node) = (&scenario.ns, &scenario.node);
    let started = RunningAgent::launch(&scenario.agent_kubeconfig, ns, node, root, &launch);
    started.await.expect("start our agent")
}

fn primary(tag: &str) -> multus_e2e::side_by_side::Marked {
    marked_primary(tag).expect("marked primary")
}

/// Primary appears, ours: a fresh agent per trial, waiting for a primary.
/// Also the machine's pressure over the series.
async fn ours_appears(scenario: &OneNode, trials: usize) -> (Vec<Duration>, String) {
    let pressure = Pressure::now();
    let mut delays = Vec::with_capacity(trials);
    for i in 0..trials {
        let root = host_root(false).expect("host root");
        let mut dir = CniDir::watch(root.path()).expect("watch");
        let spawned = Instant::now();
        let agent = agent_on(scenario, root.path()).await;
        scenario.wait_state("WaitingForPrimary", REPORT).await;
        random_moment_after(spawned).await;
        let p = primary(&format!("ours-appears-{i}"));
        let delay = dir.replace(&p, TRIAL).await;
        delays.push(delay.unwrap_or_else(|| panic!("ours, trial {i}:\n{}", agent.log_tail())));
        // The next trial sees this agent's report turn into the next one's.
        scenario.wait_state("Applied", REPORT).await;
        agent.terminate().await;
    }
    (delays, pressure.since())
}

/// Primary appears, multus-daemon: a fresh daemon per trial, polling for a primary.
async fn daemon_appears(up: &Upstream<'_>, trials: usize) -> Vec<Duration> {
    let mut delays = Vec::with_capacity(trials);
    for i in 0..trials {
        let root = host_root(false).expect("host root");
        let mut dir = CniDir::watch(root.path()).expect("watch");
        let spawned = Instant::now();
        let mut thick = Thick::start(up, root.path()).expect("start multus-daemon");
        random_moment_after(spawned).await;
        assert!(
            thick.daemon.running() && !dir.has_config(),
            "multus-daemon, trial {i}: not waiting for a primary:\n{}",
            thick.daemon.log()
        );
        let delay = dir
            .replace(&primary(&format!("daemon-appears-{i}")), TRIAL)
            .await;
        let log = thick.daemon.log();
        delays.push(delay.unwrap_or_else(|| panic!("multus-daemon, trial {i}:\n{log}")));
        thick.stop().await;
    }
    delays
}

/// thin_entrypoint on an empty root: how long until it exits, and with what.
async fn thin_exits(up: &Upstream<'_>, mode: ThinMode) -> (Vec<Duration>, String) {
    let mut times = Vec::with_capacity(EXIT_RUNS);
    let mut statuses = Vec::new();
    for _ in 0..EXIT_RUNS {
        let root = host_root(false).expect("host root");
        let spawned = Instant::now();
        let mut thin = Thin::start(up, mode, root.path()).expect("start thin_entrypoint");
        let status = thin.wait_exit(TRIAL).await;
        times.push(spawned.elapsed());
        let status = status.map_or_else(|| "still running".into(), |s| s.to_string());
        eprintln!(
            "thin_entrypoint {mode:?} on an empty root: {status}\n{}",
            thin.log()
        );
        statuses.push(status);
        thin.stop().await;
    }
    statuses.dedup();
    (times, statuses.join(", "))
}

/// A series of primary replacements on `dir`, whose process has written its first config.
async fn changes(dir: &mut CniDir, tag: &str, trials: usize) -> Vec<Duration> {
    let mut delays = Vec::with_capacity(trials);
    for i in 0..trials {
        gap().await;
        let delay = dir.replace(&primary(&format!("{tag}-{i}")), TRIAL).await;
        delays
            .push(delay.unwrap_or_else(|| panic!("{tag}, trial {i}: no rewrite within {TRIAL:?}")));
    }
    delays
}

/// A host root holding a marked primary, watched; returns the marker too.
fn root_with_primary(tag: &str) -> (tempfile::TempDir, CniDir, String) {
    let root = host_root(false).expect("host root");
    let dir = CniDir::watch(root.path()).expect("watch");
    let p = primary(tag);
    dir.place(&p).expect("place the primary");
    (root, dir, p.marker)
}

async fn wait_first(dir: &mut CniDir, marker: &str, since: Instant, who: &str) -> Duration {
    dir.wait(marker, since, TRIAL)
        .await
        .unwrap_or_else(|| panic!("{who}: no first config within {TRIAL:?}"))
}

struct Changed {
    ours: Vec<Duration>,
    disk: Vec<Duration>,
    pressure: String,
    poll: Vec<Duration>,
    daemon: Vec<Duration>,
    never: Option<Duration>,
}

async fn all_changes(scenario: &OneNode, up: &Upstream<'_>, trials: usize) -> Changed {
    let (root, mut dir, marker) = root_with_primary("ours-changes-first");
    let started = Instant::now();
    let agent = agent_on(scenario, root.path()).await;
    wait_first(&mut dir, &marker, started, "ours").await;
    let pressure = Pressure::now();
    let ours = changes(&mut dir, "ours-changes", trials).await;
    let pressure = pressure.since();
    agent.terminate().await;
    let disk = fsync_probe(&root.path().join("etc/cni/net.d"), 20).expect("fsync probe");

    let (root, mut dir, marker) = root_with_primary("poll-changes-first");
    let started = Instant::now();
    let thin = Thin::start(up, ThinMode::Poll, root.path()).expect("thin_entrypoint");
    wait_first(&mut dir, &marker, started, "thin_entrypoint poll mode").await;
    let poll = changes(&mut dir, "poll-changes", trials).await;
    thin.stop().await;

    let (root, mut dir, marker) = root_with_primary("daemon-changes-first");
    let started = Instant::now();
    let thick = Thick::start(up, root.path()).expect("multus-daemon");
    wait_first(&mut dir, &marker, started, "multus-daemon").await;
    let daemon = changes(&mut dir, "daemon-changes", trials).await;
    thick.stop().await;

    let (root, mut dir, marker) = root_with_primary("thin-changes-first");
    let started = Instant::now();
    let thin = Thin::start(up, ThinMode::DaemonSet, root.path()).expect("thin_entrypoint");
    wait_first(&mut dir, &marker, started, "thin_entrypoint").await;
    gap().await;
    let never = dir.replace(&primary("thin-changes-1"), NEVER).await;
    thin.stop().await;
    Changed {
        ours,
        disk,
        pressure,
        poll,
        daemon,
        never,
    }
}

/// Start with the primary present, until the config holds it: ours, then thin_entrypoint.
async fn starts(scenario: &OneNode, up: &Upstream<'_>, trials: usize) -> [Vec<Duration>; 2] {
    let (mut ours, mut thin) = (Vec::new(), Vec::new());
    for i in 0..trials {
        let (root, mut dir, marker) = root_with_primary(&format!("ours-start-{i}"));
        let spawned = Instant::now();
        let agent = agent_on(scenario, root.path()).await;
        ours.push(wait_first(&mut dir, &marker, spawned, "ours").await);
        agent.wait_ready("agent applied its bundle", REPORT).await;
        agent.terminate().await;

        let (root, mut dir, marker) = root_with_primary(&format!("thin-start-{i}"));
        let spawned = Instant::now();
        let process = Thin::start(up, ThinMode::DaemonSet, root.path()).expect("thin_entrypoint");
        thin.push(wait_first(&mut dir, &marker, spawned, "thin_entrypoint").await);
        process.stop().await;
    }
    [ours, thin]
}

/// RSS (MiB) and CPU seconds per minute of ours, multus-daemon, thin_entrypoint and
/// thin_entrypoint in poll mode, all idle over one window of `idle`.
async fn idle_cost(scenario: &OneNode, up: &Upstream<'_>, idle: Duration) -> Vec<(f64, f64)> {
    let who = ["ours", "multus-daemon", "thin_entrypoint", "thin-poll"];
    let mut roots = who.map(|w| root_with_primary(&format!("{w}-idle")));
    let started = Instant::now();
    let agent = agent_on(scenario, roots[0].0.path()).await;
    let thick = Thick::start(up, roots[1].0.path()).expect("multus-daemon");
    let thin = Thin::start(up, ThinMode::DaemonSet, roots[2].0.path()).expect("thin_entrypoint");
    let poll = Thin::start(up, ThinMode::Poll, roots[3].0.path()).expect("thin_entrypoint");
    for ((_, dir, marker), who) in roots.iter_mut().zip(who) {
        wait_first(dir, marker, started, who).await;
    }
    agent.wait_ready("agent applied its bundle", REPORT).await;
    let pids = [agent.pid(), thick.pid(), thin.pid(), poll.pid()].map(|p| p.expect("pid"));
    let before = pids.map(cpu_seconds);
    eprintln!(
        "all four idle, measuring {} s (pids {pids:?}) ...",
        idle.as_secs()
    );
    tokio::time::sleep(idle).await;
    let cost = pids
        .iter()
        .zip(before)
        .map(|(pid, b)| {
            let rss = status_kib(*pid, "VmRSS:") as f64 / 1024.0;
            (rss, (cpu_seconds(*pid) - b) * 60.0 / idle.as_secs_f64())
        })
        .collect();
    agent.terminate().await;
    thick.stop().await;
    thin.stop().await;
    poll.stop().await;
    cost
}

#[tokio::main]
async fn main() {
    let began = Instant::now();
    let trials: usize = env_or("TRIALS", 50);
    let idle = Duration::from_secs(env_or("IDLE_SECONDS", 600));
    let cp = ControlPlane::own(ControlPlane::start).await;
    let scenario = OneNode::start(&cp, "sbs", json!({}))
        .await
        .expect("scenario");
    let upstream_node = UpstreamNode::new(&cp, &scenario.ns, "198.18.61.0/24")
        .await
        .expect("upstream's identity");
    let up = Upstream::new(&cp, &upstream_node)
        .await
        .expect("upstream's token");
    println!(
        "side by side with Multus v4.3.0 ({}; {trials} trials, {} s idle)",
        bench::machine(),
        idle.as_secs()
    );
    println!("| figure | ours | anchor | ratio |\n| --- | --- | --- | --- |");

    let (ours, appears_pressure) = ours_appears(&scenario, trials).await;
    let daemon = daemon_appears(&up, trials).await;
    let (thin_exit, thin_status) = thin_exits(&up, ThinMode::DaemonSet).await;
    let (poll_exit, poll_status) = thin_exits(&up, ThinMode::Poll).await;
    row(
        &format!("primary CNI config appears -> Multus config written, {trials} trials"),
        &spread_ms(&ours),
        Some(&format!(
            "multus-daemon {}; thin_entrypoint exits {} after start ({thin_status}), in poll \
             mode {} ({poll_status}); kubelet back-off 10-300 s",
            spread_ms(&daemon),
            ms(at(&thin_exit, 50.0)),
            ms(at(&poll_exit, 50.0)),
        )),
        Some(&format!("multus-daemon {}", ratios(&ours, &daemon))),
    );

    let changed = all_changes(&scenario, &up, trials).await;
    let never = changed.never.map_or_else(
        || format!("not rewritten within {} s", NEVER.as_secs()),
        |d| format!("rewritten after {}", ms(d)),
    );
    row(
        &format!("primary CNI config changes -> Multus config rewritten, {trials} trials"),
        &spread_ms(&changed.ours),
        Some(&format!(
            "thin_entrypoint poll mode {}; multus-daemon {}; thin_entrypoint (DaemonSet \
             arguments) {never}",
            spread_ms(&changed.poll),
            spread_ms(&changed.daemon),
        )),
        Some(&format!(
            "thin poll {}; multus-daemon {}",
            ratios(&changed.ours, &changed.poll),
            ratios(&changed.ours, &changed.daemon)
        )),
    );

    row(
        "context: the machine during ours' trials (PSI some), one fsynced write as ours makes each",
        &format!(
            "appears: {appears_pressure}; changes: {}; write (file, rename, directory) {}",
            changed.pressure,
            spread_ms(&changed.disk)
        ),
        None,
        None,
    );

    let [ours, thin] = starts(&scenario, &up, trials).await;
    row(
        &format!(
            "start with the primary present -> config written, process start included, {trials} trials"
        ),
        &spread_ms(&ours),
        Some(&format!("thin_entrypoint {}", spread_ms(&thin))),
        Some(&ratios(&ours, &thin)),
    );

    let cost = idle_cost(&scenario, &up, idle).await;
    let window = if idle.as_secs().is_multiple_of(60) {
        format!("{} idle minutes", idle.as_secs() / 60)
    } else {
        format!("{} idle seconds", idle.as_secs())
    };
    let others = |f: fn(&(f64, f64)) -> String| {
        format!(
            "multus-daemon {} / thin_entrypoint {} / thin_entrypoint poll mode {}",
            f(&cost[1]),
            f(&cost[2]),
            f(&cost[3])
        )
    };
    row(
        &format!("RSS after {window}, all running at once"),
        &format!("{:.1} MiB", cost[0].0),
        Some(&others(|c| format!("{:.1} MiB", c.0))),
        bench::ratio(cost[0].0, cost[1].0).as_deref(),
    );
    row(
        &format!("CPU seconds per idle minute over {window}"),
        &format!("{:.4} s", cost[0].1),
        Some(&others(|c| format!("{:.4} s", c.1))),
        bench::ratio(cost[0].1, cost[1].1).as_deref(),
    );
    eprintln!("whole run: {:.0} s", began.elapsed().as_secs_f64());
    scenario.operator.stop().await;
}

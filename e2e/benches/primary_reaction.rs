//! How quickly the Multus config follows the primary CNI config: an installer replaces the
//! primary file (write elsewhere, rename into place, as CNI installers do), and the bench
//! times until `00-multus.conf` embeds the new primary. The bench watches the directory
//! with inotify itself, so the figure is not limited by a polling interval. Release build
//! of the agent; prints p50, p99 and max; asserts nothing about them.
//!
//! `cargo bench -p multus-e2e --bench primary_reaction` (TRIALS=50 by default).

use notify::Watcher;
use serde_json::json;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multus_e2e::agent::RunningAgent;
use multus_e2e::scenario::{CALICO, OneNode};
use multus_e2e::{ControlPlane, bench};

/// How long one trial may take before the bench gives up.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(10);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn config_names(path: &Path, name: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(&format!("\"{name}\"")))
}

#[tokio::main]
async fn main() {
    let trials: usize = bench::env_or("TRIALS", 50);
    let cp = ControlPlane::own(ControlPlane::start).await;
    let scenario = OneNode::start(&cp, "reaction", json!({})).await.unwrap();
    let agent = RunningAgent::start_release_as(
        &scenario.agent_kubeconfig,
        &scenario.ns,
        &scenario.node,
        scenario.root.path(),
    )
    .await
    .unwrap();
    agent
        .wait_ready("agent applied its bundle", Duration::from_secs(120))
        .await;

    let dir = scenario.root.path().join("etc/cni/net.d");
    let multus = dir.join("00-multus.conf");
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        let _ = tx.send(e.is_ok());
    })
    .expect("inotify");
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .expect("watch the CNI directory");

    let mut delays = Vec::with_capacity(trials);
    for i in 0..trials {
        let name = format!("k8s-pod-network-{i}");
        let staged = scenario.root.path().join("staged-primary");
        std::fs::write(&staged, CALICO.replace("k8s-pod-network", &name)).unwrap();
        while rx.try_recv().is_ok() {}
        let started = Instant::now();
        std::fs::rename(&staged, dir.join("10-calico.conflist")).unwrap();
        loop {
            if config_names(&multus, &name) {
                delays.push(started.elapsed());
                break;
            }
            let left = TRIAL_TIMEOUT.saturating_sub(started.elapsed());
            assert!(
                !left.is_zero(),
                "trial {i}: no new config within {TRIAL_TIMEOUT:?}"
            );
            let _ = rx.recv_timeout(left);
        }
        // Trials apart, so that one trial's echoes do not run into the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "primary CNI config replaced -> 00-multus.conf rewritten, {trials} trials (the agent as it ships, `agent` profile; inotify-timed)"
    );
    println!("  p50: {:>7.2} ms", ms(percentile(&delays, 50.0)));
    println!("  p99: {:>7.2} ms", ms(percentile(&delays, 99.0)));
    println!("  max: {:>7.2} ms", ms(percentile(&delays, 100.0)));
    agent.terminate().await;
    scenario.operator.stop().await;
}

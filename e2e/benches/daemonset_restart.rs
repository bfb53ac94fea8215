//! The DaemonSet restart path on a real node (upstream kubelet, containerd, runc): how long a
//! node waits for its Multus config when the primary CNI config arrives after the Multus pod
//! started, with our chart's node pod beside upstream v4.3.0's thin DaemonSet as it ships.
//!
//! Both run on one node, each on its own scratch root under the node's /etc/cni (never the
//! node's real CNI directories): ours installed with the real helm and the chart's
//! identities (`paths.*` pointing at its root), upstream's from its release's
//! `deployments/multus-daemonset.yml` (see `multus_e2e::upstream_daemonset`). Their pods
//! run only while the node carries a gate label. Each trial:
//!
//! 1. removes the gate (both DaemonSets delete their pods), waits until both pods are gone
//!    and empties both roots' CNI config directories, as after a reboot before the primary
//!    CNI has started;
//! 2. sets the gate: both DaemonSets create their pods at once;
//! 3. `T` seconds later (one of `DELAYS`) renames a primary config into each root, as a CNI
//!    installer does (the primary's own start-up time, a scenario parameter);
//! 4. times, with inotify on each directory, from the rename until a Multus config holds
//!    the primary.
//!
//! What happens meanwhile: our agent fetches its bundle, reports `WaitingForPrimary` and
//! watches the directory. Upstream's thin_entrypoint, with its DaemonSet's arguments, exits
//! when it finds no primary; the kubelet restarts it after a back-off of 10 s that doubles
//! on every exit up to 300 s, so upstream's figure is what is left of the back-off when the
//! primary lands, plus its start. The bench prints the pod's restart count and state at
//! that moment, from the API server.
//!
//! `cargo bench -p multus-e2e --bench daemonset_restart` (`DELAYS=5,15,30,60,120` seconds by
//! default; about 10 minutes on 2 cores, most of it waiting for the back-off). Needs root,
//! like the real-node tests. Prints one row per delay with `multus_e2e::bench::row`;
//! asserts nothing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multus_e2e::bench::{self, ms, row};
use multus_e2e::node::{NodeOptions, RealNode};
use multus_e2e::release::{Release, apply, kubectl, wait_for};
use multus_e2e::side_by_side::{CniDir, marked_primary};
use multus_e2e::upstream_daemonset::{self, NAMESPACE, POD_SELECTOR};
use multus_e2e::{ControlPlane, oci, unique_name};

/// The node label both DaemonSets' pods require.
const GATE: (&str, &str) = ("multus-e2e/restart-bench", "on");
/// Scratch roots on the node, each with `etc/cni/net.d` and `opt/cni/bin` below it.
const OURS_ROOT: &str = "/etc/cni/restart-ours";
const UPSTREAM_ROOT: &str = "/etc/cni/restart-upstream";
/// The chart's node pods.
const OURS_SELECTOR: &str = "app.kubernetes.io/component=node";
/// From the rename to the Multus config: the longest back-off (300 s), a start under a
/// 100m CPU limit, and room for a loaded machine.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(420);
/// Until both DaemonSets' pods are gone after the gate is removed: upstream's grace period
/// is 10 s, ours shorter.
const PODS_GONE: Duration = Duration::from_secs(120);

fn delays() -> Vec<u64> {
    std::env::var("DELAYS")
        .ok()
        .map(|s| s.split(',').filter_map(|d| d.trim().parse().ok()).collect())
        .filter(|d: &Vec<u64>| !d.is_empty())
        .unwrap_or_else(|| vec![5, 15, 30, 60, 120])
}

/// One scratch root: the node path and the host path, with its directories made.
struct Root {
    node_path: &'static str,
    host: PathBuf,
}

impl Root {
    fn new(node: &RealNode, node_path: &'static str) -> Root {
        let host = node.host_path(node_path).expect("host path");
        for dir in ["etc/cni/net.d", "opt/cni/bin"] {
            std::fs::create_dir_all(host.join(dir)).expect("scratch directory");
        }
        Root { node_path, host }
    }

    /// The primary and the Multus configs gone, as before the primary CNI starts.
    fn empty_configs(&self) {
        let dir = self.host.join("etc/cni/net.d");
        for entry in std::fs::read_dir(&dir)
            .expect("read scratch net.d")
            .flatten()
        {
            if entry.path().is_file() {
                std::fs::remove_file(entry.path()).expect("remove a scratch config");
            }
        }
    }
}

fn set_gate(cp: &ControlPlane, node: &str, on: bool) {
    let label = if on {
        format!("{}={}", GATE.0, GATE.1)
    } else {
        format!("{}-", GATE.0)
    };
    kubectl(cp, &["label", "node", node, &label, "--overwrite"]);
}

/// The pods of `selector` in `ns`, as JSON.
fn pods(cp: &ControlPlane, ns: &str, selector: &str) -> Vec<Value> {
    let out = kubectl(cp, &["get", "pods", "-n", ns, "-l", selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("pod list JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Upstream's container as the API server reports it: restarts so far and its state
/// (`waiting: CrashLoopBackOff`, `running`, ...), or `no pod yet`.
fn upstream_state(cp: &ControlPlane) -> (u64, String) {
    let pods = pods(cp, NAMESPACE, POD_SELECTOR);
    let Some(status) = pods
        .first()
        .and_then(|p| p["status"]["containerStatuses"].as_array())
        .and_then(|s| s.first())
    else {
        return (0, "no container status yet".into());
    };
    let restarts = status["restartCount"].as_u64().unwrap_or(0);
    let state = match status["state"].as_object().and_then(|s| s.iter().next()) {
        Some((kind, detail)) => match detail["reason"].as_str() {
            Some(reason) => format!("{kind}: {reason}"),
            None => kind.clone(),
        },
        None => "unknown".into(),
    };
    (restarts, state)
}

/// One trial's figures.
struct Trial {
    delay: u64,
    ours: Duration,
    upstream: Duration,
    restarts_before: u64,
    state_before: String,
    restarts_after: u64,
}

async fn trial(
    cp: &ControlPlane,
    node: &RealNode,
    release: &Release,
    roots: [&Root; 2],
    delay: u64,
) -> Trial {
    set_gate(cp, &node.name, false);
    wait_for("both DaemonSets' pods to be gone", PODS_GONE, || {
        let left =
            pods(cp, NAMESPACE, POD_SELECTOR).len() + pods(cp, &release.ns, OURS_SELECTOR).len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} pods left"))
        }
    });
    for root in roots {
        root.empty_configs();
    }
    let [ours_root, upstream_root] = roots;
    let mut ours_dir = CniDir::watch(&ours_root.host).expect("watch ours");
    let mut upstream_dir = CniDir::watch(&upstream_root.host).expect("watch upstream");
    set_gate(cp, &node.name, true);
    let asked = Instant::now();
    // The scenario's parameter: the primary CNI becomes ready `delay` seconds after the
    // Multus pods were asked for.
    tokio::time::sleep_until((asked + Duration::from_secs(delay)).into()).await;
    let (restarts_before, state_before) = upstream_state(cp);
    let primary = marked_primary(&format!("restart-{delay}")).expect("primary");
    let ours_at = ours_dir.place(&primary).expect("place ours");
    let upstream_at = upstream_dir.place(&primary).expect("place upstream");
    let (ours, upstream) = tokio::join!(
        ours_dir.wait(&primary.marker, ours_at, CONFIG_TIMEOUT),
        upstream_dir.wait(&primary.marker, upstream_at, CONFIG_TIMEOUT),
    );
    let (restarts_after, _) = upstream_state(cp);
    let ours = ours.unwrap_or_else(|| panic!("ours, T={delay} s:\n{}", release.diagnostics()));
    let upstream = upstream.unwrap_or_else(|| {
        panic!(
            "upstream, T={delay} s: no config after {CONFIG_TIMEOUT:?}; pod state {:?}",
            upstream_state(cp)
        )
    });
    Trial {
        delay,
        ours,
        upstream,
        restarts_before,
        state_before,
        restarts_after,
    }
}

/// Installs ours and upstream's on their roots, each with a primary present, and waits
/// until both have written their config.
async fn install(cp: &'static ControlPlane, node: &RealNode, roots: [&Root; 2]) -> Release {
    let [ours_root, upstream_root] = roots;
    let primary = marked_primary("install").expect("primary");
    let mut dirs = Vec::new();
    for root in roots {
        let dir = CniDir::watch(&root.host).expect("watch");
        dir.place(&primary).expect("place the first primary");
        dirs.push(dir);
    }
    set_gate(cp, &node.name, true);
    let path = |sub: &str| format!("{}/{sub}", ours_root.node_path);
    let sets = [
        format!("paths.cniConfDir={}", path("etc/cni/net.d")),
        format!("paths.multusConfDir={}", path("etc/cni/multus/net.d")),
        format!("paths.cniBinDir={}", path("opt/cni/bin")),
        format!(
            "paths.kubeconfigPath={}",
            path("etc/cni/net.d/multus.d/multus.kubeconfig")
        ),
        format!(
            "agent.nodeSelector.{}={}",
            GATE.0.replace('.', "\\."),
            GATE.1
        ),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let (release, took) = Release::install(cp, node, "thin", &sets);
    eprintln!("ours installed and Ready in {took:.1?}");
    // Upstream's pods are privileged, as its DaemonSet ships them.
    kubectl(
        cp,
        &[
            "label",
            "namespace",
            NAMESPACE,
            "pod-security.kubernetes.io/enforce=privileged",
            "--overwrite",
        ],
    );
    let docs = upstream_daemonset::thin_daemonset(upstream_root.node_path, GATE)
        .expect("upstream's thin DaemonSet");
    // Not its NetworkAttachmentDefinition CRD: the control plane installs that at start.
    for doc in docs
        .iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition")
    {
        apply(cp, doc);
    }
    let began = Instant::now();
    for (dir, who) in dirs.iter_mut().zip(["ours", "upstream"]) {
        let written = dir.wait(&primary.marker, began, CONFIG_TIMEOUT).await;
        assert!(
            written.is_some(),
            "{who}: no Multus config on its root; upstream pods: {:?}",
            upstream_state(cp)
        );
    }
    release
}

/// Seconds with two decimals: upstream's figures are the kubelet's back-off.
fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn images(dir: &Path) -> Vec<PathBuf> {
    oci::images::all(dir)
        .expect("images")
        .into_iter()
        .filter(|i| i.reference != oci::images::PAUSE)
        .map(|i| i.path)
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let began = Instant::now();
    let delays = delays();
    let cp = ControlPlane::shared_for_real_nodes();
    let image_dir = tempfile::tempdir().expect("image dir");
    let options = NodeOptions {
        images: images(image_dir.path()),
        ..NodeOptions::default()
    };
    let node = RealNode::start(cp, &unique_name("restart"), &options).expect("node start");
    let roots = [
        &Root::new(&node, OURS_ROOT),
        &Root::new(&node, UPSTREAM_ROOT),
    ];
    let release = install(cp, &node, roots).await;
    let mut trials = Vec::new();
    for delay in delays {
        let t = trial(cp, &node, &release, roots, delay).await;
        eprintln!(
            "T={} s: ours {}, upstream {} (upstream's container before: {} restarts, {}; after: {} restarts)",
            t.delay,
            ms(t.ours),
            seconds(t.upstream),
            t.restarts_before,
            t.state_before,
            t.restarts_after
        );
        trials.push(t);
    }
    println!();
    println!(
        "daemonset_restart on {} (real node: kubelet, containerd, runc)",
        bench::machine()
    );
    println!("| figure | ours | upstream v4.3.0 thin DaemonSet | ratio |");
    println!("| --- | --- | --- | --- |");
    for t in &trials {
        let anchor = format!(
            "{} (the primary landed after {} restarts, in state {})",
            seconds(t.upstream),
            t.restarts_before,
            t.state_before
        );
        row(
            &format!(
                "primary lands {} s after the gate label is set again -> Multus config written",
                t.delay
            ),
            &ms(t.ours),
            Some(&anchor),
            bench::ratio(t.ours.as_secs_f64(), t.upstream.as_secs_f64()).as_deref(),
        );
    }
    drop(release);
    println!(
        "daemonset_restart took {:.0} s",
        began.elapsed().as_secs_f64()
    );
}

//! Our agent beside upstream Multus v4.3.0's entrypoints, each on its own host root: primary
//! CNI configs carrying a marker that every Multus config copies, an inotify stopwatch from a
//! primary's rename into place until a Multus config holds its marker, and upstream's
//! `thin_entrypoint` and `multus-daemon` started the way their DaemonSets start them.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use notify::Watcher;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::bench::percentile;
use crate::error::io;
use crate::scenario::CALICO;
use crate::thick::{Daemon, Launch};
use crate::upstream::{Entrypoint, InCluster, thin_entrypoint_with};
use crate::upstream_node::UpstreamNode;
use crate::{ControlPlane, E2eError};

/// Where the primary goes, relative to a host root.
pub const PRIMARY: &str = "etc/cni/net.d/10-calico.conflist";

/// A primary CNI config and what its Multus config holds once it follows it.
pub struct Marked {
    pub text: String,
    /// A JSON string, quotes included, that appears in no other trial's config.
    pub marker: String,
}

/// Calico's config named after `tag`, with a capability named after `tag` on its first
/// plugin. Ours and thin_entrypoint embed the whole primary in their Multus config;
/// multus-daemon refers to it by path and copies only its capabilities: so the capability
/// is what all three carry over.
pub fn marked_primary(tag: &str) -> Result<Marked, E2eError> {
    let mut config: Value = serde_json::from_str(CALICO)
        .map_err(|e| E2eError::Io(format!("Calico's test config: {e}")))?;
    if config["plugins"].as_array().is_none_or(|p| p.is_empty()) {
        return Err(E2eError::Io("Calico's test config has no plugins".into()));
    }
    let key = format!("e2e-{tag}");
    config["name"] = json!(format!("k8s-pod-network-{tag}"));
    config["plugins"][0]["capabilities"][&key] = json!(true);
    Ok(Marked {
        text: config.to_string(),
        marker: format!("\"{key}\""),
    })
}

/// A host root's CNI config directory under inotify.
pub struct CniDir {
    root: PathBuf,
    events: mpsc::UnboundedReceiver<()>,
    _watcher: notify::RecommendedWatcher,
}

impl CniDir {
    /// Watches `<root>/etc/cni/net.d`, creating it first.
    pub fn watch(root: &Path) -> Result<CniDir, E2eError> {
        let dir = root.join("etc/cni/net.d");
        std::fs::create_dir_all(&dir).map_err(io("CNI config directory"))?;
        let (tx, events) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = tx.send(());
        })
        .map_err(|e| E2eError::Io(format!("inotify: {e}")))?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| E2eError::Io(format!("watch {}: {e}", dir.display())))?;
        Ok(CniDir {
            root: root.to_path_buf(),
            events,
            _watcher: watcher,
        })
    }

    /// Whether a Multus config (`00-multus.conf` or `00-multus.conflist`) exists.
    pub fn has_config(&self) -> bool {
        self.configs().next().is_some()
    }

    /// Whether a Multus config holds `marker`.
    pub fn holds(&self, marker: &str) -> bool {
        self.configs().any(|text| text.contains(marker))
    }

    fn configs(&self) -> impl Iterator<Item = String> + '_ {
        ["00-multus.conf", "00-multus.conflist"]
            .into_iter()
            .filter_map(|n| std::fs::read_to_string(self.root.join("etc/cni/net.d").join(n)).ok())
    }

    /// Writes `primary` beside the directory and renames it into place, as CNI installers
    /// do; returns the moment of the rename.
    pub fn place(&self, primary: &Marked) -> Result<Instant, E2eError> {
        let staged = self.root.join("staged-primary");
        std::fs::write(&staged, &primary.text).map_err(io("stage the primary"))?;
        let renamed = Instant::now();
        std::fs::rename(&staged, self.root.join(PRIMARY)).map_err(io("rename the primary"))?;
        Ok(renamed)
    }

    /// Time from `since` until a Multus config holds `marker`; `None` after `timeout`.
    /// Every change in the directory wakes it, so no polling interval limits the figure.
    pub async fn wait(
        &mut self,
        marker: &str,
        since: Instant,
        timeout: Duration,
    ) -> Option<Duration> {
        loop {
            if self.holds(marker) {
                return Some(since.elapsed());
            }
            let left = timeout.checked_sub(since.elapsed())?;
            let _ = tokio::time::timeout(left, self.events.recv()).await;
        }
    }

    /// [`Self::place`], then [`Self::wait`] for its marker.
    pub async fn replace(&mut self, primary: &Marked, timeout: Duration) -> Option<Duration> {
        let renamed = self.place(primary).ok()?;
        self.wait(&primary.marker, renamed, timeout).await
    }
}

/// Sleeps until a moment drawn uniformly between 1 s and 2 s after `start`, so the primary
/// meets a once-a-second poll at every phase alike.
pub async fn random_moment_after(start: Instant) {
    let at = start + Duration::from_millis(1000 + fastrand::u64(0..1000));
    tokio::time::sleep_until(at.into()).await;
}

/// The gap before each trial of a series: 100 ms for the previous trial's echoes, plus a
/// uniform 0-1 s so a once-a-second poll is met at every phase alike.
pub async fn gap() {
    tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(0..1000))).await;
}

/// The `p`th percentile of unsorted samples; zero when there are none.
pub fn at(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, p).unwrap_or_default()
}

/// `anchor / ours` at p50 and p99, for a ratio cell: `12.3x p50 / 0.05x p99` (two
/// decimals below 1, where ours is the slower).
pub fn ratios(ours: &[Duration], anchor: &[Duration]) -> String {
    let cell = |p: f64| {
        let (ours, anchor) = (at(ours, p).as_secs_f64(), at(anchor, p).as_secs_f64());
        match anchor / ours {
            _ if ours <= 0.0 => "-".to_string(),
            r if r < 1.0 => format!("{r:.2}x"),
            r => format!("{r:.1}x"),
        }
    };
    format!("{} p50 / {} p99", cell(50.0), cell(99.0))
}

/// `n` writes of a 1 KiB file in `dir` made as our agent makes each write (temp file
/// written and fsynced, renamed into place, directory fsynced): what the disk adds to ours.
pub fn fsync_probe(dir: &Path, n: usize) -> Result<Vec<Duration>, E2eError> {
    let (temp, target) = (dir.join(".probe.tmp"), dir.join("probe"));
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mut file = std::fs::File::create(&temp).map_err(io("probe file"))?;
        file.write_all(&[b'x'; 1024]).map_err(io("probe write"))?;
        file.sync_all().map_err(io("probe fsync"))?;
        std::fs::rename(&temp, &target).map_err(io("probe rename"))?;
        let parent = std::fs::File::open(dir).map_err(io("probe directory"))?;
        parent.sync_all().map_err(io("probe directory fsync"))?;
        times.push(started.elapsed());
    }
    let _ = std::fs::remove_file(&target);
    Ok(times)
}

/// The machine's pressure stall totals (`/proc/pressure/{cpu,io}`, `some` line) at a
/// moment: how much of the time some task waited for a CPU or for the disk.
#[derive(Clone, Copy, Debug)]
pub struct Pressure {
    cpu_us: u64,
    io_us: u64,
    at: Instant,
}

impl Pressure {
    pub fn now() -> Pressure {
        let total = |kind: &str| {
            let text =
                std::fs::read_to_string(format!("/proc/pressure/{kind}")).unwrap_or_default();
            text.lines()
                .find(|l| l.starts_with("some "))
                .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
        };
        Pressure {
            cpu_us: total("cpu"),
            io_us: total("io"),
            at: Instant::now(),
        }
    }

    /// `CPU 12% / I/O 3%`: the share of the time since `self` that some task waited.
    pub fn since(&self) -> String {
        let now = Pressure::now();
        let wall = self.at.elapsed().as_secs_f64() * 1e6;
        let share = |a: u64, b: u64| b.saturating_sub(a) as f64 * 100.0 / wall;
        format!(
            "CPU {:.0}% / I/O {:.0}%",
            share(self.cpu_us, now.cpu_us),
            share(self.io_us, now.io_us)
        )
    }
}

/// Upstream's identity: a token of its ServiceAccount bound to its node, as its DaemonSet
/// pods hold one (see [`UpstreamNode`]).
pub struct Upstream<'a> {
    pub cp: &'a ControlPlane,
    pub token: String,
    pub node: String,
}

impl<'a> Upstream<'a> {
    pub async fn new(cp: &'a ControlPlane, node: &UpstreamNode) -> Result<Upstream<'a>, E2eError> {
        Ok(Upstream {
            cp,
            token: node.token().await?,
            node: node.node.clone(),
        })
    }
}

/// How thin_entrypoint runs: with its DaemonSet's arguments (writes once, then sleeps), or
/// with `--cleanup-config-on-exit=true` added (re-reads the primary every second).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThinMode {
    DaemonSet,
    Poll,
}

/// A running thin_entrypoint with its pod files and log.
pub struct Thin {
    child: Child,
    work: tempfile::TempDir,
}

impl Thin {
    /// Starts it on `root` (see [`crate::upstream::thin_entrypoint`]).
    pub fn start(up: &Upstream<'_>, mode: ThinMode, root: &Path) -> Result<Thin, E2eError> {
        let work = tempfile::tempdir().map_err(io("thin_entrypoint work directory"))?;
        let extra: &[&str] = match mode {
            ThinMode::DaemonSet => &[],
            ThinMode::Poll => &["--cleanup-config-on-exit=true"],
        };
        let pod = InCluster {
            token: &up.token,
            cp: up.cp,
        };
        let child = thin_entrypoint_with(&Entrypoint::LATEST_AUTO, extra, root, &pod, work.path())?;
        Ok(Thin { child, work })
    }

    /// Its process id: `unshare` and the pod shell exec into it.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What it printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join(Entrypoint::LATEST_AUTO.log))
            .unwrap_or_default()
    }

    /// Its exit status, if it exits within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let waited = tokio::time::timeout(timeout, self.child.wait()).await;
        waited.ok().and_then(Result::ok)
    }

    /// SIGTERM, as kubelet stops a container; SIGKILL after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if self.wait_exit(Duration::from_secs(10)).await.is_none() {
            let _ = self.child.kill().await;
        }
    }
}

/// A running multus-daemon with its thick DaemonSet's `daemon-config.json`, `/host` mapped
/// to the host root.
pub struct Thick {
    pub daemon: Daemon,
    config: PathBuf,
    _work: tempfile::TempDir,
}

impl Thick {
    /// Starts it on `root`; returns at once (it may still be polling for a primary).
    pub fn start(up: &Upstream<'_>, root: &Path) -> Result<Thick, E2eError> {
        let work = tempfile::tempdir().map_err(io("multus-daemon work directory"))?;
        let net_d = root.join("etc/cni/net.d").display().to_string();
        // v4.3.0's thick manifest, paths seen from the host root instead of `/host`.
        let config = json!({
            "chrootDir": "/",
            "cniVersion": "0.3.1",
            "logLevel": "verbose",
            "logToStderr": true,
            "cniConfigDir": net_d,
            "multusAutoconfigDir": net_d,
            "multusConfigFile": "auto",
            "socketDir": root.join("run/multus").display().to_string(),
        });
        let path = work.path().join("daemon-config.json");
        std::fs::write(&path, config.to_string()).map_err(io("daemon config"))?;
        let launch = Launch {
            binary: crate::binaries::bin("multus-daemon")?,
            config: &path,
            socket_dir: root.join("run/multus"),
            token: &up.token,
            node: &up.node,
            work: work.path(),
            hide: Vec::new(),
        };
        let daemon = Daemon::start(up.cp, &launch)?;
        Ok(Thick {
            daemon,
            config: path,
            _work: work,
        })
    }

    /// The daemon's process id, found in /proc by its unique config path.
    pub fn pid(&self) -> Option<u32> {
        let needle = self.config.display().to_string();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"));
                comm.is_ok_and(|c| c.trim() == "multus-daemon")
                    && cmdline.is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
    }

    pub async fn stop(self) {
        self.daemon.stop().await;
    }
}

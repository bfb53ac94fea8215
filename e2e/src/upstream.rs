//! Upstream Multus' own entrypoints, run against a test host root the way its DaemonSets
//! run them, to prepare nodes as upstream leaves them.
//!
//! Upstream's entrypoints read the pod's ServiceAccount token and CA from the fixed path
//! `/var/run/secrets/kubernetes.io/serviceaccount/`. Each run gets a private mount
//! namespace (`unshare --mount`) with a tmpfs on `/run` holding just those two files, so
//! nothing of the machine's is touched. Where the DaemonSet mounts the host at `/host`, the
//! same directories are passed under the test's host root instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

use crate::binaries::bin;
use crate::{ControlPlane, E2eError};

/// What a pod of upstream's DaemonSet finds in its container: a ServiceAccount token, the
/// cluster CA and the API server's address.
pub struct InCluster<'a> {
    pub token: &'a str,
    pub cp: &'a ControlPlane,
}

/// Shell run inside the private mount namespace: `$1` is the directory holding `token`
/// and `ca.crt`; the rest is the command.
const IN_POD: &str = "set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
mount --bind \"$1\" /run/secrets/kubernetes.io/serviceaccount
shift
exec \"$@\"";

/// Binary `name` of an older Multus release built by `e2e/testenv` (`multus-<release>/`).
pub fn release_bin(release: &str, name: &str) -> Result<PathBuf, E2eError> {
    bin(&format!("multus-{release}/{name}"))
}

/// Which thin entrypoint to run and how its DaemonSet configures it.
pub struct Entrypoint<'a> {
    /// `None`: the release `e2e/testenv` builds as its main Multus (v4.3.0); otherwise an
    /// older release such as `v4.0.2`.
    pub release: Option<&'a str>,
    /// `--multus-conf-file`: `auto`, or the file the DaemonSet mounts from its ConfigMap.
    pub conf_file: &'a str,
    /// Log file name in the work directory.
    pub log: &'a str,
}

impl Entrypoint<'_> {
    /// The DaemonSet of the release `e2e/testenv` builds, in auto mode.
    pub const LATEST_AUTO: Entrypoint<'static> = Entrypoint {
        release: None,
        conf_file: "auto",
        log: "thin_entrypoint.log",
    };
}

/// Starts upstream's `thin_entrypoint` (the Multus release built by `e2e/testenv`) with
/// its thin DaemonSet's arguments (`--multus-conf-file=auto`, auto-config and CNI config
/// directory = the host's `/etc/cni/net.d`) on `host_root`. It writes the kubeconfig and
/// `00-multus.conf(list)`, then sleeps until a signal; files are left on exit, as the
/// DaemonSet leaves them. `work` holds the pod files for the run.
pub fn thin_entrypoint(
    host_root: &Path,
    pod: &InCluster<'_>,
    work: &Path,
) -> Result<Child, E2eError> {
    thin_entrypoint_of(&Entrypoint::LATEST_AUTO, host_root, pod, work)
}

/// Like [`thin_entrypoint`] for any release and `--multus-conf-file`. The entrypoint
/// copies the release's own `multus` binary into the host's `opt/cni/bin`.
pub fn thin_entrypoint_of(
    which: &Entrypoint<'_>,
    host_root: &Path,
    pod: &InCluster<'_>,
    work: &Path,
) -> Result<Child, E2eError> {
    thin_entrypoint_with(which, &[], host_root, pod, work)
}

/// Like [`thin_entrypoint_of`] with `extra` flags after the DaemonSet's (for example
/// `--cleanup-config-on-exit=true`, which makes it re-read the primary every second).
pub fn thin_entrypoint_with(
    which: &Entrypoint<'_>,
    extra: &[&str],
    host_root: &Path,
    pod: &InCluster<'_>,
    work: &Path,
) -> Result<Child, E2eError> {
    let io = |what: &'static str| move |e: std::io::Error| E2eError::Io(format!("{what}: {e}"));
    let sa = work.join("serviceaccount");
    std::fs::create_dir_all(&sa).map_err(io("pod files"))?;
    std::fs::write(sa.join("token"), pod.token).map_err(io("pod token"))?;
    std::fs::write(sa.join("ca.crt"), &pod.cp.pki.ca_pem).map_err(io("pod CA"))?;
    let host = |p: &str| host_root.join(p).display().to_string();
    for dir in ["etc/cni/net.d", "etc/cni/multus/net.d", "opt/cni/bin"] {
        std::fs::create_dir_all(host_root.join(dir)).map_err(io("host directory"))?;
    }
    let (address, port) = pod
        .cp
        .server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .ok_or_else(|| E2eError::Io(format!("no port in {}", pod.cp.server)))?;
    let log = std::fs::File::create(work.join(which.log)).map_err(io("log"))?;
    let (entrypoint, multus) = match which.release {
        None => (bin("thin_entrypoint")?, bin("multus")?),
        Some(r) => (
            release_bin(r, "thin_entrypoint")?,
            release_bin(r, "multus")?,
        ),
    };
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            IN_POD,
            "sh",
        ])
        .arg(&sa)
        .arg(entrypoint)
        .arg(format!("--multus-conf-file={}", which.conf_file))
        .arg(format!("--multus-autoconfig-dir={}", host("etc/cni/net.d")))
        .arg(format!("--cni-conf-dir={}", host("etc/cni/net.d")))
        // The image's defaults, /host/opt/cni/bin and /usr/src/multus-cni/bin/multus.
        .arg(format!("--cni-bin-dir={}", host("opt/cni/bin")))
        .arg(format!("--multus-bin-file={}", multus.display()))
        // The default, the host's /etc/cni/net.d/multus.d/multus.kubeconfig, on this root.
        .arg(format!(
            "--multus-kubeconfig-file-host={}",
            host("etc/cni/net.d/multus.d/multus.kubeconfig")
        ));
    // v4.0.x has no such flag (and exits on unknown flags).
    if which.release.is_none() {
        command.arg(format!(
            "--multus-cni-conf-dir={}",
            host("etc/cni/multus/net.d")
        ));
    }
    command
        .args(extra)
        .env("KUBERNETES_SERVICE_HOST", address)
        .env("KUBERNETES_SERVICE_PORT", port)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("log"))?)
        .stderr(log)
        .kill_on_drop(true);
    command
        .spawn()
        .map_err(|e| E2eError::Io(format!("start thin_entrypoint: {e}")))
}

/// Runs [`thin_entrypoint`] until it has written its Multus config, then stops it the way
/// deleting its DaemonSet does (SIGTERM): the files stay. Returns the host paths it wrote.
pub async fn leave_thin_node(
    host_root: &Path,
    pod: &InCluster<'_>,
    work: &Path,
    timeout: Duration,
) -> Result<Vec<String>, E2eError> {
    let mut child = thin_entrypoint(host_root, pod, work)?;
    let conf = host_root.join("etc/cni/net.d");
    let written = |name: &str| conf.join(name).metadata().is_ok_and(|m| m.len() > 0);
    let deadline = tokio::time::Instant::now() + timeout;
    while !(written("00-multus.conf") || written("00-multus.conflist")) {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(work.join("thin_entrypoint.log")).unwrap_or_default();
            return Err(E2eError::Exited {
                component: format!("thin_entrypoint ({status})"),
                log,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            let log = std::fs::read_to_string(work.join("thin_entrypoint.log")).unwrap_or_default();
            return Err(E2eError::NotReady {
                component: "thin_entrypoint".into(),
                timeout,
                log,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(timeout, child.wait()).await;
    let mut paths: Vec<String> = [
        "00-multus.conf",
        "00-multus.conflist",
        "multus.d/multus.kubeconfig",
    ]
    .iter()
    .filter(|n| conf.join(n).exists())
    .map(|n| format!("/etc/cni/net.d/{n}"))
    .collect();
    paths.sort();
    Ok(paths)
}

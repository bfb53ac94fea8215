//! `multus-daemon` run as a thick DaemonSet's container runs it: as root, in a private mount
//! namespace that holds the pod's ServiceAccount token and CA at the in-cluster path (a tmpfs
//! on `/run`, so nothing of the machine's is touched), with `KUBERNETES_SERVICE_HOST`/`PORT`
//! and `MULTUS_NODE_NAME`. The host's `/run/netns` stays visible (new pod namespaces
//! included), as the DaemonSet's `HostToContainer` mount of it does. Directories a container
//! would not see can be hidden under empty tmpfs mounts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

use crate::error::io;
use crate::{ControlPlane, E2eError};

/// Shell run in the private mount namespace. `$1`: a work directory holding
/// `serviceaccount/{token,ca.crt}`; `E2E_HIDE`: colon-separated directories to cover with an
/// empty tmpfs when they exist; the rest is the command. `/run/netns` is carried over the
/// tmpfs by a recursive bind, which stays a slave of the host's mount, so namespaces added
/// later still appear.
const IN_POD: &str = "set -e
work=$1; shift
mkdir -p \"$work/netns\"
mount --rbind /run/netns \"$work/netns\"
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/secrets/kubernetes.io/serviceaccount
mount --rbind \"$work/netns\" /run/netns
umount -l \"$work/netns\"
mount --bind \"$work/serviceaccount\" /run/secrets/kubernetes.io/serviceaccount
IFS=:
for d in $E2E_HIDE; do
  if [ -d \"$d\" ]; then mount -t tmpfs tmpfs \"$d\"; fi
done
unset IFS
exec \"$@\"";

/// How to start one daemon.
pub struct Launch<'a> {
    /// The `multus-daemon` binary (a release from `e2e/testenv`).
    pub binary: PathBuf,
    /// Its `-config` file.
    pub config: &'a Path,
    /// The socket directory the config names (`socketDir`), to wait for the socket in.
    pub socket_dir: PathBuf,
    /// The pod's ServiceAccount token.
    pub token: &'a str,
    pub node: &'a str,
    /// Holds the pod files and the log.
    pub work: &'a Path,
    /// Host directories the container does not mount (covered by empty tmpfs mounts).
    pub hide: Vec<String>,
}

/// A running `multus-daemon`; killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
}

/// The netns directory must be a mount point for new namespaces to reach the daemon's mount
/// namespace; `ip netns add` makes it one (and it stays one).
fn ensure_netns_mount() -> Result<(), E2eError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(io("mountinfo"))?;
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/run/netns"))
    {
        return Ok(());
    }
    let name = crate::unique_name("e2e-netns-mount");
    for args in [["netns", "add", &name], ["netns", "del", &name]] {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(io("ip netns"))?;
        if !out.status.success() {
            return Err(E2eError::Io(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(())
}

impl Daemon {
    /// Starts the daemon in its own mount namespace; see the module docs.
    pub fn start(cp: &ControlPlane, launch: &Launch<'_>) -> Result<Daemon, E2eError> {
        ensure_netns_mount()?;
        let sa = launch.work.join("serviceaccount");
        std::fs::create_dir_all(&sa).map_err(io("pod files"))?;
        std::fs::write(sa.join("token"), launch.token).map_err(io("pod token"))?;
        std::fs::write(sa.join("ca.crt"), &cp.pki.ca_pem).map_err(io("pod CA"))?;
        std::fs::create_dir_all(&launch.socket_dir).map_err(io("socket directory"))?;
        let (address, port) = cp
            .server
            .trim_start_matches("https://")
            .rsplit_once(':')
            .ok_or_else(|| E2eError::Io(format!("no port in {}", cp.server)))?;
        let log = launch.work.join("multus-daemon.log");
        let file = std::fs::File::create(&log).map_err(io("daemon log"))?;
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "slave", "--"])
            .args(["/bin/sh", "-c", IN_POD, "sh"])
            .arg(launch.work)
            .arg(&launch.binary)
            .arg("-config")
            .arg(launch.config)
            .env("E2E_HIDE", launch.hide.join(":"))
            .env("KUBERNETES_SERVICE_HOST", address)
            .env("KUBERNETES_SERVICE_PORT", port)
            .env("MULTUS_NODE_NAME", launch.node)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(io("daemon log"))?)
            .stderr(file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| E2eError::Io(format!("start multus-daemon: {e}")))?;
        Ok(Daemon {
            child,
            log,
            socket: launch.socket_dir.join("multus.sock"),
        })
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the daemon's socket accepts connections; fails when the daemon exits
    /// first or `timeout` passes.
    pub async fn wait_serving(&mut self, timeout: Duration) -> Result<(), E2eError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(E2eError::Exited {
                    component: format!("multus-daemon ({status})"),
                    log: self.log(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(E2eError::NotReady {
                    component: "multus-daemon".into(),
                    timeout,
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the daemon exits by itself; `None` when it still runs after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// Stops the daemon with SIGTERM, as deleting its pod does, and waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

//! Node agents as real processes, one per simulated node, each with its own host root.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

use crate::binaries_local::{workspace_bin, workspace_release_bin};
use crate::control_plane::free_port_on;
use crate::error::io;
use crate::process::log_tail;
use crate::{E2eError, http};

/// Host path of the agents' state file in tests (the default, under each host root).
pub const STATE_FILE: &str = "/var/lib/multus-node-agent/owned-files.json";

/// How to launch an agent; the default is the debug build with the agent's default flags,
/// its log in the host root.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// `--state-file` (a host path); the agent's default when absent.
    pub state_file: Option<String>,
    /// Where `agent.log` goes; the host root when absent.
    pub log_dir: Option<PathBuf>,
    /// The agent as it ships, built with the `agent` profile (benchmarks).
    pub release: bool,
    /// One `--allowed-dir` each; the agent's defaults when empty.
    pub allowed_dirs: Vec<String>,
    /// `--take-over-upstream` (the chart's `agent.takeOverUpstream`).
    pub take_over_upstream: bool,
}

/// A running `multus-node-agent run`.
pub struct RunningAgent {
    pub node: String,
    pub host_root: PathBuf,
    log_dir: PathBuf,
    pub metrics_addr: String,
    child: Child,
}

impl RunningAgent {
    /// Starts the agent for `node` with bundles from `namespace`, host files under
    /// `host_root`, logs appended to `<host_root>/agent.log`, authenticating with
    /// `kubeconfig` (in tests: the agent identity from [`crate::identities::Identities`]).
    pub async fn start_as(
        kubeconfig: &Path,
        namespace: &str,
        node: &str,
        host_root: &Path,
    ) -> Result<RunningAgent, E2eError> {
        Self::launch(kubeconfig, namespace, node, host_root, &Launch::default()).await
    }

    /// Like [`Self::start_as`] with the agent as it ships (the `agent` profile; for benchmarks).
    pub async fn start_release_as(
        kubeconfig: &Path,
        namespace: &str,
        node: &str,
        host_root: &Path,
    ) -> Result<RunningAgent, E2eError> {
        let options = Launch {
            release: true,
            ..Launch::default()
        };
        Self::launch(kubeconfig, namespace, node, host_root, &options).await
    }

    /// Starts `multus-node-agent run` for `node` with bundles from `namespace` and host
    /// files under `host_root`, authenticating with `kubeconfig`.
    pub async fn launch(
        kubeconfig: &Path,
        namespace: &str,
        node: &str,
        host_root: &Path,
        options: &Launch,
    ) -> Result<RunningAgent, E2eError> {
        let release = options.release;
        let binary = tokio::task::spawn_blocking(move || {
            if release {
                workspace_release_bin("multus-node-agent")
            } else {
                workspace_bin("multus-node-agent")
            }
        })
        .await
        .map_err(|e| E2eError::Io(e.to_string()))??;
        let metrics_addr = format!("127.0.0.1:{}", free_port_on("127.0.0.1")?);
        let log_dir = options.log_dir.as_deref().unwrap_or(host_root);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join("agent.log"))
            .map_err(io("open agent.log"))?;
        let mut command = Command::new(binary);
        command
            .args(["run", "--node-name", node, "--namespace", namespace])
            .arg("--host-root")
            .arg(host_root)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-bind-address", &metrics_addr]);
        if let Some(state_file) = &options.state_file {
            command.args(["--state-file", state_file]);
        }
        for dir in &options.allowed_dirs {
            command.args(["--allowed-dir", dir]);
        }
        if options.take_over_upstream {
            command.arg("--take-over-upstream");
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("start agent"))?;
        Ok(RunningAgent {
            node: node.to_string(),
            log_dir: log_dir.to_path_buf(),
            host_root: host_root.to_path_buf(),
            metrics_addr,
            child,
        })
    }

    /// `GET /readyz` answers 200 (the current bundle is applied).
    pub async fn is_ready(&self) -> bool {
        matches!(http::get(&self.metrics_addr, "/readyz").await, Ok((200, _)))
    }

    /// Waits until `/readyz` answers 200; panics after `timeout` with the agent's log.
    pub async fn wait_ready(&self, what: &str, timeout: Duration) {
        crate::operator::eventually(what, timeout, || async {
            if self.is_ready().await {
                Ok(())
            } else {
                Err(self.log_tail())
            }
        })
        .await
    }

    pub async fn metrics(&self) -> String {
        http::get(&self.metrics_addr, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then waits (up to 20 s) for the exit status.
    pub async fn terminate(mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// SIGKILL, and reaps the process.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The last lines of this agent's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_dir.join("agent.log"), 30)
    }
}

/// Every regular file under `root` (relative path -> bytes), except the agent log.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let rel = path
                        .strip_prefix(root)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    if rel != "agent.log" {
                        out.insert(rel, std::fs::read(&path).unwrap_or_default());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

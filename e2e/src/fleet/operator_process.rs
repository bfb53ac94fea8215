//! The operator as a release-built process (`multus-operator run`) with the chart's
//! operator identity: its admin address, its CPU time and memory from /proc, its log in a
//! file (a pipe nobody reads would block it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binaries_local::workspace_release_bin;
use crate::process::{cpu_seconds, status_kib};
use crate::{E2eError, http};

/// A running operator process; killed when dropped.
pub struct OperatorProcess {
    child: tokio::process::Child,
    pub pid: u32,
    /// `127.0.0.1:<port>` of /metrics, /healthz and /readyz.
    pub addr: String,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts the operator with bundles in `namespace`, minting host kubeconfig tokens for
    /// `multus_account` (`<namespace>/<name>`), authenticating with `kubeconfig`; its log
    /// (warnings only unless `RUST_LOG` says otherwise) goes to `log`.
    pub async fn start(
        kubeconfig: &Path,
        namespace: &str,
        multus_account: &str,
        log: &Path,
    ) -> Result<OperatorProcess, E2eError> {
        let io = |what: &'static str| move |e: std::io::Error| E2eError::Io(format!("{what}: {e}"));
        let binary = tokio::task::spawn_blocking(|| workspace_release_bin("multus-operator"))
            .await
            .map_err(|e| E2eError::Io(e.to_string()))??;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io("free port"))?;
        let addr = format!("127.0.0.1:{port}");
        let log_file = std::fs::File::create(log).map_err(io("operator log"))?;
        let child = tokio::process::Command::new(binary)
            .args(["run", "--namespace", namespace])
            .args(["--metrics-bind-address", &addr])
            .args(["--multus-service-account", multus_account])
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("start multus-operator"))?;
        let pid = child
            .id()
            .ok_or_else(|| E2eError::Io("multus-operator exited at once".into()))?;
        Ok(OperatorProcess {
            child,
            pid,
            addr,
            log: log.to_path_buf(),
        })
    }

    /// Waits until /readyz answers 200 (caches synced).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), E2eError> {
        let deadline = Instant::now() + timeout;
        while !matches!(http::get(&self.addr, "/readyz").await, Ok((200, _))) {
            if Instant::now() >= deadline {
                return Err(E2eError::Io(format!(
                    "the operator was not ready within {timeout:?}:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The sum of metric `name` on /metrics; 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = http::get(&self.addr, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        http::metric(&text, name).unwrap_or(0.0)
    }

    /// CPU seconds (user + system) so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:")
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills it and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

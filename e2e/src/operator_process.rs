//! The operator as a release-built process (`multus-operator run`), as the benches run it:
//! its admin endpoints on a free loopback port, its reconcile and write counters from
//! /metrics, and its CPU time and memory from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binaries_local::workspace_release_bin;
use crate::control_plane::free_port_on;
use crate::error::io;
use crate::process::{cpu_seconds, log_tail, status_kib};
use crate::{E2eError, http};

/// How often the operator's endpoints are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// How to run the operator.
pub struct Options<'a> {
    /// Its identity.
    pub kubeconfig: &'a Path,
    /// Where its bundles go.
    pub namespace: &'a str,
    /// `<namespace>/<name>` of the account whose tokens it mints for host kubeconfigs;
    /// the binary's default when `None`.
    pub multus_account: Option<&'a str>,
    /// Its log (a file: a pipe nobody reads would block it); this process's stderr when
    /// `None`.
    pub log: Option<&'a Path>,
}

/// A running operator process; killed when dropped.
pub struct OperatorProcess {
    child: tokio::process::Child,
    pub pid: u32,
    /// `127.0.0.1:<port>` of /metrics, /healthz and /readyz.
    pub addr: String,
    /// Just before it was spawned.
    pub started: Instant,
    log: Option<PathBuf>,
}

/// What the operator's metrics say about its reconciles and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub started: f64,
    pub succeeded: f64,
    pub failed: f64,
    pub writes: f64,
    /// Seconds spent in reconciles, summed.
    pub busy: f64,
}

impl Progress {
    /// No reconcile running (every one started has finished, well or not).
    pub fn idle(&self) -> bool {
        self.started == self.succeeded + self.failed
    }
}

impl OperatorProcess {
    /// Starts the operator; it logs warnings only unless `RUST_LOG` says otherwise.
    pub async fn start(options: &Options<'_>) -> Result<OperatorProcess, E2eError> {
        let binary = tokio::task::spawn_blocking(|| workspace_release_bin("multus-operator"))
            .await
            .map_err(|e| E2eError::Io(e.to_string()))??;
        let port = free_port_on("127.0.0.1")?;
        let addr = format!("127.0.0.1:{port}");
        let stderr = match options.log {
            Some(log) => Stdio::from(std::fs::File::create(log).map_err(io("operator log"))?),
            None => Stdio::inherit(),
        };
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["run", "--namespace", options.namespace])
            .args(["--metrics-bind-address", &addr]);
        if let Some(account) = options.multus_account {
            command.args(["--multus-service-account", account]);
        }
        let started = Instant::now();
        let child = command
            .env("KUBECONFIG", options.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
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
            started,
            log: options.log.map(Path::to_path_buf),
        })
    }

    /// Starts the operator and waits until it is ready.
    pub async fn start_ready(
        options: &Options<'_>,
        timeout: Duration,
    ) -> Result<OperatorProcess, E2eError> {
        let operator = OperatorProcess::start(options).await?;
        operator.wait_ready(timeout).await?;
        Ok(operator)
    }

    /// Whether `/readyz` answers 200 (caches synced).
    pub async fn ready(&self) -> bool {
        matches!(http::get(&self.addr, "/readyz").await, Ok((200, _)))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), E2eError> {
        let deadline = Instant::now() + timeout;
        while !self.ready().await {
            if Instant::now() >= deadline {
                return Err(E2eError::Io(format!(
                    "the operator was not ready within {timeout:?}:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(POLL).await;
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

    /// Its reconcile and write counters; `None` while `/metrics` does not answer.
    pub async fn progress(&self) -> Option<Progress> {
        let (code, text) = http::get(&self.addr, "/metrics").await.ok()?;
        (code == 200).then(|| {
            let m = |name| http::metric(&text, name).unwrap_or(0.0);
            Progress {
                started: m("multus_operator_reconciles_total"),
                succeeded: m("multus_operator_reconciles_succeeded_total"),
                failed: m("multus_operator_reconcile_failures_total"),
                writes: m("multus_operator_api_writes_total"),
                busy: m("multus_operator_reconcile_duration_seconds_sum"),
            }
        })
    }

    /// Waits until no reconcile has started for `quiet` and none is running; returns the
    /// counters then and when the last reconcile finished (as seen by polling).
    pub async fn settle(
        &self,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<(Progress, Instant), E2eError> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(Progress, Instant)> = None;
        loop {
            if let Some(now) = self.progress().await {
                let changed_at = match last {
                    Some((p, at)) if p == now => at,
                    _ => Instant::now(),
                };
                last = Some((now, changed_at));
                if now.idle() && changed_at.elapsed() >= quiet {
                    return Ok((now, changed_at));
                }
            }
            if Instant::now() >= deadline {
                return Err(E2eError::Io(format!(
                    "timed out waiting for the operator to settle ({timeout:?})"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// CPU seconds (user + system) so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM:") as f64 / 1024.0
    }

    /// Resident memory now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmRSS:") as f64 / 1024.0
    }

    /// The last lines of its log; empty when it logs to this process's stderr.
    pub fn log_tail(&self) -> String {
        self.log
            .as_deref()
            .map_or_else(String::new, |log| log_tail(log, 20))
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

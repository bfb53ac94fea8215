//! An operator replica as a real process (`multus-operator run --leader-elect`), for the
//! tests of leader election: its admin address and its log file (not a pipe: a pipe nobody
//! reads fills up and blocks the process).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::binaries_local::workspace_bin;
use crate::control_plane::free_port_on;
use crate::error::io;
use crate::operator::{TEST_LABEL, eventually};
use crate::{E2eError, http};

pub struct Replica {
    pub child: tokio::process::Child,
    /// `127.0.0.1:<port>` of /metrics, /healthz and /readyz.
    pub addr: String,
    pub logs: tempfile::NamedTempFile,
}

impl Replica {
    /// Starts a replica in `ns` as `identity`, authenticating with `kubeconfig` (the
    /// chart's operator account), reconciling only the test's MultusConfigs; `extra`
    /// flags follow the common ones.
    pub async fn start(
        kubeconfig: &Path,
        ns: &str,
        identity: &str,
        extra: &[&str],
    ) -> Result<Replica, E2eError> {
        let port = free_port_on("127.0.0.1")?;
        let addr = format!("127.0.0.1:{port}");
        let binary = tokio::task::spawn_blocking(|| workspace_bin("multus-operator"))
            .await
            .map_err(|e| E2eError::Io(e.to_string()))??;
        let logs = tempfile::NamedTempFile::new().map_err(io("log file"))?;
        let selector = format!("{TEST_LABEL}={ns}");
        let child = tokio::process::Command::new(binary)
            .args([
                "run",
                "--namespace",
                ns,
                "--metrics-bind-address",
                &addr,
                "--leader-elect",
                "--identity",
                identity,
                "--multusconfig-selector",
                &selector,
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::from(logs.reopen().map_err(io("log file"))?))
            .kill_on_drop(true)
            .spawn()
            .map_err(io("start multus-operator"))?;
        Ok(Replica { child, addr, logs })
    }

    /// Waits until /readyz answers `code` with a body starting with `expected`; returns it.
    pub async fn wait_readyz(&self, code: u16, expected: &str, timeout: Duration) -> String {
        eventually(
            &format!("/readyz answers {code} {expected}"),
            timeout,
            || async {
                match http::get(&self.addr, "/readyz").await {
                    Ok((c, body)) if c == code && body.starts_with(expected) => Ok(body),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.logs.path()).unwrap_or_default()
    }
}

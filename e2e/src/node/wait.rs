//! Waiting for a real node's parts to come up (its namespace holder, containerd, the
//! kubelet's Ready condition and Lease), failing early when one of its processes exits.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{FAST_POLL, READY_TIMEOUT, RealNode};
use crate::binaries::bin;
use crate::error::E2eError;
use crate::process::Supervised;

impl RealNode {
    pub(super) fn wait_for_holder(&mut self) -> Result<u32, E2eError> {
        let file = self.dir.join("holder.pid");
        let mut pid = None;
        self.wait_for("node-namespace", Duration::from_secs(30), FAST_POLL, || {
            pid = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            pid.is_some()
        })?;
        pid.ok_or_else(|| E2eError::Io("holder pid missing".into()))
    }

    pub(super) fn wait_for_containerd(&mut self) -> Result<(), E2eError> {
        let socket = self.containerd_socket.clone();
        self.wait_for("containerd", Duration::from_secs(60), FAST_POLL, || {
            Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
    }

    /// Waits until the Node's Ready condition is True.
    pub(super) fn wait_ready(&mut self) -> Result<(), E2eError> {
        let kubectl = bin("kubectl")?;
        let kubeconfig = self.admin_kubeconfig.clone();
        let name = self.name.clone();
        // Every poll runs kubectl, which costs CPU the node's start needs.
        self.wait_for("kubelet", READY_TIMEOUT, Duration::from_millis(500), || {
            Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args([
                    "get",
                    "node",
                    &name,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .output()
                .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout) == "True")
                .unwrap_or(false)
        })
    }

    /// Polls `check` every `interval` until it holds, failing early when one of the node's
    /// processes exits.
    pub(super) fn wait_for(
        &mut self,
        component: &str,
        timeout: Duration,
        interval: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Result<(), E2eError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(p) = self
                .processes
                .iter_mut()
                .find_map(|p| (!p.running()).then_some(p))
            {
                return Err(E2eError::Exited {
                    component: format!("{} of node {}", p.name, self.name),
                    log: p.log_tail(),
                });
            }
            if check() {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
        let log = self
            .processes
            .iter()
            .find(|p| p.name == component)
            .map(Supervised::log_tail)
            .unwrap_or_default();
        Err(E2eError::NotReady {
            component: format!("{component} of node {}", self.name),
            timeout,
            log,
        })
    }
}

/// `spec.renewTime` of the node's Lease in kube-node-lease; empty when unknown.
pub(super) fn lease_renew_time(kubeconfig: &Path, node: &str) -> String {
    let Ok(kubectl) = bin("kubectl") else {
        return String::new();
    };
    Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "lease", "-n", "kube-node-lease", node])
        .args(["-o", "jsonpath={.spec.renewTime}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

//! Taking parts of a running control plane down and up again, for the fault tests: the
//! API server stopped and started on the same port, etcd restarted on the same data.

use std::process::Command;

use super::{ControlPlane, READY_TIMEOUT};
use crate::binaries::bin;
use crate::error::E2eError;
use crate::process::{Supervised, wait_until};

impl ControlPlane {
    /// Stops kube-apiserver (etcd and kube-controller-manager keep running), to test
    /// behaviour while the API server is unreachable.
    pub fn stop_apiserver(&self) {
        let mut processes = self.lock();
        if let Some(i) = processes.iter().position(|p| p.name == "kube-apiserver") {
            let mut p = processes.remove(i);
            p.stop();
        }
    }

    /// Starts kube-apiserver again on the same port and waits until it is ready.
    pub fn start_apiserver(&self) -> Result<(), E2eError> {
        let p = Supervised::start(
            "kube-apiserver",
            &bin("kube-apiserver")?,
            &self.apiserver_args,
            &self.dir.join("kube-apiserver.log"),
        )?;
        self.lock().push(p);
        self.wait_ready("kube-apiserver", "/readyz")
    }

    /// Stops etcd and starts it again on the same ports and data, as a restart of the
    /// cluster's store does; returns once it answers its health endpoint.
    pub fn restart_etcd(&self) -> Result<(), E2eError> {
        {
            let mut processes = self.lock();
            if let Some(i) = processes.iter().position(|p| p.name == "etcd") {
                let mut p = processes.remove(i);
                p.stop();
            }
        }
        let p = Supervised::start(
            "etcd",
            &bin("etcd")?,
            &self.etcd_args,
            &self.dir.join("etcd.log"),
        )?;
        self.lock().push(p);
        let url = self
            .etcd_args
            .iter()
            .find_map(|a| a.strip_prefix("--listen-client-urls="))
            .unwrap_or_default()
            .to_string();
        let etcdctl = bin("etcdctl")?;
        let healthy = wait_until(READY_TIMEOUT, || {
            std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok()
                && Command::new(&etcdctl)
                    .args(["--endpoints", &url, "endpoint", "health"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
        if healthy {
            Ok(())
        } else {
            Err(E2eError::NotReady {
                component: "etcd".into(),
                timeout: READY_TIMEOUT,
                log: std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default(),
            })
        }
    }
}

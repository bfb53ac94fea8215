//! Taking parts of a running control plane down and up again, for the fault tests: the
//! API server stopped and started on the same port, etcd restarted on the same data.

use std::process::Command;

use super::{ControlPlane, READY_TIMEOUT, supervise};
use crate::binaries::bin;
use crate::error::E2eError;
use crate::process::wait_until;

impl ControlPlane {
    /// Stops kube-apiserver (etcd and kube-controller-manager keep running), to test
    /// behaviour while the API server is unreachable.
    pub fn stop_apiserver(&self) {
        self.stop_process("kube-apiserver");
    }

    /// Starts kube-apiserver again on the same port and waits until it is ready.
    pub fn start_apiserver(&self) -> Result<(), E2eError> {
        self.start_again("kube-apiserver", &self.apiserver_args)?;
        self.wait_ready("kube-apiserver", "/readyz")
    }

    /// Stops etcd and starts it again on the same ports and data, as a restart of the
    /// cluster's store does; returns once it answers its health endpoint.
    pub fn restart_etcd(&self) -> Result<(), E2eError> {
        self.stop_process("etcd");
        self.start_again("etcd", &self.etcd_args)?;
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

    /// Stops the supervised process `name`, if it runs.
    fn stop_process(&self, name: &str) {
        let mut processes = self.lock();
        if let Some(i) = processes.iter().position(|p| p.name == name) {
            processes.remove(i).stop();
        }
    }

    /// Starts `name` again with `args`, as it was started first.
    fn start_again(&self, name: &str, args: &[String]) -> Result<(), E2eError> {
        let p = supervise(&self.dir, name, args)?;
        self.lock().push(p);
        Ok(())
    }
}

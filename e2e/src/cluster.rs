//! What a control plane needs to host real nodes (`crate::node`): an API address that pods
//! reach, a client certificate for the API server's calls to kubelets (exec, logs),
//! kube-scheduler, and the controllers that turn workloads into pods.
//!
//! Pods reach the API server without kube-proxy: [`API_ADDRESS`] is a /32 on `lo`, so a
//! pod's packets, routed to its node's bridge (the pod's gateway), are delivered locally; no
//! address translation is involved and nothing leaves the machine. The `kubernetes`
//! Endpoints point there too (`--advertise-address`). The `kubernetes` Service's ClusterIP
//! does not route (no kube-proxy), so an in-cluster client in a pod needs
//! `KUBERNETES_SERVICE_HOST` = [`API_ADDRESS`] and `KUBERNETES_SERVICE_PORT` = the port of
//! [`crate::ControlPlane::server`] (see [`crate::ControlPlane::api_host_port`]).

use std::path::Path;
use std::process::Command;

use crate::binaries::bin;
use crate::control_plane::free_port_on;
use crate::pki::{self, Pki};
use crate::process::Supervised;
use crate::{ControlPlane, E2eError};

/// The API server's address for control planes with real nodes: from 198.18.0.0/15
/// (reserved for benchmarks, RFC 2544), on `lo`. Every such control plane on the machine
/// shares it, each on its own port. It stays on `lo` after the tests (other test
/// processes may be using it); adding it again is a no-op.
pub const API_ADDRESS: &str = "198.19.0.1";

/// User name of the API server's client certificate for kubelets.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// kube-controller-manager's controllers for a cluster that runs workloads.
pub const CONTROLLERS: &str = "namespace-controller,garbage-collector-controller,\
serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,\
daemonset-controller,deployment-controller,replicaset-controller,statefulset-controller,\
job-controller,cronjob-controller,ttl-after-finished-controller,disruption-controller,\
endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,\
clusterrole-aggregation-controller,pod-garbage-collector-controller,ttl-controller,\
node-lifecycle-controller,taint-eviction-controller";

/// Adds [`API_ADDRESS`] to `lo` unless it is there.
pub fn ensure_api_address() -> Result<(), E2eError> {
    let shown = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .map_err(|e| E2eError::Io(format!("run ip addr show: {e}")))?;
    let listed = String::from_utf8_lossy(&shown.stdout);
    if listed.contains(&format!(" {API_ADDRESS}/32 ")) {
        return Ok(());
    }
    let added = Command::new("ip")
        .args(["addr", "add", &format!("{API_ADDRESS}/32"), "dev", "lo"])
        .output()
        .map_err(|e| E2eError::Io(format!("run ip addr add: {e}")))?;
    // Another test process may have added it in the meantime.
    let stderr = String::from_utf8_lossy(&added.stderr);
    if added.status.success() || stderr.contains("File exists") {
        Ok(())
    } else {
        Err(E2eError::Io(format!(
            "cannot add {API_ADDRESS}/32 to lo: {}",
            stderr.trim()
        )))
    }
}

/// kube-apiserver flags for calling kubelets: its client certificate (written to `dir`) and
/// the node address to use (kubelets register their InternalIP; node names do not resolve).
pub fn apiserver_args(dir: &Path, pki: &Pki) -> Result<Vec<String>, E2eError> {
    let (cert, key) = pki::client_cert(pki, KUBELET_CLIENT_USER, None)?;
    let cert_path = dir.join("kubelet-client.crt");
    let key_path = dir.join("kubelet-client.key");
    std::fs::write(&cert_path, cert)
        .and_then(|()| std::fs::write(&key_path, key))
        .map_err(|e| E2eError::Pki(format!("kubelet client certificate: {e}")))?;
    Ok(vec![
        format!("--kubelet-client-certificate={}", cert_path.display()),
        format!("--kubelet-client-key={}", key_path.display()),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ])
}

/// Grants the API server's kubelet client the kubelet API (the built-in
/// `system:kubelet-api-admin` role), as kubeadm does, instead of making it an admin.
pub fn bind_kubelet_client(cp: &ControlPlane) -> Result<(), E2eError> {
    let out = cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "multus-e2e:kube-apiserver-kubelet-client",
        "--clusterrole=system:kubelet-api-admin",
        &format!("--user={KUBELET_CLIENT_USER}"),
    ])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(E2eError::Kube(format!(
            "bind {KUBELET_CLIENT_USER}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Starts kube-scheduler with the admin kubeconfig: it is part of the cluster under test,
/// not of the product, so its identity does not matter to the tests.
pub fn start_scheduler(dir: &Path, kubeconfig: &Path) -> Result<Supervised, E2eError> {
    let kubeconfig = kubeconfig.display();
    let args = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port_on("127.0.0.1")?),
        "--leader-elect=false".into(),
    ];
    Supervised::start(
        "kube-scheduler",
        &bin("kube-scheduler")?,
        &args,
        &dir.join("kube-scheduler.log"),
    )
}

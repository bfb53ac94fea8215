//! The command lines of the control plane's processes: etcd, kube-apiserver (with the
//! admission plugins, authorization modes and, when asked, the audit log a test reads) and
//! kube-controller-manager.

use std::path::Path;

use super::ControlPlane;
use crate::cluster;
use crate::error::{E2eError, io};
use crate::pki::Pki;

/// etcd on `etcd_url` (loopback) with a 4 GiB quota; its peer port is bound to loopback too.
pub(super) fn etcd(dir: &Path, etcd_url: &str, peer_port: u16) -> Vec<String> {
    vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        "--log-level=warn".into(),
        "--quota-backend-bytes=4294967296".into(),
    ]
}

/// kube-apiserver on `address:port` with RBAC, the Node authorizer, NodeRestriction and
/// ServiceAccount tokens signed by the test PKI; the audit log (`audit.log`, JSON, metadata
/// level) when `audit`; what real nodes need when `real_nodes`.
pub(super) fn apiserver(
    dir: &Path,
    pki: &Pki,
    etcd_url: &str,
    address: &str,
    port: u16,
    audit: bool,
    real_nodes: bool,
) -> Result<Vec<String>, E2eError> {
    let mut args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--bind-address={address}"),
        format!("--advertise-address={address}"),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        format!("--token-auth-file={}", dir.join("tokens.csv").display()),
        "--authorization-mode=Node,RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            pki.sa_key.display()
        ),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
    ];
    if real_nodes {
        args.extend(cluster::apiserver_args(dir, pki)?);
    } else {
        // Nothing routes to the `kubernetes` Service without real nodes.
        args.push("--endpoint-reconciler-type=none".into());
    }
    if audit {
        std::fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )
        .map_err(io("audit policy"))?;
        args.push(format!(
            "--audit-policy-file={}",
            dir.join("audit-policy.yaml").display()
        ));
        args.push(format!(
            "--audit-log-path={}",
            dir.join("audit.log").display()
        ));
        args.push("--audit-log-format=json".into());
    }
    Ok(args)
}

/// kube-controller-manager with the controllers the tests need (all of `cluster`'s for real
/// nodes), authenticated by the admin kubeconfig.
pub(super) fn controller_manager(cp: &ControlPlane, secure_port: u16) -> Vec<String> {
    let controllers = if cp.real_nodes {
        cluster::CONTROLLERS
    } else {
        "namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller"
    };
    vec![
        format!("--kubeconfig={}", cp.kubeconfig.display()),
        format!("--authentication-kubeconfig={}", cp.kubeconfig.display()),
        format!("--authorization-kubeconfig={}", cp.kubeconfig.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={secure_port}"),
        "--leader-elect=false".into(),
        format!("--controllers={controllers}"),
        format!(
            "--service-account-private-key-file={}",
            cp.pki.sa_key.display()
        ),
        format!("--root-ca-file={}", cp.pki.ca_cert.display()),
        format!("--cert-dir={}", cp.dir.join("kcm-certs").display()),
    ]
}

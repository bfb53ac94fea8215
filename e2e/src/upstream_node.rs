//! A simulated node prepared by an upstream Multus release, beside one of ours
//! ([`crate::podnet::AgentNode`]): its host root laid out as a real node's
//! (`etc/cni/net.d`, `etc/cni/multus/net.d`, `opt/cni/bin`), a bridge primary, upstream's
//! entrypoint or daemon run as its DaemonSet runs it, and real CNI calls for pods on it.
//!
//! Upstream's own ServiceAccount gets upstream's ClusterRole (read from its manifests), so a
//! failure shown here is the release's, not a missing permission.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::error::io;
use crate::fixtures::{self, BoundTo};
use crate::pod_node::PodNode;
use crate::podnet::{PodHost, PodRef, cni_file};
use crate::thick::{Daemon, Launch};
use crate::upstream::{Entrypoint, InCluster, release_bin, thin_entrypoint_of};
use crate::{ControlPlane, E2eError};

/// Upstream's ServiceAccount name in the test's namespace.
pub const ACCOUNT: &str = "upstream-multus";

/// The rules of the ClusterRole in upstream's DaemonSet manifests (v4.0.2 to v4.3.0).
const UPSTREAM_RULES: &str = r#"
- apiGroups: ["k8s.cni.cncf.io"]
  resources: ["*"]
  verbs: ["*"]
- apiGroups: [""]
  resources: ["pods", "pods/status"]
  verbs: ["get", "list", "update", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch", "update"]
"#;

/// One upstream-prepared node.
pub type UpstreamNode = PodNode<UpstreamParts>;

/// What only an upstream-prepared node holds; its ClusterRole is deleted when it drops.
pub struct UpstreamParts {
    /// Pod files, logs and the daemon config of the upstream components.
    pub work: tempfile::TempDir,
    /// Lifetime of the tokens its pods hold (kubelet's projected token: 3607 s by
    /// default, 600 s at least).
    pub token_seconds: i64,
    admin_kubeconfig: PathBuf,
    role: String,
}

impl UpstreamNode {
    /// A Node object `<ns>-upstream`, upstream's account and ClusterRole, and a host root
    /// with a bridge primary `podnet` on `subnet` in `etc/cni/net.d/10-bridge.conflist`.
    pub async fn new(cp: &ControlPlane, ns: &str, subnet: &str) -> Result<UpstreamNode, E2eError> {
        let client = cp.client().await?;
        let node = format!("{ns}-upstream");
        fixtures::node(&client, &node, &[], &[]).await?;
        let role = format!("{ns}-upstream-multus");
        let manifest = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {ACCOUNT}, namespace: {ns}}}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
             metadata: {{name: {role}}}\nrules:{UPSTREAM_RULES}\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
             metadata: {{name: {role}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
             subjects: [{{kind: ServiceAccount, name: {ACCOUNT}, namespace: {ns}}}]\n"
        );
        let applied = crate::chart::kubectl_with_input(cp, &["apply", "-f", "-"], &manifest)?;
        if !applied.status.success() {
            return Err(E2eError::Kube(format!(
                "upstream's RBAC: {}",
                String::from_utf8_lossy(&applied.stderr)
            )));
        }
        let mut host = PodHost::new(&crate::unique_name("up"))?;
        for dir in ["etc/cni/net.d", "etc/cni/multus/net.d", "opt/cni/bin"] {
            std::fs::create_dir_all(host.root().join(dir)).map_err(io("host directory"))?;
        }
        // The node's plugins, where its runtime and a chrooted daemon look for them.
        let plugins = crate::binaries::bin_dir()?.join("cni");
        for entry in std::fs::read_dir(&plugins).map_err(io("CNI plugins"))? {
            let entry = entry.map_err(io("CNI plugins"))?;
            std::os::unix::fs::symlink(
                entry.path(),
                host.root().join("opt/cni/bin").join(entry.file_name()),
            )
            .map_err(io("link a CNI plugin"))?;
        }
        let plugin = host.bridge_network(0, subnet, true);
        let primary = json!({ "cniVersion": "0.4.0", "name": "podnet", "plugins": [plugin] });
        std::fs::write(
            host.root().join("etc/cni/net.d/10-bridge.conflist"),
            primary.to_string(),
        )
        .map_err(io("primary config"))?;
        let upstream = UpstreamParts {
            work: tempfile::tempdir().map_err(io("work directory"))?,
            token_seconds: 3607,
            admin_kubeconfig: cp.kubeconfig.clone(),
            role,
        };
        Ok(PodNode::from_parts(
            client,
            ns.to_string(),
            node,
            host,
            upstream,
        ))
    }

    /// `<root>/<relative>`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.host.root().join(relative)
    }

    /// A token of upstream's account bound to this node, as its DaemonSet pod holds one.
    pub async fn token(&self) -> Result<String, E2eError> {
        let node: k8s_openapi::api::core::v1::Node = kube::Api::all(self.client.clone())
            .get(&self.node)
            .await
            .map_err(|e| E2eError::Kube(format!("get node {}: {e}", self.node)))?;
        let uid = node.metadata.uid.unwrap_or_default();
        fixtures::token(
            &self.client,
            &self.ns,
            ACCOUNT,
            BoundTo::Node {
                name: &self.node,
                uid: &uid,
            },
            self.token_seconds,
        )
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| E2eError::Kube(format!("no token issued for {ACCOUNT}")))
    }

    /// Runs a thin entrypoint until its log shows `marker` (what it prints once its files
    /// are written), then stops it with SIGTERM as kubelet stops a container. Returns what
    /// it printed. Fails if it exits first or `timeout` passes.
    pub async fn run_entrypoint(
        &self,
        cp: &ControlPlane,
        which: &Entrypoint<'_>,
        marker: &str,
        timeout: Duration,
    ) -> Result<String, E2eError> {
        let token = self.token().await?;
        let pod = InCluster { token: &token, cp };
        let mut child = thin_entrypoint_of(which, self.host.root(), &pod, self.work.path())?;
        let log = self.work.path().join(which.log);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + timeout;
        while !read().contains(marker) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(E2eError::Exited {
                    component: format!("thin_entrypoint ({status})"),
                    log: read(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(E2eError::NotReady {
                    component: "thin_entrypoint".into(),
                    timeout,
                    log: read(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(timeout, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        Ok(read())
    }

    /// Starts multus-daemon of `release` with the daemon config of that release's thick
    /// manifest, the host seen at this host root instead of `/host` and plugins run in `/`
    /// (its `/hostroot`). The container does not mount the host's `/etc/cni/multus/net.d`,
    /// so that directory is hidden from the daemon. Waits until its socket serves.
    pub async fn start_thick(&self, cp: &ControlPlane, release: &str) -> Result<Daemon, E2eError> {
        let root = self.host.root().display().to_string();
        let socket_dir = self.path("run/multus");
        // The manifest's `daemon-config.json` (v4.1.0 to v4.2.0), paths mapped. Its
        // generated shim config gets no socket dir (the shim's default /run/multus is the
        // host's /run/multus, which the daemon sees as /host/run/multus); here the socket
        // lives under this host root, so the shim is told. Plugins run chrooted into the
        // host root, `/` here, where the node's bin dir is this root's `opt/cni/bin`.
        let config = json!({
            "chrootDir": "/",
            "cniVersion": "0.3.1",
            "logLevel": "verbose",
            "logToStderr": true,
            "cniConfigDir": format!("{root}/etc/cni/net.d"),
            "multusAutoconfigDir": format!("{root}/etc/cni/net.d"),
            "multusConfigFile": "auto",
            "socketDir": socket_dir.display().to_string(),
            "daemonSocketDir": socket_dir.display().to_string(),
            "binDir": format!("{root}/opt/cni/bin"),
        });
        let path = self.work.path().join("daemon-config.json");
        std::fs::write(&path, config.to_string()).map_err(io("daemon config"))?;
        let token = self.token().await?;
        let work = self.work.path().join("daemon");
        std::fs::create_dir_all(&work).map_err(io("daemon directory"))?;
        let launch = Launch {
            binary: release_bin(release, "multus-daemon")?,
            config: &path,
            socket_dir,
            token: &token,
            node: &self.node,
            work: &work,
            hide: vec!["/etc/cni/multus/net.d".into()],
        };
        let mut daemon = Daemon::start(cp, &launch)?;
        // It polls for the primary every second and lists pods and NADs before serving;
        // it writes its config just after its socket is up.
        let timeout = Duration::from_secs(60);
        daemon.wait_serving(timeout).await?;
        let generated = self.path("etc/cni/net.d/00-multus.conf");
        let deadline = tokio::time::Instant::now() + timeout;
        while !generated.metadata().is_ok_and(|m| m.len() > 0) {
            if tokio::time::Instant::now() >= deadline || !daemon.running() {
                return Err(E2eError::NotReady {
                    component: format!("multus-daemon {release} writing 00-multus.conf"),
                    timeout,
                    log: daemon.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(daemon)
    }

    /// Runs `plugin` (a host path, e.g. the `multus` the entrypoint installed) for `pod`
    /// with the config `conf` (relative to the host root).
    pub async fn cni(
        &self,
        plugin: &Path,
        command: &'static str,
        conf: &str,
        pod: &PodRef,
    ) -> Result<Output, E2eError> {
        cni_file(plugin.to_path_buf(), command, self.path(conf), pod).await
    }

    /// The config file `relative` under the host root, parsed.
    pub fn json(&self, relative: &str) -> Result<Value, E2eError> {
        let text = std::fs::read_to_string(self.path(relative)).map_err(io("read config"))?;
        serde_json::from_str(&text).map_err(|e| E2eError::Io(format!("{relative}: {e}")))
    }
}

impl Drop for UpstreamParts {
    fn drop(&mut self) {
        let Ok(kubectl) = crate::binaries::bin("kubectl") else {
            return;
        };
        let _ = std::process::Command::new(kubectl)
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .args(["delete", "clusterrolebinding,clusterrole", &self.role])
            .args(["--wait=false", "--ignore-not-found"])
            .output();
    }
}

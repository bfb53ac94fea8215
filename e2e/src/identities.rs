//! [`Identities`]: the chart's ServiceAccounts, RBAC and admission policies applied for
//! real, with the credentials each component gets in a real install (the operator's and the
//! uninstall hook's pod tokens; each agent's token bound to its DaemonSet pod on its node,
//! as kubelet mints it). Tests run the operator, agents and Multus with these, never as admin.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

use crate::binaries::bin;
use crate::chart::{
    BOUNDARY_KINDS, Helm, fullname, kubectl_with_input, only_kinds, text, wait_for_rbac,
};
use crate::control_plane::kubeconfig_yaml;
use crate::fixtures::{self, BoundTo};
use crate::{ControlPlane, E2eError, unique_name};

/// Renders `release` with `values` and applies its boundary objects into `ns`.
async fn apply_boundary(
    cp: &ControlPlane,
    admin: &Client,
    release: &str,
    ns: &str,
    values: &[&str],
) -> Result<(), E2eError> {
    let rendered = Helm::new()?.template(release, ns, values)?;
    let (stream, docs) = only_kinds(&rendered, BOUNDARY_KINDS)?;
    let applied = kubectl_with_input(cp, &["apply", "-f", "-"], &stream)?;
    if !applied.status.success() {
        return Err(E2eError::Kube(format!(
            "applying the chart's boundary objects failed:\n{}",
            text(&applied.stderr)
        )));
    }
    wait_for_rbac(admin, ns, &docs).await
}

/// One release's identities in a test's namespace: the chart's ServiceAccounts, RBAC and
/// admission policies applied for real (admin sets the scenario up), and credentials minted
/// the way a real install gets them. Dropping it deletes the release's cluster-scoped objects.
pub struct Identities {
    pub ns: String,
    pub release: String,
    admin: Client,
    /// The admin kubeconfig, to remove the release's cluster-scoped objects on drop.
    admin_kubeconfig: PathBuf,
    kubeconfigs: tempfile::TempDir,
}

impl Identities {
    /// Applies the chart's boundary objects of a new release (`mode` thin or thick) into the
    /// existing namespace `ns`, and waits until the API server enforces them.
    pub async fn apply(cp: &ControlPlane, ns: &str, mode: &str) -> Result<Identities, E2eError> {
        let release = unique_name("rel");
        let admin = cp.client().await?;
        apply_boundary(
            cp,
            &admin,
            &release,
            ns,
            &["--set", &format!("mode={mode}")],
        )
        .await?;
        Ok(Identities {
            ns: ns.to_string(),
            release,
            admin,
            admin_kubeconfig: cp.kubeconfig.clone(),
            kubeconfigs: tempfile::tempdir()
                .map_err(|e| E2eError::Io(format!("kubeconfig dir: {e}")))?,
        })
    }

    /// Applies the release's boundary objects again with other values (what `helm
    /// upgrade --set ...` changes), and waits until the API server enforces them.
    pub async fn upgrade(&self, cp: &ControlPlane, values: &[&str]) -> Result<(), E2eError> {
        apply_boundary(cp, &self.admin, &self.release, &self.ns, values).await
    }

    fn account(&self, role: &str) -> String {
        format!("{}-{role}", fullname(&self.release))
    }

    /// A token of the chart's `role` account (`operator`, `uninstall`, `crds`, `agent`), bound to a
    /// Pod object of that account (on `node` when given), as kubelet mints the projected
    /// token of a Deployment's, Job's or DaemonSet's pod.
    async fn pod_token(&self, role: &str, node: Option<&str>) -> Result<String, E2eError> {
        let account = self.account(role);
        let pod = self.pod(&account, node).await?;
        let uid = pod.metadata.uid.unwrap_or_default();
        let name = pod.metadata.name.unwrap_or_default();
        let minted = fixtures::token(
            &self.admin,
            &self.ns,
            &account,
            BoundTo::Pod {
                name: &name,
                uid: &uid,
            },
            3600,
        )
        .await?;
        minted
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| E2eError::Kube(format!("no token issued for {account}")))
    }

    /// A Pod object of `account` (never run: no kubelet schedules it here), on `node` when
    /// given, so that a token can be bound to it as kubelet binds its pods' tokens.
    async fn pod(&self, account: &str, node: Option<&str>) -> Result<Pod, E2eError> {
        let mut spec = json!({
            "serviceAccountName": account,
            "containers": [{ "name": "main", "image": "never-pulled" }],
        });
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "generateName": format!("{account}-"), "namespace": self.ns },
            "spec": spec,
        }))
        .map_err(|e| E2eError::Kube(e.to_string()))?;
        Api::<Pod>::namespaced(self.admin.clone(), &self.ns)
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| E2eError::Kube(format!("create a pod of {account}: {e}")))
    }

    fn write_kubeconfig(
        &self,
        cp: &ControlPlane,
        name: &str,
        token: &str,
    ) -> Result<PathBuf, E2eError> {
        let path = self.kubeconfigs.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_yaml(&cp.server, &cp.pki.ca_pem, token))
            .map_err(|e| E2eError::Io(format!("write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// A client of the chart's operator ServiceAccount.
    pub async fn operator_client(&self, cp: &ControlPlane) -> Result<Client, E2eError> {
        cp.client_with_token(&self.pod_token("operator", None).await?)
            .await
    }

    /// A kubeconfig of the chart's operator ServiceAccount, for an operator process.
    pub async fn operator_kubeconfig(&self, cp: &ControlPlane) -> Result<PathBuf, E2eError> {
        let token = self.pod_token("operator", None).await?;
        self.write_kubeconfig(cp, "operator", &token)
    }

    /// A kubeconfig of the chart's uninstall hook ServiceAccount.
    pub async fn uninstall_kubeconfig(&self, cp: &ControlPlane) -> Result<PathBuf, E2eError> {
        let token = self.pod_token("uninstall", None).await?;
        self.write_kubeconfig(cp, "uninstall", &token)
    }

    /// A kubeconfig of the chart's pre-upgrade CRD Job ServiceAccount.
    pub async fn crds_kubeconfig(&self, cp: &ControlPlane) -> Result<PathBuf, E2eError> {
        let token = self.pod_token("crds", None).await?;
        self.write_kubeconfig(cp, "crds", &token)
    }

    /// The token of a DaemonSet pod of the agent's ServiceAccount on `node`: what every
    /// container of the node pod holds, so also multus-daemon's in thick mode.
    pub async fn agent_token(&self, node: &str) -> Result<String, E2eError> {
        self.pod_token("agent", Some(node)).await
    }

    /// A kubeconfig for the agent on `node`: the token of a DaemonSet pod of the agent's
    /// ServiceAccount on that node, which carries the node's name (what the admission
    /// policies key on).
    pub async fn agent_kubeconfig(
        &self,
        cp: &ControlPlane,
        node: &str,
    ) -> Result<PathBuf, E2eError> {
        let token = self.pod_token("agent", Some(node)).await?;
        self.write_kubeconfig(cp, &format!("agent-{node}"), &token)
    }
}

impl Drop for Identities {
    fn drop(&mut self) {
        // Cluster-scoped objects of the release; the namespaced ones stay in the test's
        // namespace, where they harm nobody.
        let Ok(kubectl) = bin("kubectl") else { return };
        let selector = format!("app.kubernetes.io/instance={}", self.release);
        let kinds = "validatingadmissionpolicybindings,validatingadmissionpolicies,\
                     clusterrolebindings,clusterroles";
        let _ = Command::new(kubectl)
            .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
            .args(["delete", kinds, "-l", &selector, "--wait=false"])
            .output();
    }
}

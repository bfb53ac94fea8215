//! A common test setup: one namespace with the `multus` ServiceAccount, one simulated node,
//! the operator running for this scenario only, one MultusConfig selecting the node, and a
//! host root holding Calico's config as the primary network.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::node_configmap_name;

use crate::operator::{RunningOperator, TEST_LABEL};
use crate::{E2eError, fixtures, unique_name};

/// Calico's config, the primary network in the tests.
pub const CALICO: &str = include_str!("../../operator/testdata/10-calico.conflist");

/// A temp host root with `/etc/cni/net.d`, holding `10-calico.conflist` when `primary`.
pub fn host_root(primary: bool) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("etc/cni/net.d"))?;
    if primary {
        std::fs::write(dir.path().join("etc/cni/net.d/10-calico.conflist"), CALICO)?;
    }
    Ok(dir)
}

/// The scenario's objects and the operator serving them.
pub struct OneNode {
    pub client: Client,
    /// Namespace of bundles and NADs; also the MultusConfig's and the test label's name.
    pub ns: String,
    pub node: String,
    pub root: tempfile::TempDir,
    pub operator: RunningOperator,
}

impl OneNode {
    /// Sets the scenario up; `spec` is merged over `nodeSelector` and `primary: auto`.
    pub async fn start(client: Client, prefix: &str, spec: Value) -> Result<OneNode, E2eError> {
        Self::start_with(client, prefix, |_| spec).await
    }

    /// Like [`Self::start`], with a spec that may depend on the host root's path.
    pub async fn start_with(
        client: Client,
        prefix: &str,
        spec: impl FnOnce(&std::path::Path) -> Value,
    ) -> Result<OneNode, E2eError> {
        let root = host_root(true).map_err(|e| E2eError::Io(e.to_string()))?;
        let spec = spec(root.path());
        let ns = unique_name(prefix);
        fixtures::namespace(&client, &ns).await?;
        fixtures::service_account(&client, &ns, "multus").await?;
        let node = format!("{ns}-n1");
        fixtures::node(&client, &node, &[("pool", &ns)], &[]).await?;
        let operator = RunningOperator::start(client.clone(), &ns, &ns, Duration::from_secs(60));
        let mut full = json!({
            "nodeSelector": { "matchLabels": { "pool": ns } },
            "primary": { "auto": {} },
        });
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                full.insert(k.clone(), v.clone());
            }
        }
        let config: MultusConfig = serde_json::from_value(json!({
            "apiVersion": "operator.multus.dev/v1alpha1",
            "kind": "MultusConfig",
            "metadata": { "name": ns, "labels": { TEST_LABEL: ns } },
            "spec": full,
        }))
        .map_err(|e| E2eError::Kube(e.to_string()))?;
        Api::<MultusConfig>::all(client.clone())
            .create(&PostParams::default(), &config)
            .await
            .map_err(|e| E2eError::Kube(format!("create MultusConfig: {e}")))?;
        Ok(OneNode {
            client,
            ns,
            node,
            root,
            operator,
        })
    }

    /// The node's bundle ConfigMap, if it exists.
    pub async fn configmap(&self) -> Result<Option<ConfigMap>, kube::Error> {
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .get_opt(&node_configmap_name(&self.node))
            .await
    }
}

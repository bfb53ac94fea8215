//! A common test setup: one namespace with the chart's identities (its ServiceAccounts,
//! including `multus`, RBAC and admission policies), one simulated node, the operator
//! running for this scenario only with the chart's operator identity, one MultusConfig
//! selecting the node, a kubeconfig for the node's agent as its DaemonSet pod would hold it,
//! and a host root holding Calico's config as the primary network.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::{feedback, node_configmap_name};

use crate::agent::{Launch, RunningAgent};
use crate::identities::Identities;
use crate::operator::{RunningOperator, TEST_LABEL, eventually};
use crate::{ControlPlane, E2eError, fixtures};

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
    /// An admin client, for setting scenarios up and checking results.
    pub client: Client,
    /// The chart's identities in `ns`.
    pub identities: Identities,
    /// What the node's agent authenticates with: its DaemonSet pod's token.
    pub agent_kubeconfig: std::path::PathBuf,
    /// Namespace of bundles and NADs; also the MultusConfig's and the test label's name.
    pub ns: String,
    pub node: String,
    pub root: tempfile::TempDir,
    pub operator: RunningOperator,
}

impl OneNode {
    /// Sets the scenario up; `spec` is merged over `nodeSelector` and `primary: auto`.
    pub async fn start(cp: &ControlPlane, prefix: &str, spec: Value) -> Result<OneNode, E2eError> {
        Self::start_with(cp, prefix, |_| spec).await
    }

    /// Like [`Self::start`], with a spec that may depend on the host root's path.
    pub async fn start_with(
        cp: &ControlPlane,
        prefix: &str,
        spec: impl FnOnce(&std::path::Path) -> Value,
    ) -> Result<OneNode, E2eError> {
        let (client, ns) = fixtures::test_namespace(cp, prefix).await?;
        let root = host_root(true).map_err(|e| E2eError::Io(e.to_string()))?;
        let spec = spec(root.path());
        let mode = spec["mode"].as_str().unwrap_or("thin");
        let identities = Identities::apply(cp, &ns, mode).await?;
        let node = format!("{ns}-n1");
        fixtures::node(&client, &node, &[("pool", &ns)], &[]).await?;
        let agent_kubeconfig = identities.agent_kubeconfig(cp, &node).await?;
        let operator = RunningOperator::start(
            identities.operator_client(cp).await?,
            &ns,
            &ns,
            Duration::from_secs(60),
        );
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
            identities,
            agent_kubeconfig,
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

    /// Starts the node's agent as its DaemonSet pod would run it, on the host root.
    pub async fn agent(&self) -> Result<RunningAgent, E2eError> {
        self.agent_with(&Launch::default()).await
    }

    /// Like [`Self::agent`], with other launch options.
    pub async fn agent_with(&self, options: &Launch) -> Result<RunningAgent, E2eError> {
        RunningAgent::launch(
            &self.agent_kubeconfig,
            &self.ns,
            &self.node,
            self.root.path(),
            options,
        )
        .await
    }

    /// Waits until the agent reports `state` on the ConfigMap; returns its annotations.
    /// Panics after `timeout`, naming the state and the last report.
    pub async fn wait_state(&self, state: &str, timeout: Duration) -> BTreeMap<String, String> {
        wait_agent_state(&self.client, &self.ns, &self.node, state, timeout)
            .await
            .metadata
            .annotations
            .unwrap_or_default()
    }

    /// Ends the scenario: `agent` gets SIGTERM and must exit 0, then the operator stops.
    /// Returns the host root: a caller that mounted something inside it unmounts that
    /// before the root is removed.
    pub async fn finish(self, agent: RunningAgent) -> tempfile::TempDir {
        let exit = agent.terminate().await;
        assert!(exit.is_some_and(|s| s.success()), "agent exit: {exit:?}");
        self.operator.stop().await;
        self.root
    }
}

/// Waits until the agent of `node` reports `state` on the node's bundle ConfigMap in `ns`;
/// returns the ConfigMap. Panics after `timeout`, naming the state and the last report.
pub async fn wait_agent_state(
    client: &Client,
    ns: &str,
    node: &str,
    state: &str,
    timeout: Duration,
) -> ConfigMap {
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let name = node_configmap_name(node);
    eventually(
        &format!("agent state {state} on {node}"),
        timeout,
        || async {
            let cm = configmaps.get_opt(&name).await.map_err(|e| e.to_string())?;
            let cm = cm.ok_or("no ConfigMap")?;
            let annotations = cm.metadata.annotations.as_ref();
            let report = |key| annotations.and_then(|a| a.get(key));
            match report(feedback::STATE) {
                Some(s) if s == state => Ok(cm),
                other => Err(format!("{other:?} {:?}", report(feedback::LAST_ERROR))),
            }
        },
    )
    .await
}

/// The names of the entries of a directory, sorted; empty when it cannot be read.
pub fn sorted_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

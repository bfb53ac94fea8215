//! The fleet scenario's objects: the NAD whose edit is timed, the MultusConfig that selects
//! every simulated node, and the wait until its status counts them all Ready.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use crate::E2eError;

/// The NAD's name.
pub const NAD: &str = "net";
/// The label every simulated node carries, with the namespace as its value.
pub const POOL_LABEL: &str = "pool";

/// Where the NAD of `namespace` lands under each host root (the default `multusConfDir`).
pub fn nad_file(namespace: &str) -> String {
    format!("etc/cni/multus/net.d/{namespace}-{NAD}.conf")
}

/// Creates or updates (server-side apply) the NAD in `namespace`: a bridge on `bridge`.
pub async fn apply_nad(client: &Client, namespace: &str, bridge: &str) -> Result<(), E2eError> {
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": NAD, "namespace": namespace },
        "spec": { "config": format!(r#"{{"cniVersion":"0.3.1","type":"bridge","bridge":"{bridge}"}}"#) },
    });
    Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), namespace)
        .patch(NAD, &PatchParams::apply("fleet-bench"), &Patch::Apply(&nad))
        .await
        .map(|_| ())
        .map_err(|e| E2eError::Kube(format!("apply the NAD: {e}")))
}

/// The MultusConfig named `namespace`, selecting the nodes labelled [`POOL_LABEL`] with it,
/// auto primary, the NADs of every namespace as files, every node at once.
pub fn multus_config(namespace: &str) -> Result<MultusConfig, E2eError> {
    serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": namespace },
        "spec": {
            "nodeSelector": { "matchLabels": { POOL_LABEL: namespace } },
            "primary": { "auto": {} },
            "attachments": {},
            "rollout": { "maxUnavailable": "100%" },
        },
    }))
    .map_err(|e| E2eError::Kube(format!("MultusConfig: {e}")))
}

/// Waits until the status of the MultusConfig `name` counts `n` nodes selected and ready;
/// returns how long that took.
pub async fn until_ready(
    client: &Client,
    name: &str,
    n: usize,
    timeout: Duration,
) -> Result<Duration, E2eError> {
    let start = Instant::now();
    let api: Api<MultusConfig> = Api::all(client.clone());
    let mut last = String::new();
    loop {
        if let Ok(config) = api.get(name).await {
            let counts = config.status.map(|s| s.nodes).unwrap_or_default();
            if counts.selected as usize == n && counts.ready as usize == n {
                return Ok(start.elapsed());
            }
            last = format!("{counts:?}");
        }
        if start.elapsed() >= timeout {
            return Err(E2eError::Io(format!(
                "not all {n} nodes Ready within {timeout:?}; last status: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The ConfigMap that carries a node's bundle: deterministic name, labels and data.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use multus_crds::bundle::{
    BUNDLE_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODE_ANNOTATION, NodeBundle,
    node_configmap_name,
};

/// The ConfigMap for a bundle in the operator's namespace (owner references are added by the
/// controller, which knows the owner's UID).
pub fn bundle_configmap(
    bundle: &NodeBundle,
    namespace: &str,
) -> Result<ConfigMap, serde_json::Error> {
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(node_configmap_name(&bundle.manifest.node)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (NODE_ANNOTATION.to_string(), bundle.manifest.node.clone()),
                (
                    BUNDLE_HASH_ANNOTATION.to_string(),
                    bundle.manifest.bundle_hash.clone(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(bundle.to_configmap_data()?),
        ..ConfigMap::default()
    })
}

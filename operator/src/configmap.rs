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
    Ok(node_configmap(
        &bundle.manifest.node,
        namespace,
        Some(&bundle.manifest.bundle_hash),
        &[],
        Some(bundle.to_configmap_data()?),
    ))
}

/// A node's bundle ConfigMap: its name, the managed-by label, the node annotation, the bundle
/// hash annotation when known, `extra` annotations, and `data`.
pub fn node_configmap(
    node: &str,
    namespace: &str,
    bundle_hash: Option<&str>,
    extra: &[(&str, String)],
    data: Option<BTreeMap<String, String>>,
) -> ConfigMap {
    let mut annotations = BTreeMap::from([(NODE_ANNOTATION.to_string(), node.to_string())]);
    if let Some(hash) = bundle_hash {
        annotations.insert(BUNDLE_HASH_ANNOTATION.to_string(), hash.to_string());
    }
    for (key, value) in extra {
        annotations.insert((*key).to_string(), value.clone());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(node_configmap_name(node)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data,
        ..ConfigMap::default()
    }
}

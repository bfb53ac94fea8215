//! A NAD built for a test: one name in namespace `tenant`, its config inline in
//! `spec.config` or in the node-config annotation (written to nodes as a file). Shared by the
//! operator's tests and the fuzz crate (`fuzz/src/lib.rs` includes this file).

use multus_crds::NetworkAttachmentDefinition;
use multus_crds::nad::NODE_CONFIG_ANNOTATION;
use serde_json::json;

/// A NAD in namespace `tenant`, with `config` inline or as the node-config annotation.
pub fn nad(name: &str, config: &str, as_node_file: bool) -> NetworkAttachmentDefinition {
    let (annotations, spec_config) = if as_node_file {
        (json!({ NODE_CONFIG_ANNOTATION: config }), "")
    } else {
        (json!({}), config)
    };
    serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": name, "namespace": "tenant", "annotations": annotations,
            "creationTimestamp": "2026-01-01T00:00:00Z" },
        "spec": { "config": spec_config },
    }))
    .expect("a NAD built from literals deserializes")
}

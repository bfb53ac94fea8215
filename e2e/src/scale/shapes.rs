//! The objects of the operator scale benchmark: simulated Node names, NADs written to nodes
//! as files or left inline, the MultusConfig, and a bundle's size rendered in-process. All of
//! them are fixed data: a failure to build one is a bug here, so it panics.

use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use multus_crds::nad::NODE_CONFIG_ANNOTATION;
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

/// The node label NAD 0's placeholder reads (its macvlan master).
pub const UPLINK: &str = "bench.multus.dev/uplink";
/// `"true"` on the NADs the MultusConfig writes to nodes.
pub const FILE_LABEL: &str = "bench.multus.dev/file";

/// The name of simulated Node `i`.
pub fn node_name(i: usize) -> String {
    format!("scale-node-{i:05}")
}

/// NAD `i`: the first `file_nads` carry their config in the node-config annotation (written
/// to nodes; NAD 0 takes its macvlan master from a node label), the others inline in
/// `spec.config` (read by Multus from the API, not written).
pub fn nad_object(
    i: usize,
    file_nads: usize,
    namespaces: usize,
    bridge: &str,
) -> serde_json::Value {
    let config = if i == 0 {
        format!(
            r#"{{"cniVersion":"0.3.1","type":"macvlan","master":"{{{{ node.labels[{UPLINK}] }}}}","mode":"bridge","ipam":{{"type":"host-local","subnet":"10.200.0.0/16"}}}}"#
        )
    } else {
        format!(
            r#"{{"cniVersion":"0.3.1","type":"bridge","bridge":"{bridge}","isGateway":true,"ipam":{{"type":"host-local","subnet":"10.{}.{}.0/24"}}}}"#,
            i / 250,
            i % 250
        )
    };
    let file = i < file_nads;
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": format!("net-{i:04}"),
            "namespace": format!("scale-nads-{}", i % namespaces),
            "labels": { FILE_LABEL: file.to_string() },
            "annotations": if file { json!({ NODE_CONFIG_ANNOTATION: config }) } else { json!({}) },
        },
        "spec": { "config": if file { String::new() } else { config } },
    })
}

/// NAD `i` as the operator reads it.
pub fn nad(
    i: usize,
    file_nads: usize,
    namespaces: usize,
    bridge: &str,
) -> NetworkAttachmentDefinition {
    serde_json::from_value(nad_object(i, file_nads, namespaces, bridge)).expect("NAD")
}

/// One MultusConfig for every node, writing the NADs labelled [`FILE_LABEL`] as files.
pub fn multus_config() -> MultusConfig {
    serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": "scale" },
        "spec": {
            "primary": { "file": "10-calico.conflist" },
            "attachments": { "selector": { "matchLabels": { FILE_LABEL: "true" } } },
            // No agent confirms anything: a smaller budget would hold every edit back.
            "rollout": { "maxUnavailable": "100%" },
        },
    }))
    .expect("MultusConfig")
}

/// Bytes of one node's bundle (data keys and values) with every one of `nads` NADs written
/// as a file, rendered in-process by the operator's own renderer.
pub fn bundle_bytes_with_all_as_files(nads: usize, namespaces: usize) -> usize {
    let all: Vec<_> = (0..nads)
        .map(|i| nad(i, nads, namespaces, &format!("br-{i}")))
        .collect();
    let config = multus_config();
    let catalog = multus_operator::attachments::build(
        config.spec.attachments.as_ref(),
        &all,
        &Default::default(),
    )
    .expect("catalog");
    let mut node = Node::default();
    node.metadata.name = Some(node_name(0));
    node.metadata.labels = Some([(UPLINK.to_string(), "eth0".to_string())].into());
    let rendered =
        multus_operator::render::render_node(&config, &node, &catalog, &all, &Default::default())
            .expect("render");
    rendered.bundle.byte_size().expect("size")
}

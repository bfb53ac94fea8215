//! Properties of the NAD validator and the per-node renderer on generated input: whatever a
//! namespace user writes into a NAD and whatever a node's labels hold, the operator never
//! panics, and every file it renders passes the same check the agent applies before writing.

use k8s_openapi::api::core::v1::Node;
use proptest::prelude::*;
use serde_json::json;

use multus_crds::cni;
use multus_crds::nad::{NODE_CONFIG_ANNOTATION, NetworkAttachmentDefinition};
use multus_operator::attachments::{self, NamespaceLabels};
use multus_operator::render::{RenderDefaults, render_node};

mod support;

/// A NAD config: arbitrary text, or a plausible config with arbitrary values in its fields
/// (node placeholders included).
fn nad_config() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        ".{0,20}",
        Just("{{ node.name }}".to_string()),
        Just("{{ node.labels[uplink] }}".to_string()),
        Just("{{ node.annotations[a/b] }}".to_string()),
        Just("{{ node.labels[".to_string()),
    ];
    prop_oneof![
        ".{0,120}",
        (value.clone(), value.clone(), value).prop_map(|(kind, master, version)| {
            json!({ "cniVersion": version, "type": kind, "master": master,
                "ipam": { "type": "host-local" } })
            .to_string()
        }),
        (".{0,20}", ".{0,20}").prop_map(|(kind, master)| {
            json!({ "cniVersion": "0.3.1", "type": kind, "master": master }).to_string()
        }),
    ]
}

proptest! {
    #[test]
    fn any_nad_and_any_node_render_without_panic_and_only_valid_files(
        configs in prop::collection::vec((nad_config(), any::<bool>()), 1..4),
        uplink in ".{0,20}",
    ) {
        let nads: Vec<NetworkAttachmentDefinition> = configs
            .iter()
            .enumerate()
            .map(|(i, (text, node_file))| {
                let (annotations, spec) = if *node_file {
                    (json!({ NODE_CONFIG_ANNOTATION: text }), String::new())
                } else {
                    (json!({}), text.clone())
                };
                serde_json::from_value(json!({
                    "apiVersion": "k8s.cni.cncf.io/v1",
                    "kind": "NetworkAttachmentDefinition",
                    "metadata": { "name": format!("n{i}"), "namespace": "tenant",
                        "annotations": annotations },
                    "spec": { "config": spec },
                }))
                .expect("NAD")
            })
            .collect();
        let config = support::all_nads_config();
        let catalog = attachments::build(config.spec.attachments.as_ref(), &nads, &NamespaceLabels::default())
            .expect("selectors");
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": "n1", "annotations": { "uplink": uplink } }
        }))
        .expect("node");
        if let Ok(rendered) = render_node(&config, &node, &catalog, &nads, &RenderDefaults::default()) {
            for file in &rendered.bundle.manifest.files {
                if file.role == multus_crds::bundle::FileRole::Attachment {
                    let text = &rendered.bundle.data[&file.key];
                    prop_assert!(cni::check(text).is_ok(), "{text}");
                }
            }
        }
    }
}

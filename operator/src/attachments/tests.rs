//! Unit tests of `attachments`.

use super::*;

fn nad(name: &str, spec_config: &str, node_config: Option<&str>) -> NetworkAttachmentDefinition {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": "ns",
            "annotations": node_config
                .map(|c| serde_json::json!({ NODE_CONFIG_ANNOTATION: c }))
                .unwrap_or_default(),
        },
        "spec": { "config": spec_config },
    }))
    .unwrap()
}

#[test]
fn a_template_without_placeholders_carries_its_file_text_for_every_node() {
    let nads = [
        nad("plain", r#"{"cniVersion":"0.3.1","type":"bridge"}"#, None),
        nad(
            "templated",
            "",
            Some(r#"{"cniVersion":"0.3.1","type":"macvlan","master":"{{ node.labels[nic] }}"}"#),
        ),
    ];
    let catalog = build(
        Some(&AttachmentSelection::default()),
        &nads,
        &NamespaceLabels::default(),
    )
    .unwrap();
    let by_name = |n: &str| catalog.attachments.iter().find(|a| a.name == n).unwrap();
    let plain = by_name("plain");
    assert_eq!(
        plain.text.as_deref(),
        Some(cni::to_file_text(&plain.template).unwrap().as_str())
    );
    assert!(by_name("templated").text.is_none());
}

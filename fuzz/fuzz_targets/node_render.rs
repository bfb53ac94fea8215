//! The per-node renderer on arbitrary node-config templates and arbitrary node names,
//! labels and annotations, under each shape of MultusConfig.
//!
//! Input: NUL-separated fields: template, node name, labels (`k=v` lines), annotations
//! (`k=v` lines), and a byte choosing the MultusConfig shape.
//!
//! Properties: an accepted attachment is either written for the node or listed as failed
//! for it, never both or neither; every written file is JSON that passes the CNI check;
//! a written attachment has the template's exact shape, with only string values changed,
//! each to what a plain reading of the placeholders gives; the bundle reads back from its
//! ConfigMap data unchanged; the ConfigMap name stays within the API's limit.
#![no_main]

use k8s_openapi::api::core::v1::Node;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use multus_crds::bundle::{FileRole, NodeBundle, node_configmap_name};
use multus_crds::cni;
use multus_operator::attachments::{self, NamespaceLabels};
use multus_operator::render::{RenderDefaults, render_node};
use multus_operator_fuzz::{fields, nad, pairs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fields(text, 5);
    let (template, node_name) = (f[0], f[1]);
    let labels = pairs(f[2]);
    let annotations = pairs(f[3]);
    let variant = f[4].bytes().next().unwrap_or(0);

    let name_len = node_configmap_name(node_name).len();
    assert!(name_len <= 253, "{node_name:?} gives {name_len} characters");

    let config = multus_operator_fuzz::multus_config(variant);
    let nads = vec![nad("templated", template, true)];
    let catalog = attachments::build(
        config.spec.attachments.as_ref(),
        &nads,
        &NamespaceLabels::default(),
    )
    .expect("the empty selectors parse");
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": node_name, "labels": labels, "annotations": annotations }
    }))
    .expect("a Node of strings deserializes");
    let rendered = match render_node(&config, &node, &catalog, &nads, &RenderDefaults::default()) {
        Ok(r) => r,
        // Only size can stop a bundle here: every other input is fixed and valid.
        Err(e) => {
            assert_eq!(e.reason(), "BundleTooLarge", "{e}");
            return;
        }
    };
    let bundle = &rendered.bundle;
    assert_eq!(bundle.manifest.node, node_name);

    for file in &bundle.manifest.files {
        let text = bundle
            .data
            .get(&file.key)
            .expect("every listed file has data");
        let value: Value = serde_json::from_str(text).expect("every rendered file is JSON");
        if file.role != FileRole::DaemonConfig {
            assert!(cni::check(text).is_ok(), "{}: {text}", file.key);
        }
        assert!(value.is_object(), "{}", file.key);
    }

    let facts = DocumentedFill {
        name: node_name,
        labels: &labels,
        annotations: &annotations,
    };
    for attachment in &catalog.attachments {
        let written = bundle.data.get(&attachment.file_name);
        let failed = rendered
            .failed_attachments
            .iter()
            .any(|f| f.nad == attachment.key());
        assert!(
            written.is_some() != failed,
            "{} written: {}, failed: {failed}",
            attachment.key(),
            written.is_some()
        );
        let expected = facts.fill(&attachment.template);
        match (written, expected) {
            (Some(text), Some(expected)) => {
                let got: Value = serde_json::from_str(text).expect("JSON");
                assert_eq!(got, expected, "template {template:?}");
            }
            (Some(text), None) => panic!("wrote {text} where a placeholder has no value"),
            (None, Some(expected)) => {
                // Failing is right only when the filled-in config does not pass the check.
                let text = cni::to_file_text(&expected).expect("serializes");
                assert!(
                    cni::check(&text).is_err(),
                    "refused {text}: {:?}",
                    rendered.failed_attachments
                );
            }
            (None, None) => {}
        }
    }

    let data = bundle.to_configmap_data().expect("serializes");
    let back = NodeBundle::from_configmap_data(&data).expect("a sealed bundle reads back");
    assert_eq!(&back, bundle);
});

/// The fuzz oracle: what placeholders may name (the node's name, labels and annotations),
/// filled in as the documentation states it, independently of the operator's own code.
struct DocumentedFill<'a> {
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
}

impl DocumentedFill<'_> {
    /// The template with every placeholder replaced, read as plainly as the documentation
    /// states it: `{{ node.name }}`, `{{ node.labels[KEY] }}`, `{{ node.annotations[KEY] }}`,
    /// spaces allowed inside the braces and around KEY. `None` when a value is missing.
    fn fill(&self, value: &Value) -> Option<Value> {
        Some(match value {
            Value::String(s) => Value::String(self.fill_str(s)?),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.fill(v)).collect::<Option<_>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Some((k.clone(), self.fill(v)?)))
                    .collect::<Option<_>>()?,
            ),
            other => other.clone(),
        })
    }

    fn fill_str(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let inner = &rest[open + 2..];
            let close = inner.find("}}")?;
            let expr = inner[..close].trim();
            let keyed = |prefix: &str| {
                expr.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix(']'))
                    .map(str::trim)
            };
            let filled = if expr == "node.name" {
                Some(self.name)
            } else if let Some(key) = keyed("node.labels[") {
                self.labels.get(key).map(String::as_str)
            } else if let Some(key) = keyed("node.annotations[") {
                self.annotations.get(key).map(String::as_str)
            } else {
                None
            };
            out.push_str(filled?);
            rest = &inner[close + 2..];
        }
        out.push_str(rest);
        Some(out)
    }
}

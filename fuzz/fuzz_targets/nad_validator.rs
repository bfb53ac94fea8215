//! The NAD validator on arbitrary `spec.config` text: the strict JSON reader, the CNI check
//! and the catalog that turns a NAD into an attachment or a refusal.
//!
//! Properties: the strict reader reads what serde_json reads, or refuses with a reason;
//! anything accepted re-validates identically from its rendered bytes; every plugin and
//! IPAM type that passes is a plain file name, and it is the value Go's decoder on the node
//! would see (no other key that Go matches case-insensitively to a field the operator
//! reads); a NAD is either
//! an attachment or a refusal, never both or neither, and an attachment's file passes the
//! same check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

use multus_crds::cni;
use multus_crds::strict_json::{self, StrictError};
use multus_operator::attachments::{self, NamespaceLabels};
use multus_operator::placeholders;
use multus_operator_fuzz::{go_keys_for, is_plain_plugin_name, nad};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    strict_reader_agrees_with_serde_json(text);
    let checked = cni::check(text);
    match &checked {
        Ok(config) => accepted_config_holds(text, config),
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason: {text:?}");
            for e in errors {
                assert!(e.path.starts_with('$'), "path {:?} for {text:?}", e.path);
            }
        }
    }
    catalog_sorts_every_nad_once(text, checked.is_ok());
});

fn strict_reader_agrees_with_serde_json(text: &str) {
    let loose = serde_json::from_str::<Value>(text);
    match strict_json::parse(text) {
        Ok(value) => assert_eq!(
            loose.as_ref().ok(),
            Some(&value),
            "strict and serde_json read {text:?} differently"
        ),
        Err(StrictError::Syntax(message)) => assert!(
            loose.is_err(),
            "strict refused {text:?} as a syntax error ({message}) that serde_json accepts"
        ),
        Err(StrictError::DuplicateKey { .. }) => {}
    }
}

fn accepted_config_holds(text: &str, config: &cni::CheckedConfig) {
    let value = Value::Object(config.value.clone());
    // Re-validates identically from the bytes a node would get, pretty or compact.
    let pretty = cni::to_file_text(&value).expect("a JSON value serializes");
    let compact = serde_json::to_string(&value).expect("a JSON value serializes");
    for form in [&pretty, &compact] {
        match cni::check(form) {
            Ok(again) => assert_eq!(&again, config, "{text:?} re-read as {form:?}"),
            Err(e) => panic!("{text:?} accepted, its rendering {form:?} refused: {e:?}"),
        }
    }
    go_sees_what_was_checked(&config.value, &cni::CHECKED_FIELDS, "$", text);
    let plugins: Vec<&Map<String, Value>> = cni::plugin_objects(&config.value).collect();
    assert!(!plugins.is_empty(), "{text:?} accepted without a plugin");
    for (i, plugin) in plugins.iter().enumerate() {
        let kind = plugin.get("type").and_then(Value::as_str);
        assert!(
            kind.is_some_and(is_plain_plugin_name),
            "{text:?} accepted with plugin {i} type {kind:?}"
        );
        go_sees_what_was_checked(plugin, &cni::CHECKED_FIELDS, &format!("plugin {i}"), text);
        if let Some(ipam) = plugin.get("ipam").and_then(Value::as_object) {
            go_sees_what_was_checked(ipam, &["type"], &format!("plugin {i} ipam"), text);
            if let Some(kind) = ipam.get("type") {
                assert!(
                    kind.as_str().is_some_and(is_plain_plugin_name),
                    "{text:?} accepted with IPAM type {kind}"
                );
            }
        }
        for key in ["master", "bridge", "device"] {
            if let Some(name) = plugin.get(key).and_then(Value::as_str)
                && !name.contains("{{")
            {
                assert!(
                    cni::is_interface_name(name),
                    "{text:?} accepted with {key} {name:?}"
                );
            }
        }
    }
}

/// Each field the validator reads is the one Go's decoder fills: Go matches struct fields
/// case-insensitively and keeps the last match, so the only key that may reach a checked
/// field is the field's exact name.
fn go_sees_what_was_checked(object: &Map<String, Value>, fields: &[&str], at: &str, text: &str) {
    for field in fields {
        let keys = go_keys_for(object, field);
        assert!(
            keys.iter().all(|k| k.as_str() == *field),
            "{text:?} accepted: at {at}, Go fills {field} from {keys:?}"
        );
    }
}

fn catalog_sorts_every_nad_once(text: &str, valid: bool) {
    let config = multus_operator_fuzz::multus_config(0);
    let nads = vec![nad("inline", text, false), nad("file", text, true)];
    let catalog = attachments::build(
        config.spec.attachments.as_ref(),
        &nads,
        &NamespaceLabels::default(),
    )
    .expect("the empty selectors parse");
    let scanned = cni::check(text)
        .ok()
        .map(|c| placeholders::scan(&Value::Object(c.value)));
    for nad in &nads {
        let key = nad.key();
        let written: Vec<_> = catalog
            .attachments
            .iter()
            .filter(|a| a.key() == key)
            .collect();
        let refused = catalog.rejected.iter().filter(|f| f.nad == key).count();
        assert_eq!(
            written.len() + refused,
            1,
            "{key} for {text:?}: {written:?} {:?}",
            catalog.rejected
        );
        let as_node_file = nad.spec_config().is_empty();
        let expected = match (&scanned, text.trim().is_empty()) {
            (_, true) => false,
            (Some(Ok(found)), false) => as_node_file || found.is_empty(),
            _ => false,
        };
        assert_eq!(
            written.len() == 1,
            expected,
            "{key} for {text:?} (valid: {valid}): {:?}",
            catalog.rejected
        );
        let Some(attachment) = written.first() else {
            continue;
        };
        let name = nad.metadata.name.as_deref();
        assert_eq!(
            attachment.template.get("name").and_then(Value::as_str),
            name
        );
        if let Some(root) = attachment.template.as_object() {
            go_sees_what_was_checked(root, &cni::CHECKED_FIELDS, &key, text);
        }
        let list = attachment.template.get("plugins").is_some();
        let extension = if list { ".conflist" } else { ".conf" };
        assert!(attachment.file_name.ends_with(extension), "{attachment:?}");
        if !attachment.has_placeholders {
            let file = cni::to_file_text(&attachment.template).expect("serializes");
            assert!(cni::check(&file).is_ok(), "{key}: {file}");
        }
    }
}

//! NADs written as a hostile namespace user would write them: anything a node would execute
//! or read differently from us is refused, with the field named, and reaches no node file,
//! while a valid NAD beside them keeps flowing. Each case is tried as an inline
//! `spec.config` and as a node file (the node-config annotation with an empty spec.config).

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use multus_crds::cni::Problem;

use multus_operator::attachments::{self, NamespaceLabels, Reason};
use multus_operator::render::{RenderDefaults, render_node};

#[path = "support/nads.rs"]
mod nads;
mod support;
use nads::nad;

/// A config around one plugin.
fn conf(plugin: Value) -> String {
    let mut plugin = plugin;
    plugin["cniVersion"] = json!("0.3.1");
    plugin.to_string()
}

/// A conflist with a harmless first plugin and `second` after it.
fn list(second: Value) -> String {
    json!({ "cniVersion": "1.0.0", "plugins": [{ "type": "bridge" }, second] }).to_string()
}

/// (label, config text, the problem, the field it names)
fn cases() -> Vec<(String, String, Problem, String)> {
    let mut cases = Vec::new();
    let mut add = |label: String, text: String, problem: Problem, path: &str| {
        cases.push((label, text, problem, path.to_string()));
    };
    // Plugin types that are not plain file names in the CNI bin dir.
    let long = "p".repeat(256);
    let bad_types = [
        "../../bin/sh",
        "../bridge",
        "/bin/sh",
        "/opt/cni/bin/bridge",
        "bridge/../../sh",
        "./bridge",
        ".hidden",
        "..",
        ".",
        "bri dge",
        " bridge",
        "bridge\n",
        "bridge\t",
        "bridge\u{0}",
        "bridge\u{1b}[31m",
        "brid\\ge",
        "bridge;rm -rf /",
        "$(id)",
        "`id`",
        "bridge|tee",
        "bridge*",
        "brídge",
        "bridge\u{200b}",
        long.as_str(),
    ];
    for bad in bad_types {
        add(
            format!("type {bad:?}"),
            conf(json!({ "type": bad })),
            Problem::InvalidType,
            "$.type",
        );
    }
    add(
        "type in a list".into(),
        list(json!({ "type": "../tuning" })),
        Problem::InvalidType,
        "$.plugins[1].type",
    );
    // IPAM types likewise, including ones that are not strings at all.
    for bad in [
        json!("../host-local"),
        json!("/usr/bin/host-local"),
        json!(""),
        json!("host local"),
        json!("host-local\n"),
        json!(".host-local"),
        json!(5),
        json!(null),
        json!(["host-local"]),
    ] {
        add(
            format!("ipam type {bad}"),
            conf(json!({ "type": "bridge", "ipam": { "type": bad } })),
            Problem::InvalidType,
            "$.ipam.type",
        );
    }
    add(
        "ipam type in a list".into(),
        list(json!({ "type": "bridge", "ipam": { "type": "/x" } })),
        Problem::InvalidType,
        "$.plugins[1].ipam.type",
    );
    // Repeated keys: Go's decoder on the node keeps the last one.
    for (label, text, path) in [
        (
            "type twice",
            r#"{"cniVersion":"0.3.1","type":"bridge","type":"macvlan"}"#,
            "$.type",
        ),
        (
            "cniVersion twice",
            r#"{"cniVersion":"0.3.1","cniVersion":"1.0.0","type":"bridge"}"#,
            "$.cniVersion",
        ),
        (
            "ipam type twice",
            r#"{"cniVersion":"0.3.1","type":"bridge","ipam":{"type":"static","type":"host-local"}}"#,
            "$.ipam.type",
        ),
        (
            "master twice",
            r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth0","master":"eth1"}"#,
            "$.master",
        ),
        (
            "name twice",
            r#"{"cniVersion":"0.3.1","name":"a","name":"b","type":"bridge"}"#,
            "$.name",
        ),
        (
            "plugin key twice",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge","mtu":1500,"mtu":9000}]}"#,
            "$.plugins[0].mtu",
        ),
        (
            "plugins twice",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}],"plugins":[{"type":"macvlan"}]}"#,
            "$.plugins",
        ),
    ] {
        add(label.into(), text.into(), Problem::DuplicateKey, path);
    }
    // Host interface names the kernel refuses, or that hide characters.
    let sixteen = "e".repeat(16);
    for (key, plugin, bad) in [
        ("master", "macvlan", "eth0/../x"),
        ("master", "macvlan", "eth 0"),
        ("master", "macvlan", "eth0\n"),
        ("master", "macvlan", sixteen.as_str()),
        ("master", "macvlan", ""),
        ("master", "macvlan", "."),
        ("master", "macvlan", ".."),
        ("master", "macvlan", "eth0:1"),
        ("master", "macvlan", "eth\u{85}"),
        ("bridge", "bridge", "br\u{1}"),
        ("bridge", "bridge", "br0 "),
        ("device", "host-device", "dev\t0"),
    ] {
        add(
            format!("{key} {bad:?}"),
            conf(json!({ "type": plugin, key: bad })),
            Problem::InvalidInterfaceName,
            &format!("$.{key}"),
        );
    }
    // Keys Go's decoder on the node matches to a checked field regardless of letter case
    // (found by the nad_validator fuzz target).
    for (label, text, path) in [
        (
            "Ipam",
            r#"{"cniVersion":"0.3.1","type":"bridge","Ipam":{"type":"../../bin/sh"}}"#,
            "$.Ipam",
        ),
        (
            "TYPE beside type",
            r#"{"cniVersion":"0.3.1","type":"bridge","TYPE":"/bin/sh"}"#,
            "$.TYPE",
        ),
        (
            "ipam Type beside type",
            r#"{"cniVersion":"0.3.1","type":"bridge","ipam":{"type":"host-local","Type":"../x"}}"#,
            "$.ipam.Type",
        ),
        (
            "long s in cniVersion",
            "{\"cniVersion\":\"0.3.1\",\"cniVer\u{17f}ion\":\"9.9.9\",\"type\":\"bridge\"}",
            "$.cniVer\u{17f}ion",
        ),
        (
            "Master in a list",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"},{"type":"macvlan","Master":"eth0/../x"}]}"#,
            "$.plugins[1].Master",
        ),
    ] {
        add(label.into(), text.into(), Problem::CaseVariantKey, path);
    }
    cases
}

#[test]
fn every_hostile_nad_is_refused_with_its_field_named_and_reaches_no_node_file() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let config = support::all_nads_config();
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1" } })).expect("node");
    let namespaces = NamespaceLabels::default();
    let good =
        conf(json!({ "type": "macvlan", "master": "eth0", "ipam": { "type": "host-local" } }));
    for as_node_file in [false, true] {
        let mut nads = vec![nad("good", &good, as_node_file)];
        for (i, (_, text, _, _)) in cases.iter().enumerate() {
            nads.push(nad(&format!("hostile-{i}"), text, as_node_file));
        }
        let catalog = attachments::build(config.spec.attachments.as_ref(), &nads, &namespaces)
            .expect("selectors");
        for (i, (label, _, problem, path)) in cases.iter().enumerate() {
            let key = format!("tenant/hostile-{i}");
            let found = catalog.rejected.iter().find(|f| f.nad == key);
            let Some(found) = found else {
                panic!("{label} (node file: {as_node_file}) was not refused");
            };
            assert_eq!(
                (found.reason, found.path.as_str()),
                (Reason::InvalidConfig(*problem), path.as_str()),
                "{label} (node file: {as_node_file}): {}",
                found.message
            );
        }
        let written: Vec<String> = catalog.attachments.iter().map(|a| a.key()).collect();
        assert_eq!(written, vec!["tenant/good"], "node file: {as_node_file}");
        let rendered = render_node(&config, &node, &catalog, &nads, &RenderDefaults::default())
            .expect("render");
        let hostile_files: Vec<&String> = rendered
            .bundle
            .data
            .keys()
            .filter(|k| k.contains("hostile"))
            .collect();
        assert!(hostile_files.is_empty(), "{hostile_files:?}");
        assert!(rendered.bundle.data.contains_key("tenant-good.conf"));
    }
}

#[test]
fn an_interface_name_from_a_node_placeholder_is_checked_once_filled_in() {
    let config = support::all_nads_config();
    let template = conf(json!({ "type": "macvlan", "master": "{{ node.labels[uplink] }}" }));
    let nads = vec![nad("uplinked", &template, true)];
    let catalog = attachments::build(
        config.spec.attachments.as_ref(),
        &nads,
        &NamespaceLabels::default(),
    )
    .expect("selectors");
    assert_eq!(catalog.attachments.len(), 1, "{:?}", catalog.rejected);
    for (label, written) in [("eth1", true), ("eth1 x", false), ("../../etc", false)] {
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": "n1", "labels": { "uplink": label } }
        }))
        .expect("node");
        let rendered = render_node(&config, &node, &catalog, &nads, &RenderDefaults::default())
            .expect("render");
        assert_eq!(
            rendered.bundle.data.contains_key("tenant-uplinked.conf"),
            written,
            "{label}: {:?}",
            rendered.failed_attachments
        );
        if !written {
            assert!(
                rendered.failed_attachments[0].message.contains("$.master"),
                "{:?}",
                rendered.failed_attachments
            );
        }
    }
}

//! MultusConfig specs as the operator's tests and tools write them back: an unset option
//! is left out, never written as `null`, and a spec reads back as it was.

use serde_json::{Value, json};

use multus_crds::multus_config::MultusConfigSpec;

/// The paths of every `null` in `value`.
fn nulls(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Null => found.push(path.to_string()),
        Value::Object(map) => {
            for (key, v) in map {
                nulls(v, &format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                nulls(v, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn round_trip(spec: Value) -> Value {
    let read: MultusConfigSpec = serde_json::from_value(spec).unwrap();
    let written = serde_json::to_value(&read).unwrap();
    let again: MultusConfigSpec = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(
        again, read,
        "the written spec reads back differently: {written}"
    );
    written
}

#[test]
fn unset_options_are_left_out_not_written_as_null() {
    let written = round_trip(json!({ "primary": { "auto": {} } }));
    let mut found = Vec::new();
    nulls(&written, "spec", &mut found);
    assert!(found.is_empty(), "written as null: {found:?} in {written}");
    for absent in ["nodeSelector", "attachments"] {
        assert!(written.get(absent).is_none(), "{absent} in {written}");
    }
    for absent in ["file", "networkAttachment"] {
        assert!(
            written["primary"].get(absent).is_none(),
            "{absent} in {written}"
        );
    }
    let multus = written["multus"].as_object().unwrap();
    assert_eq!(
        multus.keys().collect::<Vec<_>>(),
        ["cniVersion"],
        "{written}"
    );
    for absent in [
        "serviceAccount",
        "refreshBeforeExpiry",
        "server",
        "certificateAuthority",
    ] {
        assert!(
            written["kubeconfig"].get(absent).is_none(),
            "{absent} in {written}"
        );
    }
}

#[test]
fn every_option_that_is_set_is_written_and_reads_back() {
    let multus = json!({
        "cniVersion": "1.0.0",
        "name": "net",
        "logLevel": "debug",
        "logFile": "/var/log/multus.log",
        "logToStderr": false,
        "namespaceIsolation": true,
        "globalNamespaces": ["shared"],
        "systemNamespaces": ["kube-system"],
        "multusNamespace": "kube-system",
        "defaultNetworks": ["extra"],
        "readinessIndicatorFile": "/run/ready",
        "retryDeleteOnError": true,
        "capabilities": { "portMappings": true },
    });
    let kubeconfig = json!({
        "enabled": true,
        "serviceAccount": { "namespace": "kube-system", "name": "multus" },
        "expirationSeconds": 7200,
        "refreshBeforeExpiry": "10m",
        "audiences": ["api"],
        "server": "https://198.18.0.1:6443",
        "certificateAuthority": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    });
    let written = round_trip(json!({
        "nodeSelector": { "matchLabels": { "pool": "a" } },
        "primary": { "file": "10-primary.conflist" },
        "multus": multus,
        "kubeconfig": kubeconfig,
        "attachments": { "selector": { "matchLabels": { "net": "on" } } },
    }));
    assert_eq!(written["multus"], multus);
    assert_eq!(written["kubeconfig"], kubeconfig);
    assert_eq!(written["nodeSelector"]["matchLabels"]["pool"], "a");
    assert_eq!(written["primary"], json!({ "file": "10-primary.conflist" }));
    assert_eq!(
        written["attachments"]["selector"]["matchLabels"]["net"],
        "on"
    );
}

//! The offline bundle check accepts what the operator renders and refuses tampering.

use multus_node_agent::check::{CheckError, check_configmap_yaml};

/// The golden thin-auto bundle of the operator's render tests, as a ConfigMap.
fn rendered_configmap() -> String {
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../operator/testdata/golden/thin-auto"
    );
    let mut yaml = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: multus-node-worker-1\ndata:\n",
    );
    for key in [
        "00-multus.conf",
        "team-a-backplane.conflist",
        "team-a-storage.conf",
        "manifest.json",
    ] {
        let text = std::fs::read_to_string(format!("{golden}/{key}")).expect("golden file");
        yaml.push_str(&format!("  {key}: {}\n", yaml_string(&text)));
    }
    yaml
}

/// A YAML double-quoted scalar is a JSON string.
fn yaml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn a_bundle_rendered_by_the_operator_passes_the_agent_check() {
    let report = check_configmap_yaml(&rendered_configmap()).expect("bundle accepted");
    assert!(
        report.contains("/etc/cni/net.d/00-multus.conf (mode 0600"),
        "{report}"
    );
    assert!(
        report.contains("/etc/cni/multus/net.d/team-a-storage.conf"),
        "{report}"
    );
}

#[test]
fn a_bundle_edited_by_hand_is_refused() {
    let yaml = rendered_configmap().replace("eth1", "eth9");
    let err = check_configmap_yaml(&yaml).unwrap_err();
    assert!(matches!(err, CheckError::Bundle(_)), "{err}");
}

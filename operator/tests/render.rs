//! Table-driven and golden-file tests of the pure renderer and the attachment catalog.
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p multus-operator --test render`
//! and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use multus_crds::bundle::{FileRole, NodeBundle, PrimaryRule};
use multus_crds::cni::Problem;
use multus_crds::completion::complete_for_manifest;
use multus_operator::attachments::{self, Catalog, Reason};
use multus_operator::cli::inputs::Inputs;
use multus_operator::render::{NodeRender, RenderDefaults, RenderError, render_node};
use serde_json::Value;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn inputs(files: &[&str]) -> Inputs {
    let mut inputs = Inputs::default();
    for file in files {
        let path = testdata().join(file);
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        inputs.add(&path, &text).expect("fixture parses");
    }
    inputs
}

fn inline(yaml: &str) -> Inputs {
    let mut inputs = Inputs::default();
    inputs
        .add(Path::new("inline"), yaml)
        .expect("inline YAML parses");
    inputs
}

fn catalog_of(inputs: &Inputs) -> Catalog {
    let config = inputs.config(None).expect("one MultusConfig");
    attachments::build(
        config.spec.attachments.as_ref(),
        &inputs.nads,
        &inputs.namespaces,
    )
    .expect("selectors valid")
}

fn render(inputs: &Inputs, node: &str) -> Result<NodeRender, RenderError> {
    let config = inputs.config(None).expect("one MultusConfig");
    let node = inputs.node(Some(node)).expect("node present");
    render_node(
        config,
        node,
        &catalog_of(inputs),
        &inputs.nads,
        &RenderDefaults::default(),
    )
}

/// The bundle `worker-1` gets from `cluster.yaml` and `fixture`, and its Multus config as
/// JSON.
fn worker_bundle(fixture: &str) -> (NodeBundle, Value) {
    let bundle = render(&inputs(&["cluster.yaml", fixture]), "worker-1")
        .expect("the fixture renders")
        .bundle;
    let (_, text) = bundle
        .file(FileRole::MultusConfig)
        .expect("every bundle has a Multus config");
    let config = serde_json::from_str(text).expect("the Multus config is JSON");
    (bundle, config)
}

/// Compares every file of a bundle (and the manifest) with `golden/<case>/`.
fn assert_golden(case: &str, bundle: &NodeBundle, extra: &[(&str, String)]) {
    let dir = testdata().join("golden").join(case);
    let mut files: BTreeMap<String, String> = bundle.to_configmap_data().expect("serializes");
    for (name, text) in extra {
        files.insert(name.to_string(), text.clone());
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create golden dir");
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).expect("write golden");
        }
        return;
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "golden dir {} missing ({e}); run with UPDATE_GOLDEN=1",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = files.keys().cloned().collect();
    assert_eq!(
        on_disk, expected,
        "case {case}: set of files differs from golden"
    );
    for (name, text) in &files {
        let golden = std::fs::read_to_string(dir.join(name)).expect("golden readable");
        assert_eq!(&golden, text, "case {case}: {name} differs from golden");
    }
}

fn complete_with_calico(bundle: &NodeBundle) -> String {
    let (_, template) = bundle
        .file(FileRole::MultusConfig)
        .expect("multus config present");
    assert!(
        bundle.manifest.primary.needs_node_file(),
        "NAD primary needs no completion"
    );
    let calico = std::fs::read_to_string(testdata().join("10-calico.conflist")).expect("primary");
    complete_for_manifest(&bundle.manifest, template, "10-calico.conflist", &calico)
        .expect("completes")
}

#[test]
fn golden_bundles_for_every_mode_and_primary_source() {
    // (case, MultusConfig fixture, node, completes with a node primary)
    let cases = [
        ("thin-auto", "thin-auto.yaml", "worker-1", true),
        ("thin-file", "thin-file.yaml", "worker-1", true),
        ("thin-nad", "thin-nad.yaml", "worker-1", false),
        ("thick-auto", "thick-auto.yaml", "worker-1", true),
        ("thick-nad", "thick-nad.yaml", "worker-1", false),
        ("conflist-v1", "conflist-v1.yaml", "worker-2", true),
    ];
    for (case, config, node, completes) in cases {
        let inputs = inputs(&["cluster.yaml", config]);
        let rendered = render(&inputs, node).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let mut extra = Vec::new();
        if completes {
            extra.push((
                "completed-with-10-calico",
                complete_with_calico(&rendered.bundle),
            ));
        }
        assert_golden(case, &rendered.bundle, &extra);
    }
}

#[test]
fn thin_config_embeds_paths_kubeconfig_and_an_explicit_conf_dir() {
    let (bundle, v) = worker_bundle("thin-auto.yaml");
    let (file, _) = bundle.file(FileRole::MultusConfig).unwrap();
    assert_eq!(
        (file.dir.as_str(), file.name.as_str()),
        ("/etc/cni/net.d", "00-multus.conf")
    );
    assert_eq!(v["type"], "multus");
    assert_eq!(v["confDir"], "/etc/cni/multus/net.d");
    assert_eq!(v["kubeconfig"], "/etc/cni/net.d/multus.d/multus.kubeconfig");
    assert!(
        v.get("delegates").is_none(),
        "the agent adds the node's primary"
    );
    let completed: Value = serde_json::from_str(&complete_with_calico(&bundle)).unwrap();
    assert_eq!(completed["delegates"][0]["name"], "k8s-pod-network");
    assert_eq!(completed["capabilities"]["portMappings"], true);
}

#[test]
fn thick_config_uses_the_shim_and_a_daemon_config_that_keeps_the_daemon_off_our_file() {
    let (bundle, shim) = worker_bundle("thick-auto.yaml");
    assert_eq!(shim["type"], "multus-shim");
    assert_eq!(shim["daemonSocketDir"], "/run/multus");
    let (file, daemon) = bundle.file(FileRole::DaemonConfig).unwrap();
    assert_eq!(file.dir, "/etc/cni/net.d/multus.d");
    let daemon: Value = serde_json::from_str(daemon).unwrap();
    // Upstream's daemon exits right after it starts serving when multusConfigFile names a
    // file (upstream #1366), so it runs in auto mode, its "primary" being its own config in
    // multus.d, and writes its generated config there too: never into the CNI config
    // directory, never over our file.
    assert_eq!(daemon["multusConfigFile"], "auto");
    assert_eq!(
        daemon["multusAutoconfigDir"],
        "/host/etc/cni/net.d/multus.d"
    );
    assert_eq!(daemon["multusMasterCNI"], "daemon-config.json");
    assert_eq!(daemon["cniConfigDir"], "/host/etc/cni/net.d/multus.d");
    assert_eq!(daemon["confDir"], "/host/etc/cni/multus/net.d");
    let completed: Value = serde_json::from_str(&complete_with_calico(&bundle)).unwrap();
    assert_eq!(
        completed["clusterNetwork"],
        "/host/etc/cni/net.d/10-calico.conflist"
    );
    assert_eq!(
        bundle.manifest.primary,
        PrimaryRule::Auto {
            dir: "/etc/cni/net.d".into(),
            exclude: vec!["*istio*".into()]
        }
    );
}

#[test]
fn primary_sources_become_the_documented_rules() {
    let table = [
        (
            "thin-auto.yaml",
            PrimaryRule::Auto {
                dir: "/etc/cni/net.d".into(),
                exclude: vec![],
            },
        ),
        (
            "thin-file.yaml",
            PrimaryRule::File {
                dir: "/etc/cni/net.d".into(),
                name: "10-calico.conflist".into(),
            },
        ),
        (
            "thin-nad.yaml",
            PrimaryRule::NetworkAttachment {
                namespace: "kube-system".into(),
                name: "pod-network".into(),
            },
        ),
    ];
    for (fixture, want) in table {
        let (bundle, _) = worker_bundle(fixture);
        assert_eq!(bundle.manifest.primary, want, "{fixture}");
    }
}

#[test]
fn a_nad_primary_is_rendered_complete_as_a_bare_name_in_its_namespace() {
    let (_, v) = worker_bundle("thin-nad.yaml");
    assert_eq!(v["clusterNetwork"], "pod-network");
    assert_eq!(v["multusNamespace"], "kube-system");
    assert_eq!(
        v["capabilities"],
        serde_json::json!({"bandwidth": true, "portMappings": true})
    );
    assert_eq!(v["readinessindicatorfile"], "/run/calico/ready");
    assert_eq!(v["defaultNetworks"], serde_json::json!(["backplane"]));
}

#[test]
fn cni_version_1_0_0_gives_a_conflist_with_multus_inside_plugins() {
    let (bundle, v) = worker_bundle("conflist-v1.yaml");
    let (file, _) = bundle.file(FileRole::MultusConfig).unwrap();
    assert_eq!(file.name, "00-multus.conflist");
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["plugins"][0]["type"], "multus");
    assert_eq!(v["plugins"][0]["capabilities"]["ips"], true);
    assert!(v.get("type").is_none());
}

#[test]
fn attachment_json_name_is_the_nad_name_and_the_file_is_namespace_dash_name() {
    let rendered = render(&inputs(&["cluster.yaml", "thin-auto.yaml"]), "worker-1").unwrap();
    let attachments: Vec<_> = rendered
        .bundle
        .manifest
        .files
        .iter()
        .filter(|f| f.role == FileRole::Attachment)
        .collect();
    let names: Vec<(&str, &str)> = attachments
        .iter()
        .map(|f| (f.name.as_str(), f.source.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("team-a-backplane.conflist", "team-a/backplane"),
            ("team-a-storage.conf", "team-a/storage")
        ]
    );
    for file in attachments {
        let v: Value = serde_json::from_str(&rendered.bundle.data[&file.key]).unwrap();
        let nad_name = file
            .source
            .as_deref()
            .and_then(|s| s.split('/').nth(1))
            .unwrap();
        assert_eq!(v["name"], nad_name);
        assert_eq!(file.dir, "/etc/cni/multus/net.d");
        assert_eq!(file.mode.to_string(), "0600");
    }
}

#[test]
fn a_missing_label_fails_that_attachment_on_that_node_only() {
    let inputs = inputs(&["cluster.yaml", "thin-auto.yaml"]);
    let with_label = render(&inputs, "worker-1").unwrap();
    let without = render(&inputs, "worker-2").unwrap();
    assert!(with_label.failed_attachments.is_empty());
    assert!(with_label.bundle.data.contains_key("team-a-storage.conf"));
    let storage: Value =
        serde_json::from_str(&with_label.bundle.data["team-a-storage.conf"]).unwrap();
    assert_eq!(storage["master"], "eth1");
    assert_eq!(storage["ipam"]["subnet"], "192.168.10.0/24");

    assert_eq!(without.failed_attachments.len(), 1);
    assert_eq!(without.failed_attachments[0].nad, "team-a/storage");
    assert!(without.failed_attachments[0].message.contains("worker-2"));
    assert!(!without.bundle.data.contains_key("team-a-storage.conf"));
    assert!(
        without
            .bundle
            .manifest
            .files
            .iter()
            .all(|f| f.key != "team-a-storage.conf")
    );
    // The rest of worker-2's bundle is intact, and no half-rendered file exists anywhere.
    assert!(
        without
            .bundle
            .data
            .contains_key("team-a-backplane.conflist")
    );
    assert!(without.bundle.data.values().all(|t| !t.contains("{{")));
}

const CONFIG_ALL_NADS: &str = r#"
apiVersion: operator.multus.dev/v1alpha1
kind: MultusConfig
metadata: { name: default }
spec:
  primary: { auto: {} }
  attachments: {}
"#;

/// A MultusConfig `default` whose spec is `spec`, a YAML flow mapping.
fn config_with_spec(spec: &str) -> String {
    format!(
        "apiVersion: operator.multus.dev/v1alpha1\nkind: MultusConfig\nmetadata: {{ name: default }}\nspec: {spec}\n"
    )
}

/// Node `n1`, as a YAML document to append.
const NODE_N1: &str = "---\napiVersion: v1\nkind: Node\nmetadata: { name: n1 }\n";

fn nad(ns: &str, name: &str, created: &str, config: &str) -> String {
    let config = serde_json::to_string(config).unwrap();
    format!(
        "---\napiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {{ name: {name}, namespace: {ns}, creationTimestamp: \"{created}\" }}\nspec:\n  config: {config}\n"
    )
}

const BRIDGE: &str = r#"{"cniVersion":"0.3.1","type":"bridge"}"#;
const MACVLAN: &str = r#"{"cniVersion":"0.3.1","type":"macvlan"}"#;

/// The catalog of a MultusConfig selecting every NAD, over NADs given as (namespace, name,
/// creation time, config).
fn catalog_of_nads(nads: &[(&str, &str, &str, &str)]) -> Catalog {
    let mut yaml = CONFIG_ALL_NADS.to_string();
    for (ns, name, created, config) in nads {
        yaml.push_str(&nad(ns, name, created, config));
    }
    catalog_of(&inline(&yaml))
}

#[test]
fn two_nads_with_one_name_in_two_namespaces_clash_and_the_older_wins() {
    let catalog = catalog_of_nads(&[
        ("red", "data", "2026-02-01T00:00:00Z", BRIDGE),
        ("blue", "data", "2026-01-01T00:00:00Z", MACVLAN),
    ]);
    let kept: Vec<String> = catalog.attachments.iter().map(|a| a.key()).collect();
    assert_eq!(kept, vec!["blue/data"]);
    assert_eq!(catalog.rejected.len(), 1);
    let finding = &catalog.rejected[0];
    assert_eq!(finding.nad, "red/data");
    assert_eq!(finding.reason, Reason::NameClash);
    assert!(finding.message.contains("blue/data"), "{}", finding.message);
}

#[test]
fn file_name_clashes_between_dashed_names_are_detected() {
    let catalog = catalog_of_nads(&[
        ("a-b", "c", "2026-01-01T00:00:00Z", BRIDGE),
        ("a", "b-c", "2026-01-02T00:00:00Z", BRIDGE),
    ]);
    assert_eq!(catalog.attachments.len(), 1);
    assert_eq!(catalog.rejected[0].nad, "a/b-c");
    assert_eq!(catalog.rejected[0].reason, Reason::FileNameClash);
}

#[test]
fn invalid_nads_are_rejected_with_a_message_naming_the_nad_and_the_path() {
    let oversized = format!(
        r#"{{"cniVersion":"0.3.1","type":"bridge","pad":"{}"}}"#,
        "x".repeat(multus_crds::cni::MAX_CONFIG_BYTES)
    );
    let table: Vec<(&str, String, Reason, &str)> = vec![
        (
            "broken-json",
            r#"{"cniVersion": "0.3.1", "type": "#.into(),
            Reason::InvalidConfig(Problem::InvalidJson),
            "$",
        ),
        (
            "no-type",
            r#"{"cniVersion":"0.3.1","bridge":"br0"}"#.into(),
            Reason::InvalidConfig(Problem::MissingType),
            "$.type",
        ),
        (
            "old-version",
            r#"{"cniVersion":"0.1.0","type":"bridge"}"#.into(),
            Reason::InvalidConfig(Problem::UnsupportedCniVersion),
            "$.cniVersion",
        ),
        (
            "huge",
            oversized,
            Reason::InvalidConfig(Problem::TooLarge),
            "$",
        ),
        (
            "untyped-plugin",
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"},{}]}"#.into(),
            Reason::InvalidConfig(Problem::MissingType),
            "$.plugins[1].type",
        ),
        (
            "templated",
            r#"{"cniVersion":"0.3.1","type":"macvlan","master":"{{ node.name }}"}"#.into(),
            Reason::PlaceholderInSpecConfig,
            "spec.config",
        ),
        ("empty", String::new(), Reason::NoConfig, "spec.config"),
    ];
    for (name, config, reason, path) in table {
        let yaml = format!(
            "{CONFIG_ALL_NADS}{}",
            nad("team-x", name, "2026-01-01T00:00:00Z", &config)
        );
        let catalog = catalog_of(&inline(&yaml));
        assert!(
            catalog.attachments.is_empty(),
            "{name} must not be materialized"
        );
        assert_eq!(catalog.rejected.len(), 1, "{name}");
        let finding = &catalog.rejected[0];
        assert_eq!(finding.nad, format!("team-x/{name}"));
        assert_eq!(
            (finding.reason, finding.path.as_str()),
            (reason, path),
            "{name}"
        );
        assert!(
            finding.to_string().starts_with(&format!("team-x/{name}: ")),
            "{finding}"
        );
    }
}

#[test]
fn an_invalid_nad_never_reaches_any_bundle() {
    let inputs = inputs(&["cluster.yaml", "thin-nad.yaml"]);
    for node in ["worker-1", "worker-2"] {
        let rendered = render(&inputs, node).unwrap();
        assert!(
            rendered
                .bundle
                .manifest
                .files
                .iter()
                .all(|f| f.source.as_deref() != Some("team-a/legacy"))
        );
        assert!(!rendered.bundle.data.keys().any(|k| k.contains("legacy")));
    }
}

/// A host-device config asking Multus for a device-info file.
const ASKING_DEVICE_INFO: &str =
    r#"{"cniVersion":"0.3.1","type":"host-device","capabilities":{"CNIDeviceInfoFile":true}}"#;

/// A NAD `ns/name` whose config asks Multus for a device-info file.
fn nad_asking_device_info(ns: &str, name: &str) -> String {
    nad(ns, name, "2026-01-01T00:00:00Z", ASKING_DEVICE_INFO)
}

/// Every lint warning of a catalog, as (NAD, reason).
fn warnings(catalog: &Catalog) -> Vec<(&str, Reason)> {
    catalog
        .warnings
        .iter()
        .map(|w| (w.nad.as_str(), w.reason))
        .collect()
}

#[test]
fn device_info_without_a_resource_name_is_a_warning_not_silence() {
    let with_resource = format!(
        "---\napiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: with-resource\n  namespace: sriov\n  annotations: {{ k8s.v1.cni.cncf.io/resourceName: intel.com/sriov }}\nspec:\n  config: '{ASKING_DEVICE_INFO}'\n"
    );
    let without_resource = nad_asking_device_info("sriov", "no-resource");
    let catalog = catalog_of(&inline(&format!(
        "{CONFIG_ALL_NADS}{without_resource}{with_resource}"
    )));
    assert_eq!(catalog.attachments.len(), 2, "warnings do not block");
    let flagged: Vec<(&str, Reason)> = warnings(&catalog)
        .into_iter()
        .filter(|(_, reason)| *reason == Reason::DeviceInfoWithoutResource)
        .collect();
    assert_eq!(
        flagged,
        vec![("sriov/no-resource", Reason::DeviceInfoWithoutResource)]
    );
}

#[test]
fn a_config_name_that_differs_from_the_nad_name_is_replaced_and_flagged() {
    let yaml = format!(
        "{CONFIG_ALL_NADS}{}{NODE_N1}",
        nad(
            "team-b",
            "fast",
            "2026-01-01T00:00:00Z",
            r#"{"cniVersion":"0.3.1","name":"fast-net","type":"bridge"}"#
        ),
    );
    let inputs = inline(&yaml);
    let catalog = catalog_of(&inputs);
    let warned: Vec<(&str, Reason, &str)> = catalog
        .warnings
        .iter()
        .map(|w| (w.nad.as_str(), w.reason, w.path.as_str()))
        .collect();
    assert_eq!(
        warned,
        vec![("team-b/fast", Reason::NameOverridden, "$.name")]
    );
    let rendered = render(&inputs, "n1").unwrap();
    let (_, text) = rendered
        .bundle
        .manifest
        .files
        .iter()
        .filter(|f| f.role == FileRole::Attachment)
        .map(|f| (f, &rendered.bundle.data[&f.key]))
        .next()
        .expect("the attachment is written");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["name"], "fast", "Multus matches the NAD name");
}

#[test]
fn the_same_input_renders_the_same_bytes_whatever_the_input_order() {
    let first = inputs(&["cluster.yaml", "thin-auto.yaml"]);
    let mut shuffled = inputs(&["cluster.yaml", "thin-auto.yaml"]);
    shuffled.nads.reverse();
    let a = render(&first, "worker-1").unwrap().bundle;
    let b = render(&first, "worker-1").unwrap().bundle;
    let c = render(&shuffled, "worker-1").unwrap().bundle;
    assert_eq!(
        a.to_configmap_data().unwrap(),
        b.to_configmap_data().unwrap()
    );
    assert_eq!(
        a.to_configmap_data().unwrap(),
        c.to_configmap_data().unwrap()
    );
    assert_eq!(a.manifest.bundle_hash, c.manifest.bundle_hash);
}

#[test]
fn spec_errors_stop_the_bundle_with_a_typed_error() {
    let missing_primary = inline(&format!(
        "{}{NODE_N1}",
        config_with_spec("{ primary: { networkAttachment: kube-system/nowhere } }")
    ));
    let err = render(&missing_primary, "n1").unwrap_err();
    assert!(
        matches!(err, RenderError::PrimaryNotFound { ref nad } if nad == "kube-system/nowhere")
    );

    let namespace_mismatch = inline(&format!(
        "{}{NODE_N1}{}",
        config_with_spec(
            "{ primary: { networkAttachment: kube-system/pod }, multus: { multusNamespace: other } }"
        ),
        nad("kube-system", "pod", "2026-01-01T00:00:00Z", BRIDGE),
    ));
    let err = render(&namespace_mismatch, "n1").unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
}

#[test]
fn a_bundle_over_the_configmap_limit_is_refused_naming_the_node() {
    let mut yaml = CONFIG_ALL_NADS.to_string();
    yaml.push_str("---\napiVersion: v1\nkind: Node\nmetadata: { name: big-node }\n");
    let pad = "y".repeat(60 * 1024);
    for i in 0..20 {
        let config = format!(r#"{{"cniVersion":"0.3.1","type":"bridge","pad":"{pad}"}}"#);
        yaml.push_str(&nad(
            "bulk",
            &format!("net-{i}"),
            "2026-01-01T00:00:00Z",
            &config,
        ));
    }
    let err = render(&inline(&yaml), "big-node").unwrap_err();
    assert!(
        matches!(err, RenderError::TooLarge { ref node, .. } if node == "big-node"),
        "{err}"
    );
}

#[test]
fn device_info_is_linted_on_every_nad_multus_may_read_not_only_written_ones() {
    // No attachment selection: nothing is written to nodes, yet Multus reads this inline
    // NAD from the API server when a pod names it.
    let yaml = format!(
        "apiVersion: operator.multus.dev/v1alpha1\nkind: MultusConfig\nmetadata: {{ name: plain }}\nspec: {{ primary: {{ auto: {{}} }} }}\n{}",
        nad_asking_device_info("elsewhere", "devices"),
    );
    let catalog = catalog_of(&inline(&yaml));
    assert!(catalog.attachments.is_empty());
    assert_eq!(
        warnings(&catalog),
        vec![("elsewhere/devices", Reason::DeviceInfoWithoutResource)]
    );
}

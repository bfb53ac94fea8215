//! Unit tests of `bundle`.

use super::*;

fn sample() -> NodeBundle {
    let manifest = BundleManifest {
        format_version: FORMAT_VERSION,
        multus_config: "default".into(),
        node: "node-a".into(),
        mode: Mode::Thin,
        bundle_hash: String::new(),
        files: vec![BundleFile {
            key: "00-multus.conf".into(),
            dir: "/etc/cni/net.d".into(),
            name: "00-multus.conf".into(),
            mode: crate::contract::FileMode::OWNER_RW,
            sha256: String::new(),
            role: FileRole::MultusConfig,
            source: None,
        }],
        primary: PrimaryRule::File {
            dir: "/etc/cni/net.d".into(),
            name: "10-calico.conflist".into(),
        },
        multus_path_prefix: String::new(),
        kubeconfig: None,
        readiness_indicator_file: None,
    };
    let data = BTreeMap::from([("00-multus.conf".to_string(), "{}\n".to_string())]);
    NodeBundle::seal(manifest, data)
}

#[test]
fn short_node_names_give_the_plain_configmap_name() {
    assert_eq!(node_configmap_name("worker-1"), "multus-node-worker-1");
}

#[test]
fn long_node_names_are_truncated_with_a_stable_hash_and_stay_valid() {
    let node = format!("{}.{}", "a".repeat(200), "b".repeat(52));
    let name = node_configmap_name(&node);
    assert_eq!(name.len(), MAX_NAME_LEN);
    assert_eq!(name, node_configmap_name(&node));
    assert_ne!(name, node_configmap_name(&format!("{node}c")));
    let last = name.chars().last().unwrap_or('-');
    assert!(last.is_ascii_alphanumeric());
    assert!(!name.contains(".-") && !name.contains("-."));
}

#[test]
fn a_long_non_ascii_name_is_cut_on_a_character_boundary() {
    let node = "é".repeat(150);
    let name = node_configmap_name(&node);
    assert!(name.len() <= MAX_NAME_LEN, "{}", name.len());
    assert!(name.starts_with("multus-node-é"));
}

#[test]
fn a_sealed_bundle_round_trips_through_configmap_data() {
    let bundle = sample();
    let data = bundle.to_configmap_data().unwrap();
    assert!(data.contains_key(MANIFEST_KEY));
    let back = NodeBundle::from_configmap_data(&data).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(back.manifest.files[0].sha256, sha256_hex("{}\n"));
}

#[test]
fn the_byte_size_is_the_sum_over_the_configmap_data() {
    let bundle = sample();
    let data = bundle.to_configmap_data().unwrap();
    let summed: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(bundle.byte_size().unwrap(), summed);
}

#[test]
fn a_tampered_file_is_refused() {
    let mut data = sample().to_configmap_data().unwrap();
    data.insert("00-multus.conf".into(), "{\"x\":1}".into());
    assert!(matches!(
        NodeBundle::from_configmap_data(&data),
        Err(BundleError::HashMismatch { .. })
    ));
}

#[test]
fn a_newer_format_version_is_refused_with_a_clear_error() {
    let mut data = sample().to_configmap_data().unwrap();
    let manifest = data[MANIFEST_KEY].replace(
        &format!("\"formatVersion\": {FORMAT_VERSION}"),
        "\"formatVersion\": 99",
    );
    data.insert(MANIFEST_KEY.into(), manifest);
    let err = NodeBundle::from_configmap_data(&data).unwrap_err();
    assert!(matches!(err, BundleError::NewerFormat { found: 99 }));
    assert!(err.to_string().contains("upgrade the agent"));
}

#[test]
fn a_contract_value_outside_its_type_refuses_the_bundle_naming_it() {
    let data = sample().to_configmap_data().unwrap();
    for (from, to, named) in [
        (
            "\"mode\": \"0600\"",
            "\"mode\": \"rw-------\"",
            "file mode \"rw-------\"",
        ),
        (
            "\"mode\": \"0600\"",
            "\"mode\": \"0999\"",
            "file mode \"0999\"",
        ),
    ] {
        let mut data = data.clone();
        assert!(data[MANIFEST_KEY].contains(from), "{}", data[MANIFEST_KEY]);
        let manifest = data[MANIFEST_KEY].replace(from, to);
        data.insert(MANIFEST_KEY.into(), manifest);
        let err = NodeBundle::from_configmap_data(&data).unwrap_err();
        assert!(matches!(err, BundleError::ManifestJson(_)), "{err}");
        assert!(err.to_string().contains(named), "{err}");
    }
}

#[test]
fn annotation_keys_keep_the_names_deployed_agents_and_operators_use() {
    let operator = [
        NODE_ANNOTATION,
        BUNDLE_HASH_ANNOTATION,
        REMOVE_ANNOTATION,
        REMOVE_REQUESTED_AT_ANNOTATION,
    ];
    assert_eq!(
        operator.map(|k| k.strip_prefix("operator.multus.dev/")),
        [
            Some("node"),
            Some("bundle-hash"),
            Some("remove"),
            Some("remove-requested-at")
        ]
    );
    let agent = [
        feedback::APPLIED_HASH,
        feedback::APPLIED_AT,
        feedback::STATE,
        feedback::PRIMARY,
        feedback::TOKEN_EXPIRY,
        feedback::LAST_ERROR,
    ];
    assert_eq!(feedback::PREFIX, "agent.operator.multus.dev/");
    assert_eq!(
        agent.map(|k| k.strip_prefix(feedback::PREFIX)),
        [
            Some("applied-hash"),
            Some("applied-at"),
            Some("state"),
            Some("primary"),
            Some("token-expiry"),
            Some("last-error")
        ]
    );
}

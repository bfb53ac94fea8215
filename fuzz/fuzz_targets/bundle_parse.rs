//! Bundle and manifest parsing: what the agent reads from its node's ConfigMap, the
//! contract values inside it, the trust boundary it checks, and the plan it makes.
//!
//! Input: NUL-separated fields: the manifest text, then data keys and values alternating.
//!
//! Properties: a bundle that reads back writes back to the same bundle; any manifest that
//! decodes, once sealed with its files, reads back equal (the operator's writes always
//! pass the agent's reads); contract values print to text that parses to the same value,
//! a refresh point exactly as it was given; a manifest inside the agent's boundary gives a
//! plan inside it, and every CNI file the plan writes passes the check; the offline
//! checker reads back every ConfigMap the operator's `render -o configmap` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use multus_crds::bundle::{BundleManifest, FORMAT_VERSION, MANIFEST_KEY, NodeBundle};
use multus_crds::contract::{FileMode, RefreshBefore};
use multus_node_agent::bounds::{AllowedDirs, DEFAULT_ALLOWED_DIRS};
use multus_node_agent::owned_files::OwnedFiles;
use multus_node_agent::plan::{self, NodeView, PrimaryView, Step, Upstream};

/// A primary config as the agent would find it on the node.
const PRIMARY: &str = r#"{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[{"type":"calico"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let manifest_text = parts.next().unwrap_or_default();
    let mut files = BTreeMap::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        files.insert(k.to_string(), v.to_string());
    }

    contract_values_round_trip(manifest_text);
    for value in files.values() {
        contract_values_round_trip(value);
    }

    // The ConfigMap exactly as given.
    let mut raw = files.clone();
    raw.insert(MANIFEST_KEY.to_string(), manifest_text.to_string());
    if let Ok(bundle) = NodeBundle::from_configmap_data(&raw) {
        read_bundle_holds(&bundle);
    }
    let _ = multus_node_agent::check::check_configmap_yaml(manifest_text);

    // The same manifest as the operator would seal it.
    let Ok(manifest) = serde_json::from_str::<BundleManifest>(manifest_text) else {
        return;
    };
    // The operator writes only its own format; an agent refuses newer ones on purpose.
    if manifest.format_version > FORMAT_VERSION {
        return;
    }
    let listed: BTreeMap<String, String> = manifest
        .files
        .iter()
        .filter(|f| f.key != MANIFEST_KEY)
        .map(|f| {
            (
                f.key.clone(),
                files.get(&f.key).cloned().unwrap_or_default(),
            )
        })
        .collect();
    if listed.len() != manifest.files.len() {
        return;
    }
    let sealed = NodeBundle::seal(manifest, listed);
    let data = sealed.to_configmap_data().expect("a manifest serializes");
    let back = NodeBundle::from_configmap_data(&data)
        .unwrap_or_else(|e| panic!("a sealed bundle is refused: {e}\n{data:?}"));
    assert_eq!(back, sealed);
    read_bundle_holds(&sealed);
    offline_check_agrees(&sealed);
});

fn read_bundle_holds(bundle: &NodeBundle) {
    let data = bundle.to_configmap_data().expect("serializes");
    let again = NodeBundle::from_configmap_data(&data).expect("reads back");
    assert_eq!(&again, bundle);

    let allowed = AllowedDirs::new(&DEFAULT_ALLOWED_DIRS).expect("the defaults are normal");
    let inside = allowed.check_manifest(&bundle.manifest).is_ok();
    let view = NodeView {
        primary: PrimaryView::Found {
            name: "10-calico.conflist".into(),
            text: PRIMARY.into(),
        },
        readiness_ok: true,
        kubeconfig: Some("apiVersion: v1\nkind: Config\n".into()),
        existing: vec![],
        upstream: vec![],
    };
    for upstream in [Upstream::Refuse, Upstream::TakeOver] {
        let plan = plan::plan_apply(bundle, &view, &OwnedFiles::default(), upstream);
        if inside {
            assert!(
                allowed.check_plan(&plan).is_ok(),
                "manifest inside the boundary, plan outside: {:?}",
                bundle.manifest
            );
        }
        for step in &plan.steps {
            if let Step::Write { path, bytes, mode } = step {
                assert!(mode & !0o7777 == 0, "{path}: mode {mode:o}");
                let text = std::str::from_utf8(bytes).expect("written files are text");
                let daemon = bundle.manifest.files.iter().any(|f| {
                    f.role == multus_crds::bundle::FileRole::DaemonConfig
                        && format!("{}/{}", f.dir.trim_end_matches('/'), f.name) == *path
                });
                let kubeconfig = bundle
                    .manifest
                    .kubeconfig
                    .as_ref()
                    .is_some_and(|k| k.path == *path);
                if !daemon && !kubeconfig {
                    assert!(
                        multus_crds::cni::check(text).is_ok(),
                        "plan writes an invalid {path}: {text}"
                    );
                }
            }
        }
    }
}

/// `multus-operator render -o configmap` writes the ConfigMap as YAML and
/// `multus-node-agent check` reads it: it may refuse an invalid CNI file, never the bundle.
fn offline_check_agrees(bundle: &NodeBundle) {
    let configmap =
        multus_operator::configmap::bundle_configmap(bundle, "kube-system").expect("serializes");
    let text = serde_saphyr::to_string(&configmap).expect("a ConfigMap serializes as YAML");
    match multus_node_agent::check::check_configmap_yaml(&text) {
        Ok(report) => assert!(report.contains(&bundle.manifest.bundle_hash)),
        Err(multus_node_agent::check::CheckError::InvalidFile { .. }) => {}
        Err(e) => panic!("check refuses a bundle the operator wrote: {e}\n{text}"),
    }
}

fn contract_values_round_trip(text: &str) {
    if let Ok(mode) = text.parse::<FileMode>() {
        assert!(mode.bits() <= 0o7777, "{text:?}");
        let printed = mode.to_string();
        assert_eq!(printed.parse::<FileMode>().ok(), Some(mode), "{text:?}");
        let json = serde_json::to_string(&mode).expect("serializes");
        assert_eq!(serde_json::from_str::<FileMode>(&json).ok(), Some(mode));
    }
    if let Ok(refresh) = text.parse::<RefreshBefore>() {
        assert_eq!(refresh.to_string(), text, "kept in the form it was given");
        for lifetime in [0, 1, 600, 3600, 86_400 * 365] {
            let before = refresh.seconds(lifetime);
            assert!(before >= 0, "{text:?} over {lifetime}s gives {before}");
        }
        let json = serde_json::to_string(&refresh).expect("serializes");
        assert_eq!(
            serde_json::from_str::<RefreshBefore>(&json).ok(),
            Some(refresh)
        );
    }
}

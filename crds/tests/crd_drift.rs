//! The committed CRD YAML must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(multus_crds::crdgen::YAML_DIR);
    let mut stale = Vec::new();
    for (name, generated) in multus_crds::crdgen::manifests().expect("CRDs serialize") {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if committed != generated {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "these CRD files differ from the Rust types: {stale:?}\n\
         regenerate with `cargo run -p multus-crds --bin crdgen` and commit the result"
    );
}

#[test]
fn the_nad_crd_matches_upstream_names_and_leaves_spec_optional() {
    let crd = multus_crds::crdgen::nad_crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("network-attachment-definitions.k8s.cni.cncf.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec!["net-attach-def".to_string(), "nad".to_string()])
    );
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema present");
    assert!(schema.required.is_none());
}

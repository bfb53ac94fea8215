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

#[test]
fn the_charts_crd_copies_are_byte_identical_to_the_generated_yaml() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated_dir = crate_dir.join(multus_crds::crdgen::YAML_DIR);
    let chart = crate_dir.join("../charts/multus-operator");
    // crds/ holds the MultusConfig CRD (installed by Helm before any template); files/ the
    // NetworkAttachmentDefinition CRD (templated, so that it can be optional).
    let mut copies = Vec::new();
    for sub in ["crds", "files"] {
        let dir = chart.join(sub);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                copies.push((format!("charts/multus-operator/{sub}"), path));
            }
        }
    }
    copies.sort();
    let mut problems = Vec::new();
    let mut copied = std::collections::BTreeSet::new();
    for (dir, path) in &copies {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let copy = std::fs::read(path).expect("read chart copy");
        match std::fs::read(generated_dir.join(&name)) {
            Ok(generated) if generated == copy => {}
            Ok(_) => problems.push(format!(
                "{dir}/{name} differs from crds/yaml/{name}: cp crds/yaml/{name} {dir}/"
            )),
            Err(_) => problems.push(format!(
                "{dir}/{name} has no generated counterpart crds/yaml/{name}; remove it"
            )),
        }
        copied.insert(name);
    }
    for (name, _) in multus_crds::crdgen::manifests().expect("CRDs serialize") {
        if !copied.contains(name) {
            problems.push(format!(
                "crds/yaml/{name} is not in the chart: copy it to charts/multus-operator/crds/ \
                 (or files/ when a template installs it)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the chart's CRD copies are stale:\n  {}\n\
         regenerate with `cargo run -p multus-crds --bin crdgen`, then copy the files as above",
        problems.join("\n  ")
    );
}

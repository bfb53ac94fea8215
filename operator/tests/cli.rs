//! `multus-operator render`, offline, on the sample cluster in `testdata/`.

use clap::Parser;
use multus_operator::cli::{Cli, run};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

/// Runs the CLI in-process; returns (result, stdout, stderr).
fn render(extra: &[&str]) -> (Result<(), String>, String, String) {
    let cluster = format!("{DATA}/cluster.yaml");
    let config = format!("{DATA}/thin-auto.yaml");
    let primary = format!("{DATA}/10-calico.conflist");
    let mut args = vec![
        "multus-operator",
        "render",
        "-f",
        &cluster,
        "-f",
        &config,
        "--primary-file",
        &primary,
    ];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("valid command line");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = run(cli, &mut out, &mut err).map_err(|e| e.to_string());
    (
        result,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[test]
fn render_prints_every_file_of_the_node_with_its_host_path_and_reports_rejections() {
    let (result, out, err) = render(&["--node", "worker-1"]);
    assert_eq!(result, Ok(()));
    for header in [
        "# /etc/cni/net.d/00-multus.conf (mode 0600, completed with primary 10-calico.conflist)",
        "# /etc/cni/multus/net.d/team-a-backplane.conflist (mode 0600",
        "# /etc/cni/multus/net.d/team-a-storage.conf (mode 0600",
        "# /etc/cni/net.d/multus.d/multus.kubeconfig (mode 0600)",
    ] {
        assert!(out.contains(header), "missing {header:?} in:\n{out}");
    }
    // The primary is embedded once, as the only delegate.
    assert_eq!(out.matches("\"k8s-pod-network\"").count(), 1, "{out}");
    assert!(
        err.contains("rejected: team-a/legacy: $.cniVersion"),
        "stderr:\n{err}"
    );
    assert!(!out.contains("legacy"), "a rejected NAD is never printed");
}

#[test]
fn render_leaves_out_an_attachment_whose_label_is_missing_on_that_node_only() {
    let (result, out, err) = render(&["--node", "worker-2"]);
    assert_eq!(result, Ok(()));
    assert!(!out.contains("team-a-storage.conf"), "{out}");
    assert!(out.contains("team-a-backplane.conflist"), "{out}");
    assert!(
        err.contains("not on this node: team-a/storage"),
        "stderr:\n{err}"
    );
}

#[test]
fn render_as_configmap_prints_a_sealed_bundle_for_that_node() {
    let (result, out, _) = render(&["--node", "worker-1", "-o", "configmap"]);
    assert_eq!(result, Ok(()));
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_saphyr::from_str(&out).expect("YAML");
    assert_eq!(cm.metadata.name.as_deref(), Some("multus-node-worker-1"));
    let bundle = multus_crds::bundle::NodeBundle::from_configmap_data(&cm.data.unwrap_or_default())
        .expect("hashes and format version check out");
    assert_eq!(bundle.manifest.node, "worker-1");
}

#[test]
fn render_without_a_node_when_there_are_several_says_which_to_pick() {
    let (result, _, _) = render(&[]);
    let message = result.expect_err("ambiguous node");
    assert!(
        message.contains("worker-1") && message.contains("worker-2"),
        "{message}"
    );
}

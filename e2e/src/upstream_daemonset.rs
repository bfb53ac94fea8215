//! Upstream Multus' thin DaemonSet as its release ships it (`deployments/multus-daemonset.yml`
//! of the module `e2e/testenv/multus` builds, read from the Go module cache), for running it
//! on a [`crate::node::RealNode`] beside ours. Only what a test needs differs from the
//! shipped manifest: the image is the test image (same binaries, same paths), its two host
//! directories live under a scratch root instead of the node's real /etc/cni/net.d and
//! /opt/cni/bin, and its pods run only on nodes with a gate label, so a bench can start and
//! stop them by labelling the node. Arguments, command, init container, resources,
//! privileges and RBAC are upstream's.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::E2eError;
use crate::chart::documents;
use crate::oci::images::MULTUS;

/// The module whose release the test environment builds (`e2e/testenv/multus/go.mod`).
const MODULE: &str = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4";
/// The thin DaemonSet's manifest inside that module.
const MANIFEST: &str = "deployments/multus-daemonset.yml";
/// Where the shipped DaemonSet's pods run, and its pods' label.
pub const NAMESPACE: &str = "kube-system";
pub const POD_SELECTOR: &str = "name=multus";

/// The directory of the Multus module in the Go module cache: `go mod download -json` in
/// `e2e/testenv/multus` names it, downloading the version that go.mod pins when the cache
/// does not have it yet.
pub fn module_dir() -> Result<PathBuf, E2eError> {
    let testenv = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/multus");
    let failed = |why: String| {
        E2eError::Binaries(format!(
            "go mod download -json {MODULE} in {}: {why}",
            testenv.display()
        ))
    };
    let out = Command::new("go")
        .args(["mod", "download", "-json", MODULE])
        .current_dir(&testenv)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let info: Value = serde_json::from_slice(&out.stdout).map_err(|e| failed(e.to_string()))?;
    info["Dir"]
        .as_str()
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| failed("no Dir in its output".into()))
}

/// The shipped manifest's documents, changed only as the module doc says: `root` is the
/// scratch root on the node (its `etc/cni/net.d` and `opt/cni/bin` stand for the node's),
/// `gate` the node label `(key, value)` its pods require.
pub fn thin_daemonset(root: &str, gate: (&str, &str)) -> Result<Vec<Value>, E2eError> {
    let path = module_dir()?.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| E2eError::Io(format!("read {}: {e}", path.display())))?;
    let mut docs = documents(&text)?;
    let daemonset = docs
        .iter_mut()
        .find(|d| d["kind"] == "DaemonSet")
        .ok_or_else(|| E2eError::Io(format!("{} has no DaemonSet", path.display())))?;
    let spec = &mut daemonset["spec"]["template"]["spec"];
    for list in ["containers", "initContainers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            container["image"] = json!(MULTUS);
        }
    }
    let host_dirs = [
        ("cni", format!("{root}/etc/cni/net.d")),
        ("cnibin", format!("{root}/opt/cni/bin")),
    ];
    let volumes = spec["volumes"]
        .as_array_mut()
        .ok_or_else(|| E2eError::Io(format!("{}: the DaemonSet has no volumes", path.display())))?;
    for (name, dir) in host_dirs {
        let volume = volumes
            .iter_mut()
            .find(|v| v["name"] == name && v["hostPath"].is_object())
            .ok_or_else(|| {
                E2eError::Io(format!("{}: no hostPath volume {name}", path.display()))
            })?;
        volume["hostPath"]["path"] = json!(dir);
    }
    spec["nodeSelector"] = json!({ gate.0: gate.1 });
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest is upstream's (command, arguments, init container, privileges), with
    /// only the image, the two host directories and the gate changed.
    #[test]
    fn shipped_thin_daemonset_with_scratch_paths() {
        let docs = thin_daemonset("/scratch", ("gate", "on")).expect("manifest");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "ClusterRole",
                "ClusterRoleBinding",
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet"
            ]
        );
        let ds = docs
            .iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("DaemonSet");
        assert_eq!(ds["metadata"]["namespace"], NAMESPACE);
        let spec = &ds["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        assert_eq!(container["image"], MULTUS);
        assert_eq!(container["command"], json!(["/thin_entrypoint"]));
        assert_eq!(
            container["args"],
            json!([
                "--multus-conf-file=auto",
                "--multus-autoconfig-dir=/host/etc/cni/net.d",
                "--cni-conf-dir=/host/etc/cni/net.d"
            ])
        );
        assert_eq!(container["securityContext"]["privileged"], true);
        assert_eq!(spec["initContainers"][0]["image"], MULTUS);
        assert_eq!(
            spec["initContainers"][0]["command"],
            json!(["/install_multus"])
        );
        let host_path = |name: &str| {
            spec["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == name))
                .map(|v| v["hostPath"]["path"].clone())
        };
        assert_eq!(host_path("cni"), Some(json!("/scratch/etc/cni/net.d")));
        assert_eq!(host_path("cnibin"), Some(json!("/scratch/opt/cni/bin")));
        assert_eq!(spec["nodeSelector"], json!({ "gate": "on" }));
        let pods = POD_SELECTOR.split_once('=').expect("selector");
        assert_eq!(ds["spec"]["template"]["metadata"]["labels"][pods.0], pods.1);
    }
}

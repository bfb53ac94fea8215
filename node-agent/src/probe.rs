//! What a pass reads off the node before planning: the primary CNI config, the readiness
//! indicator file, which target files exist, and which paths the next pass depends on.

use std::collections::BTreeSet;
use std::path::PathBuf;

use multus_crds::bundle::{BundleManifest, FileRole, PrimaryRule};

use crate::hostpath::HostRoot;
use crate::owned_files::OwnedFiles;
use crate::plan::PrimaryView;
use crate::primary;

/// Host paths the bundle writes by name: its files and the kubeconfig.
fn written_paths(manifest: &BundleManifest) -> Vec<String> {
    let mut paths: Vec<String> = manifest
        .files
        .iter()
        .map(|f| format!("{}/{}", f.dir.trim_end_matches('/'), f.name))
        .collect();
    paths.extend(manifest.kubeconfig.as_ref().map(|k| k.path.clone()));
    paths
}

/// Every host file a pass reads or writes by exact name, resolved under the host root.
pub fn files_of_interest(root: &HostRoot, manifest: &BundleManifest) -> BTreeSet<PathBuf> {
    let mut paths = written_paths(manifest);
    paths.extend(manifest.readiness_indicator_file.clone());
    if let PrimaryRule::File { dir, name } = &manifest.primary {
        paths.push(format!("{}/{name}", dir.trim_end_matches('/')));
    }
    paths.iter().filter_map(|p| root.resolve(p).ok()).collect()
}

/// The directories the bundle writes to or reads the primary from, created when missing.
pub fn target_dirs(root: &HostRoot, manifest: &BundleManifest) -> Vec<PathBuf> {
    let mut dirs: Vec<String> = manifest.files.iter().map(|f| f.dir.clone()).collect();
    if let Some(dir) = manifest.primary.node_dir() {
        dirs.push(dir.to_string());
    }
    if let Some(kc) = &manifest.kubeconfig
        && let Some((dir, _)) = kc.path.rsplit_once('/')
    {
        dirs.push(dir.to_string());
    }
    dirs.sort();
    dirs.dedup();
    dirs.iter()
        .filter_map(|d| root.resolve(d).ok())
        .inspect(|d| {
            let _ = std::fs::create_dir_all(d);
        })
        .collect()
}

/// The primary network as the node offers it now.
pub fn primary_view(root: &HostRoot, owned: &OwnedFiles, rule: &PrimaryRule) -> PrimaryView {
    let (dir, name) = match rule {
        PrimaryRule::NetworkAttachment { .. } => return PrimaryView::NotNeeded,
        PrimaryRule::File { dir, name } => (dir, Some(name.clone())),
        PrimaryRule::Auto { dir, exclude } => {
            let Ok(resolved) = root.resolve(dir) else {
                return PrimaryView::Missing;
            };
            match primary::choose_auto(&resolved, dir, owned, exclude) {
                Ok(found) => (dir, found),
                Err(_) => return PrimaryView::Missing,
            }
        }
    };
    let Some(name) = name else {
        return PrimaryView::Missing;
    };
    let path = format!("{}/{name}", dir.trim_end_matches('/'));
    match root.resolve(&path).map(std::fs::read_to_string) {
        Ok(Ok(text)) if !text.trim().is_empty() => PrimaryView::Found { name, text },
        _ => PrimaryView::Missing,
    }
}

/// The readiness indicator file exists (or none is configured).
pub fn readiness_ok(root: &HostRoot, manifest: &BundleManifest) -> bool {
    manifest
        .readiness_indicator_file
        .as_ref()
        .is_none_or(|f| root.resolve(f).is_ok_and(|p| p.exists()))
}

/// The host paths the bundle writes that exist on disk now.
pub fn existing_paths(root: &HostRoot, manifest: &BundleManifest) -> Vec<String> {
    written_paths(manifest)
        .into_iter()
        .filter(|p| root.resolve(p).is_ok_and(|r| r.exists()))
        .collect()
}

/// Name of the kubeconfig upstream's entrypoints write, relative to the CNI config directory.
pub const UPSTREAM_KUBECONFIG: &str = "multus.d/multus.kubeconfig";

/// Files upstream's Multus DaemonSet leaves in the directory of the bundle's Multus config
/// that this agent does not own: every `00-multus*` CNI config there and the kubeconfig its
/// entrypoints write (`multus.d/multus.kubeconfig`). Host paths, sorted.
pub fn upstream_files(
    root: &HostRoot,
    manifest: &BundleManifest,
    owned: &OwnedFiles,
) -> Vec<String> {
    let Some(dir) = manifest
        .files
        .iter()
        .find(|f| f.role == FileRole::MultusConfig)
        .map(|f| f.dir.trim_end_matches('/').to_string())
    else {
        return vec![];
    };
    let Ok(resolved) = root.resolve(&dir) else {
        return vec![];
    };
    let mut found: Vec<String> = std::fs::read_dir(&resolved)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    name.starts_with("00-multus")
                        && [".conf", ".conflist", ".json"]
                            .iter()
                            .any(|ext| name.ends_with(ext))
                })
                .map(|name| format!("{dir}/{name}"))
                .collect()
        })
        .unwrap_or_default();
    let kubeconfig = format!("{dir}/{UPSTREAM_KUBECONFIG}");
    if root.resolve(&kubeconfig).is_ok_and(|p| p.is_file()) {
        found.push(kubeconfig);
    }
    found.retain(|p| !owned.owns(p));
    found.sort();
    found
}

//! Offline check of a node bundle ConfigMap: the same checks the agent runs before it writes
//! anything (format version, hashes, every CNI config valid).

use k8s_openapi::api::core::v1::ConfigMap;
use std::fmt::Write as _;

use multus_crds::bundle::{BundleError, FileRole, NodeBundle};
use multus_crds::cni;

/// Why a bundle would not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("not a ConfigMap: {0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("the ConfigMap has no data")]
    NoData,
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{key} is not a valid CNI config: {message}")]
    InvalidFile { key: String, message: String },
}

/// Checks a ConfigMap given as YAML; returns a short report of what would be written.
pub fn check_configmap_yaml(text: &str) -> Result<String, CheckError> {
    let cm: ConfigMap = serde_saphyr::from_str(text)?;
    let data = cm.data.ok_or(CheckError::NoData)?;
    let bundle = NodeBundle::from_configmap_data(&data)?;
    let mut report = format!(
        "bundle {} for node {} from MultusConfig {}: {} files\n",
        bundle.manifest.bundle_hash,
        bundle.manifest.node,
        bundle.manifest.multus_config,
        bundle.manifest.files.len()
    );
    for file in &bundle.manifest.files {
        let text = bundle
            .data
            .get(&file.key)
            .map(String::as_str)
            .unwrap_or_default();
        if file.role != FileRole::DaemonConfig {
            cni::check(text).map_err(|errors| CheckError::InvalidFile {
                key: file.key.clone(),
                message: cni::describe(&errors),
            })?;
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            report,
            "  {}/{} (mode {}, {} bytes)",
            file.dir,
            file.name,
            file.mode,
            text.len()
        );
    }
    Ok(report)
}

//! The node bundle contract between operator and agent: ConfigMap `multus-node-<node>` holds
//! one data key per file plus a manifest saying where each file lands and how.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::multus_config::{Mode, ServiceAccountRef};

/// Declares annotation keys that share one prefix, written once: every key is the prefix
/// followed by its own suffix, so the prefix has one spelling and no key can drift outside
/// it (the agent's feedback keys are found by that prefix, `feedback::PREFIX`).
/// `pub NAME = "prefix";` also exports the prefix; `prefix "prefix";` does not.
macro_rules! annotation_keys {
    (prefix $prefix:literal; $($(#[$doc:meta])* $name:ident = $suffix:literal;)+) => {
        $($(#[$doc])* pub const $name: &str = concat!($prefix, $suffix);)+
    };
    ($(#[$doc:meta])* pub $prefix_name:ident = $prefix:literal; $($keys:tt)+) => {
        $(#[$doc])* pub const $prefix_name: &str = $prefix;
        annotation_keys!(prefix $prefix; $($keys)+);
    };
}

pub mod feedback;

pub use feedback::AgentState;

/// The manifest format this build writes and understands. An agent refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;
/// Data key of the manifest inside the ConfigMap.
pub const MANIFEST_KEY: &str = "manifest.json";
/// Upper bound for the summed size of a bundle's data, below the 1 MiB object limit so the
/// metadata and agent annotations still fit.
pub const MAX_BUNDLE_BYTES: usize = 900 * 1024;

/// Name prefix of node ConfigMaps.
pub const CONFIGMAP_PREFIX: &str = "multus-node-";
/// Longest object name the API server accepts for a ConfigMap.
const MAX_NAME_LEN: usize = 253;
/// Label every bundle ConfigMap carries (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "multus-operator";

/// File name of the Multus config for cniVersion < 1.0.0.
pub const MULTUS_CONF_NAME: &str = "00-multus.conf";
/// File name of the Multus config for cniVersion >= 1.0.0.
pub const MULTUS_CONFLIST_NAME: &str = "00-multus.conflist";
/// File name of the multus-daemon configuration in thick mode.
pub const DAEMON_CONFIG_NAME: &str = "daemon-config.json";

// The annotations the operator writes on a bundle ConfigMap; the agent's own are in the
// `feedback` module.
annotation_keys! {
    prefix "operator.multus.dev/";
    /// Annotation holding the node name (labels cannot hold 253 characters).
    NODE_ANNOTATION = "node";
    /// Annotation repeating the manifest's `bundleHash`, so that the operator can follow its
    /// ConfigMaps by metadata alone instead of keeping every node's bundle in memory.
    BUNDLE_HASH_ANNOTATION = "bundle-hash";
    /// Set by the operator when the node's files must be removed (node no longer selected, or
    /// the MultusConfig is being deleted). The agent removes what it owns and reports
    /// [`AgentState::Removed`]; the operator then deletes the ConfigMap.
    REMOVE_ANNOTATION = "remove";
    /// RFC 3339 time the removal was first requested, for the cleanup timeout.
    REMOVE_REQUESTED_AT_ANNOTATION = "remove-requested-at";
}

/// The manifest stored under [`MANIFEST_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleManifest {
    pub format_version: u32,
    /// The MultusConfig this bundle comes from.
    pub multus_config: String,
    pub node: String,
    pub mode: Mode,
    /// Hash over everything below and every file's bytes; the agent reports it back.
    pub bundle_hash: String,
    /// Sorted by data key.
    pub files: Vec<BundleFile>,
    pub primary: PrimaryRule,
    /// Prefix under which Multus sees host paths: empty in thin mode, the daemon's host mount
    /// (`/host`) in thick mode. Used when completing the config with a node file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub multus_path_prefix: String,
    /// Absent when the kubeconfig is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigSettings>,
    /// A file the agent waits for before writing the Multus config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_indicator_file: Option<String>,
}

/// One file of the bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleFile {
    /// ConfigMap data key holding the bytes.
    pub key: String,
    /// Absolute host directory.
    pub dir: String,
    /// File name inside `dir`.
    pub name: String,
    /// Permission bits, octal text such as `0600` on the wire.
    pub mode: crate::contract::FileMode,
    /// sha256 of the bytes under `key`, hex.
    pub sha256: String,
    pub role: FileRole,
    /// For attachments, the NAD as `<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What a file is for; decides how the agent treats it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum FileRole {
    /// The `00-multus` config. When the primary is a node file, the agent completes it with
    /// the chosen primary (see [`crate::completion`]) before writing.
    MultusConfig,
    /// The multus-daemon configuration (thick mode).
    DaemonConfig,
    /// A file-backed delegate in `multusConfDir`.
    Attachment,
}

/// How the agent finds the primary network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PrimaryRule {
    /// Chosen on the node; the rules live in one place, the agent's `primary` module
    /// (`node-agent/src/primary.rs`): the first `.conf`/`.conflist`/`.json` in `dir`
    /// (lexical order) that the agent does not own, whose name does not start with
    /// `00-multus`, that is not hidden or a temp file, and that matches no `exclude` pattern.
    Auto { dir: String, exclude: Vec<String> },
    /// A named file in `dir`.
    File { dir: String, name: String },
    /// A NetworkAttachmentDefinition; the Multus config is complete as rendered.
    NetworkAttachment { namespace: String, name: String },
}

impl PrimaryRule {
    /// Whether the agent completes the Multus config from a file on the node.
    pub fn needs_node_file(&self) -> bool {
        !matches!(self, PrimaryRule::NetworkAttachment { .. })
    }

    /// The host directory the primary is read from; `None` for a NAD primary.
    pub fn node_dir(&self) -> Option<&str> {
        match self {
            PrimaryRule::Auto { dir, .. } | PrimaryRule::File { dir, .. } => Some(dir),
            PrimaryRule::NetworkAttachment { .. } => None,
        }
    }
}

/// Everything the agent needs to write the host kubeconfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSettings {
    /// Absolute host path of the kubeconfig file.
    pub path: String,
    pub service_account: ServiceAccountRef,
    pub expiration_seconds: i64,
    /// A percentage (`20%`) or a duration (`10m`) before expiry.
    pub refresh_before_expiry: crate::contract::RefreshBefore,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
}

/// A bundle as it travels: the manifest and the bytes of each file by data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBundle {
    pub manifest: BundleManifest,
    pub data: BTreeMap<String, String>,
}

/// Errors reading a bundle back from ConfigMap data.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle has no {MANIFEST_KEY}")]
    MissingManifest,
    #[error("bundle manifest is not valid JSON: {0}")]
    ManifestJson(#[source] serde_json::Error),
    #[error(
        "bundle format version {found} is newer than this agent understands ({FORMAT_VERSION}); upgrade the agent"
    )]
    NewerFormat { found: u32 },
    #[error("bundle manifest lists {key} but the ConfigMap has no such key")]
    MissingFile { key: String },
    #[error("bundle file {key} does not match its sha256 in the manifest")]
    HashMismatch { key: String },
    #[error("bundle hash does not match its contents")]
    BundleHashMismatch,
}

impl NodeBundle {
    /// Builds a bundle, filling in each file's sha256 and the bundle hash.
    pub fn seal(mut manifest: BundleManifest, data: BTreeMap<String, String>) -> NodeBundle {
        for file in &mut manifest.files {
            file.sha256 = data.get(&file.key).map(sha256_hex).unwrap_or_default();
        }
        manifest.files.sort_by(|a, b| a.key.cmp(&b.key));
        manifest.bundle_hash = bundle_hash(&manifest, &data);
        NodeBundle { manifest, data }
    }

    /// ConfigMap data: every file plus the manifest.
    pub fn to_configmap_data(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        let mut data = self.data.clone();
        let mut manifest = serde_json::to_string_pretty(&self.manifest)?;
        manifest.push('\n');
        data.insert(MANIFEST_KEY.to_string(), manifest);
        Ok(data)
    }

    /// Summed size of keys and values, as the API server counts them (the same sum as over
    /// [`NodeBundle::to_configmap_data`], without copying the files).
    pub fn byte_size(&self) -> Result<usize, serde_json::Error> {
        let manifest = serde_json::to_string_pretty(&self.manifest)?.len() + 1;
        let files: usize = self
            .data
            .iter()
            .filter(|(k, _)| k.as_str() != MANIFEST_KEY)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        Ok(files + MANIFEST_KEY.len() + manifest)
    }

    /// Reads and checks a bundle from ConfigMap data.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<NodeBundle, BundleError> {
        let raw = data.get(MANIFEST_KEY).ok_or(BundleError::MissingManifest)?;
        // Look at the version alone first, so a newer format is refused with a clear message
        // rather than a parse error about a field this build does not know.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_str(raw).map_err(BundleError::ManifestJson)?;
        if version.format_version > FORMAT_VERSION {
            return Err(BundleError::NewerFormat {
                found: version.format_version,
            });
        }
        let manifest: BundleManifest =
            serde_json::from_str(raw).map_err(BundleError::ManifestJson)?;
        let mut files = BTreeMap::new();
        for file in &manifest.files {
            let bytes = data
                .get(&file.key)
                .ok_or_else(|| BundleError::MissingFile {
                    key: file.key.clone(),
                })?;
            if sha256_hex(bytes) != file.sha256 {
                return Err(BundleError::HashMismatch {
                    key: file.key.clone(),
                });
            }
            files.insert(file.key.clone(), bytes.clone());
        }
        if bundle_hash(&manifest, &files) != manifest.bundle_hash {
            return Err(BundleError::BundleHashMismatch);
        }
        Ok(NodeBundle {
            manifest,
            data: files,
        })
    }

    /// The file with the given role, if any.
    pub fn file(&self, role: FileRole) -> Option<(&BundleFile, &str)> {
        self.manifest
            .files
            .iter()
            .find(|f| f.role == role)
            .and_then(|f| self.data.get(&f.key).map(|b| (f, b.as_str())))
    }
}

/// sha256 of some bytes, lowercase hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// The bundle hash: the manifest with an empty `bundleHash`, then every file's key and bytes.
fn bundle_hash(manifest: &BundleManifest, data: &BTreeMap<String, String>) -> String {
    let mut unsealed = manifest.clone();
    unsealed.bundle_hash = String::new();
    let mut hasher = Sha256::new();
    // Serializing a plain struct of strings and vectors cannot fail.
    hasher.update(serde_json::to_vec(&unsealed).unwrap_or_default());
    for (key, bytes) in data {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Name of a node's bundle ConfigMap: `multus-node-<node>`, or a truncated name with a hash
/// suffix when that would exceed the 253-character limit.
pub fn node_configmap_name(node: &str) -> String {
    let full = format!("{CONFIGMAP_PREFIX}{node}");
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let hash = &sha256_hex(node)[..10];
    let mut keep = MAX_NAME_LEN - hash.len() - 1;
    // Node names from the API are ASCII, but a name typed on a command line may not be.
    while !full.is_char_boundary(keep) {
        keep -= 1;
    }
    let prefix = full[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

#[cfg(test)]
mod tests;

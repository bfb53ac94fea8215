//! The pure plan: desired bundle + what the node offers (primary, readiness, token) + what
//! the agent owns -> ordered writes and removals, and the state to report.

use std::collections::BTreeMap;

use multus_crds::bundle::{AgentState, FileRole, NodeBundle, PrimaryRule};
use multus_crds::cni;
use multus_crds::completion::{Primary, complete_multus_config};

use crate::owned_files::OwnedFiles;

/// The primary network as found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryView {
    /// The bundle's primary is a NAD; no node file is needed.
    NotNeeded,
    /// No candidate file (yet).
    Missing,
    /// The chosen file and its content.
    Found { name: String, text: String },
}

/// What the node offers right now.
#[derive(Clone)]
pub struct NodeView {
    pub primary: PrimaryView,
    /// The readiness indicator file exists (or none is configured).
    pub readiness_ok: bool,
    /// The rendered host kubeconfig, when a verified token is at hand.
    pub kubeconfig: Option<String>,
    /// Host paths that exist on disk now.
    pub existing: Vec<String>,
    /// Files upstream's Multus DaemonSet leaves that this agent does not own and would
    /// replace (see [`crate::probe::upstream_files`]).
    pub upstream: Vec<String>,
}

// The kubeconfig holds a token: Debug output shows sizes, never contents.
impl std::fmt::Debug for NodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeView")
            .field("primary", &self.primary)
            .field("readiness_ok", &self.readiness_ok)
            .field(
                "kubeconfig",
                &self.kubeconfig.as_ref().map(|k| Redacted(k.len())),
            )
            .field("existing", &self.existing)
            .field("upstream", &self.upstream)
            .finish()
    }
}

/// One file operation, on a host path.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    Write {
        path: String,
        bytes: Vec<u8>,
        mode: u32,
    },
    Remove {
        path: String,
    },
    /// Copies a file this agent is about to replace into the backup directory.
    Backup {
        path: String,
    },
}

impl Step {
    /// The host path the step acts on.
    pub fn path(&self) -> &str {
        match self {
            Step::Write { path, .. } | Step::Remove { path } | Step::Backup { path } => path,
        }
    }
}

/// What to do with the files upstream's Multus DaemonSet left on the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Upstream {
    /// Touch nothing and report `Failed`, naming the setting that allows the take-over.
    #[default]
    Refuse,
    /// Back them up, replace them, and remove the ones the bundle has no file for.
    TakeOver,
}

/// The chart value and the agent flag that allow the take-over, for messages.
pub const TAKE_OVER_HINT: &str = "set the chart value agent.takeOverUpstream=true (agent flag --take-over-upstream) to replace it, keeping a backup, or delete it";

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Write { path, bytes, mode } => f
                .debug_struct("Write")
                .field("path", path)
                .field("bytes", &Redacted(bytes.len()))
                .field("mode", &format_args!("{mode:o}"))
                .finish(),
            Step::Remove { path } => f.debug_struct("Remove").field("path", path).finish(),
            Step::Backup { path } => f.debug_struct("Backup").field("path", path).finish(),
        }
    }
}

/// Stands for content left out of Debug output (a file may hold a token).
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// The plan and what to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub state: AgentState,
    /// The primary file chosen, for the report.
    pub primary: Option<String>,
    /// Why nothing (more) is written, when that is the case.
    pub message: Option<String>,
}

/// Order of removal: the Multus config first (kubelet falls back to the primary), then the
/// attachments, then the daemon config, then the kubeconfig.
fn removal_rank(path: &str, roles: &BTreeMap<String, FileRole>, kubeconfig: Option<&str>) -> u8 {
    match roles.get(path) {
        Some(FileRole::MultusConfig) => 0,
        Some(FileRole::Attachment) => 1,
        Some(FileRole::DaemonConfig) => 2,
        None if Some(path) == kubeconfig => 4,
        None if is_multus_config_name(path) => 0,
        None => 3,
    }
}

/// A `00-multus*` CNI config name.
fn is_multus_config_name(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("00-multus"))
}

fn host_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// Removes every owned file, in the documented order.
pub fn plan_removal(bundle: Option<&NodeBundle>, owned: &OwnedFiles) -> Plan {
    let roles: BTreeMap<String, FileRole> = bundle
        .map(|b| {
            b.manifest
                .files
                .iter()
                .map(|f| (host_path(&f.dir, &f.name), f.role))
                .collect()
        })
        .unwrap_or_default();
    let kubeconfig = bundle.and_then(|b| b.manifest.kubeconfig.as_ref().map(|k| k.path.as_str()));
    let mut paths: Vec<&String> = owned.files.iter().collect();
    paths.sort_by_key(|p| (removal_rank(p, &roles, kubeconfig), (*p).clone()));
    Plan {
        steps: paths
            .into_iter()
            .map(|p| Step::Remove { path: p.clone() })
            .collect(),
        state: AgentState::Removed,
        primary: None,
        message: None,
    }
}

/// Plans applying a bundle. Files upstream's DaemonSet left (`view.upstream`) are taken
/// over only with [`Upstream::TakeOver`]: each is backed up before anything is written,
/// replaced in place by an atomic rename, and removed only after the new Multus config is
/// in place, so the node always has a Multus config.
pub fn plan_apply(
    bundle: &NodeBundle,
    view: &NodeView,
    owned: &OwnedFiles,
    upstream: Upstream,
) -> Plan {
    let manifest = &bundle.manifest;
    let waiting = |message: String, primary: Option<String>| Plan {
        steps: vec![],
        state: AgentState::WaitingForPrimary,
        primary,
        message: Some(message),
    };
    let failed = |message: String, primary: Option<String>| Plan {
        steps: vec![],
        state: AgentState::Failed,
        primary,
        message: Some(message),
    };

    let (primary_dir, primary_name, primary_text) = match (&manifest.primary, &view.primary) {
        (PrimaryRule::NetworkAttachment { .. }, _) => (String::new(), None, None),
        (
            PrimaryRule::Auto { dir, .. } | PrimaryRule::File { dir, .. },
            PrimaryView::Found { name, text },
        ) => (dir.clone(), Some(name.clone()), Some(text.clone())),
        (PrimaryRule::Auto { dir, .. }, _) => {
            return waiting(format!("waiting for a primary CNI config in {dir}"), None);
        }
        (PrimaryRule::File { dir, name }, _) => {
            return waiting(
                format!("waiting for the primary CNI config {dir}/{name}"),
                None,
            );
        }
    };
    if !view.readiness_ok {
        let file = manifest
            .readiness_indicator_file
            .clone()
            .unwrap_or_default();
        return waiting(
            format!("waiting for the readiness indicator file {file}"),
            primary_name,
        );
    }

    // Desired files in write order: kubeconfig, attachments, daemon config, Multus config
    // last, so the Multus config never points at something missing.
    let mut desired: Vec<(u8, String, Vec<u8>)> = Vec::new();
    if let Some(kc) = &manifest.kubeconfig {
        match &view.kubeconfig {
            Some(text) => desired.push((0, kc.path.clone(), text.clone().into_bytes())),
            None => {
                return failed(
                    "no verified ServiceAccount token yet for the host kubeconfig".into(),
                    primary_name,
                );
            }
        }
    }
    for file in &manifest.files {
        let Some(text) = bundle.data.get(&file.key) else {
            return failed(format!("bundle has no data for {}", file.key), primary_name);
        };
        let path = host_path(&file.dir, &file.name);
        let (rank, bytes) = match file.role {
            FileRole::Attachment => (1, text.clone()),
            FileRole::DaemonConfig => (2, text.clone()),
            FileRole::MultusConfig => {
                let bytes = match (&primary_name, &primary_text) {
                    (Some(name), Some(primary)) => match complete_multus_config(
                        text,
                        manifest.mode,
                        &manifest.multus_path_prefix,
                        Primary {
                            dir: &primary_dir,
                            name,
                            text: primary,
                        },
                    ) {
                        Ok(done) => done,
                        Err(e) => return waiting(e.to_string(), primary_name.clone()),
                    },
                    _ => text.clone(),
                };
                (3, bytes)
            }
        };
        if file.role != FileRole::DaemonConfig
            && let Err(errors) = cni::check(&bytes)
        {
            return failed(
                format!(
                    "refusing to write invalid {path}: {}",
                    cni::describe(&errors)
                ),
                primary_name,
            );
        }
        // multus-daemon refuses to start on a daemon config that is not a JSON object.
        if file.role == FileRole::DaemonConfig
            && !serde_json::from_str::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_object())
        {
            return failed(
                format!("refusing to write {path}: not a JSON object"),
                primary_name,
            );
        }
        desired.push((rank, path, bytes.into_bytes()));
    }
    desired.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));

    let taken: Vec<&String> = match upstream {
        Upstream::TakeOver => view.upstream.iter().filter(|p| !owned.owns(p)).collect(),
        Upstream::Refuse => vec![],
    };
    let blocked: Vec<&String> = desired
        .iter()
        .map(|(_, path, _)| path)
        .filter(|p| view.existing.contains(p) && !owned.owns(p) && !taken.contains(p))
        .collect();
    if let Some(path) = blocked.iter().find(|p| !view.upstream.contains(p)) {
        return failed(
            format!(
                "refusing to overwrite {path}: it exists and was not written by this agent (left by another installer? remove it to hand it over)"
            ),
            primary_name,
        );
    }
    if !blocked.is_empty() {
        let paths: Vec<&str> = blocked.iter().map(|p| p.as_str()).collect();
        return failed(
            format!(
                "refusing to overwrite {}: upstream's Multus DaemonSet left them and this agent did not write them; {TAKE_OVER_HINT}",
                paths.join(", ")
            ),
            primary_name,
        );
    }
    // An upstream Multus config under another name (00-multus.conf beside our
    // 00-multus.conflist) would sort first and stay in charge: refused as well.
    if upstream == Upstream::Refuse
        && let Some(path) = view
            .upstream
            .iter()
            .find(|p| !owned.owns(p) && is_multus_config_name(p))
    {
        return failed(
            format!(
                "refusing to leave {path} in charge: upstream's Multus config sorts before this agent's; {TAKE_OVER_HINT}"
            ),
            primary_name,
        );
    }

    let mut steps: Vec<Step> = taken
        .iter()
        .map(|p| Step::Backup { path: (*p).clone() })
        .collect();
    steps.extend(desired.iter().map(|(_, path, bytes)| Step::Write {
        path: path.clone(),
        bytes: bytes.clone(),
        mode: parse_mode(path, manifest),
    }));
    // Taken-over files the bundle has no file for go after the writes: the Multus config
    // first, as on removal.
    let mut leftovers: Vec<&String> = taken
        .into_iter()
        .filter(|p| !desired.iter().any(|(_, d, _)| d == *p))
        .collect();
    leftovers.sort_by_key(|p| (!is_multus_config_name(p), (*p).clone()));
    steps.extend(
        leftovers
            .into_iter()
            .map(|p| Step::Remove { path: p.clone() }),
    );
    // Owned files the bundle no longer has (a deleted NAD, a mode change).
    let wanted: Vec<&String> = desired.iter().map(|(_, p, _)| p).collect();
    let roles: BTreeMap<String, FileRole> = BTreeMap::new();
    let mut stale: Vec<&String> = owned.files.iter().filter(|p| !wanted.contains(p)).collect();
    stale.sort_by_key(|p| (removal_rank(p, &roles, None), (*p).clone()));
    steps.extend(stale.into_iter().map(|p| Step::Remove { path: p.clone() }));
    Plan {
        steps,
        state: AgentState::Applied,
        primary: primary_name,
        message: None,
    }
}

fn parse_mode(path: &str, manifest: &multus_crds::bundle::BundleManifest) -> u32 {
    manifest
        .files
        .iter()
        .find(|f| host_path(&f.dir, &f.name) == path)
        .map(|f| f.mode.bits())
        .unwrap_or(0o600)
}

//! The filesystem side of a pass, run on tokio's blocking pool so that the runtime's own
//! thread only ever waits on the network and on timers: what the agent keeps about the host
//! between passes, and the two disk steps of a pass (before and after the token request).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use multus_crds::bundle::{AgentState, BundleError, NodeBundle};

use crate::bounds::BoundsError;
use crate::fsops;
use crate::host_files::{ApplyError, HostFiles};
use crate::hostpath::HostRoot;
use crate::metrics::Metrics;
use crate::owned_files::OwnedFiles;
use crate::plan::{self, NodeView, Upstream};
use crate::probe;
use crate::wake::Interest;

use super::{AgentError, Settings};

/// Runs `f` on the blocking pool and waits for it. A panic in `f` carries on here as if
/// `f` had run inline; `None` only when the runtime is shutting down.
pub(super) async fn off_runtime<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Some(value),
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(_) => None,
        },
    }
}

/// Why a pass does not apply a bundle: reported on its ConfigMap; files stay as they are.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    #[error(
        "the state file {state} is inside {dir}, a directory the bundle writes to; set --state-file outside every CNI directory"
    )]
    StateFileInside { state: String, dir: String },
}

/// What the agent keeps about the host between passes. One pass runs at a time, so its
/// lock is never contended; it only lets a blocking step borrow the state.
pub(super) struct Host {
    root: HostRoot,
    /// The owned-files record, resolved.
    state_file: PathBuf,
    owned: OwnedFiles,
    /// sha256 per host path of what this run last wrote (see [`HostFiles`]).
    last_written: BTreeMap<String, String>,
    /// Directories already swept for stale temp files in this run.
    swept: Vec<PathBuf>,
    /// The backup directory, resolved, when taking over upstream's files.
    backup_dir: Option<PathBuf>,
}

/// A bundle a pass may apply, read and checked, with the directories it touches.
pub(super) struct Prepared {
    pub bundle: NodeBundle,
    pub dirs: Vec<PathBuf>,
    /// The host kubeconfig this agent wrote earlier, when asked for (token adoption).
    pub kubeconfig_on_disk: Option<String>,
}

/// What the disk side of a pass did.
pub(super) struct Applied {
    pub state: AgentState,
    /// The plan's message, or the error that stopped it.
    pub message: String,
    pub primary: Option<String>,
    /// Whether a file operation failed (the pass is retried after a back-off).
    pub disk_error: bool,
    /// The paths whose changes should start the next pass.
    pub interest: Interest,
}

impl Host {
    /// Resolves the host paths of `settings` and loads the owned-files record.
    pub fn load(settings: &Settings) -> Result<Host, AgentError> {
        let root = HostRoot::new(&settings.host_root);
        let resolve = |flag, path: &str| {
            root.resolve(path)
                .map_err(|source| AgentError::HostPath { flag, source })
        };
        let state_file = resolve("--state-file", &settings.state_path)?;
        let owned = OwnedFiles::load(&state_file)?;
        let backup_dir = match settings.upstream {
            Upstream::TakeOver => Some(resolve("--backup-dir", &settings.backup_dir)?),
            Upstream::Refuse => None,
        };
        Ok(Host {
            root,
            state_file,
            owned,
            last_written: BTreeMap::new(),
            swept: Vec::new(),
            backup_dir,
        })
    }

    /// The lock of a shared `Host`. A pass that panicked stopped the agent already, so a
    /// poisoned lock is never seen in practice; its state is used as it stands.
    pub fn lock(host: &Mutex<Host>) -> MutexGuard<'_, Host> {
        host.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and checks the bundle in `data`, creates its directories and sweeps them of
    /// stale temp files.
    pub fn prepare(
        &mut self,
        data: &BTreeMap<String, String>,
        settings: &Settings,
        read_kubeconfig: bool,
    ) -> Result<Prepared, Refusal> {
        let bundle = NodeBundle::from_configmap_data(data)?;
        // The boundary comes first: nothing outside it is created, read or written.
        settings.allowed.check_manifest(&bundle.manifest)?;
        let dirs = probe::target_dirs(&self.root, &bundle.manifest);
        // Only an interrupted write leaves a temp file, and interruption means a restart:
        // each directory is swept once per run, not on every pass.
        for dir in &dirs {
            if !self.swept.contains(dir) {
                let _ = fsops::remove_stale_temps(dir);
                self.swept.push(dir.clone());
            }
        }
        // libcni loads every *.json of the conf dir: the record of owned files must live
        // outside every directory the bundle writes to.
        if let Some(dir) = dirs.iter().find(|d| self.state_file.starts_with(d)) {
            return Err(Refusal::StateFileInside {
                state: settings.state_path.clone(),
                dir: dir.display().to_string(),
            });
        }
        // Only a kubeconfig this agent wrote is a candidate for adoption.
        let kubeconfig_on_disk = bundle
            .manifest
            .kubeconfig
            .as_ref()
            .filter(|k| read_kubeconfig && self.owned.owns(&k.path))
            .and_then(|k| self.root.resolve(&k.path).ok())
            .and_then(|path| std::fs::read_to_string(path).ok());
        Ok(Prepared {
            bundle,
            dirs,
            kubeconfig_on_disk,
        })
    }

    /// Plans against what the node offers now and carries the plan out: the removal of
    /// every owned file when `removal`, the bundle otherwise (with `kubeconfig`, the host
    /// kubeconfig when a token is at hand).
    pub fn apply(
        &mut self,
        prepared: &Prepared,
        removal: bool,
        kubeconfig: Option<String>,
        settings: &Settings,
        metrics: &Metrics,
    ) -> Result<Applied, Refusal> {
        let bundle = &prepared.bundle;
        let plan = if removal {
            plan::plan_removal(Some(bundle), &self.owned)
        } else {
            let manifest = &bundle.manifest;
            let view = NodeView {
                primary: probe::primary_view(&self.root, &self.owned, &manifest.primary),
                readiness_ok: probe::readiness_ok(&self.root, manifest),
                kubeconfig,
                existing: probe::existing_paths(&self.root, manifest),
                upstream: probe::upstream_files(&self.root, manifest, &self.owned),
            };
            plan::plan_apply(bundle, &view, &self.owned, settings.upstream)
        };
        settings.allowed.check_plan(&plan)?;
        let mut host = HostFiles {
            root: &self.root,
            owned: &mut self.owned,
            state_file: &self.state_file,
            last_written: &mut self.last_written,
            backup_dir: self.backup_dir.as_deref(),
        };
        let executed: Result<(), ApplyError> = host.execute(&plan, metrics);
        let (state, message) = match &executed {
            Err(e) => (AgentState::Failed, e.to_string()),
            Ok(()) => (plan.state, plan.message.clone().unwrap_or_default()),
        };
        Ok(Applied {
            state,
            message,
            primary: plan.primary,
            disk_error: executed.is_err(),
            interest: Interest {
                dirs: prepared.dirs.iter().cloned().collect(),
                files: probe::files_of_interest(&self.root, &bundle.manifest),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &std::path::Path) -> Settings {
        Settings {
            node: "n1".into(),
            namespace: "multus-system".into(),
            host_root: root.to_path_buf(),
            state_path: crate::owned_files::DEFAULT_STATE_PATH.into(),
            kubeconfig: None,
            allowed: crate::bounds::AllowedDirs::new(&crate::bounds::DEFAULT_ALLOWED_DIRS)
                .expect("the default directories are allowed"),
            upstream: Upstream::Refuse,
            backup_dir: crate::cli::DEFAULT_BACKUP_DIR.into(),
        }
    }

    #[test]
    fn an_undecodable_bundle_is_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = settings(dir.path());
        let mut host = Host::load(&settings).expect("load");
        let data = BTreeMap::from([("manifest.json".to_string(), "{".to_string())]);
        let refused = host.prepare(&data, &settings, true).err();
        assert!(matches!(refused, Some(Refusal::Bundle(_))), "{refused:?}");
        assert!(!dir.path().join("etc").exists(), "no directory created");
    }

    #[tokio::test]
    async fn a_panic_on_the_blocking_pool_carries_on_in_the_caller() {
        let caught = tokio::spawn(off_runtime(|| -> u8 { panic!("boom") })).await;
        assert!(caught.is_err_and(|e| e.is_panic()));
        assert_eq!(off_runtime(|| 7).await, Some(7));
    }
}

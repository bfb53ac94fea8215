//! Carries out a plan on the host: each step resolved under the host root, ownership
//! recorded before a write and dropped after a removal.

use std::collections::BTreeMap;
use std::path::Path;

use multus_crds::bundle::sha256_hex;

use crate::fsops::{self, FsError, WriteOutcome};
use crate::hostpath::{HostRoot, PathError};
use crate::metrics::Metrics;
use crate::owned_files::{OwnedFiles, StateError};
use crate::plan::{Plan, Step};

/// A step that could not be carried out. The pass stops there; the next pass retries.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot back up {0}: the agent runs without --take-over-upstream")]
    NoBackupDir(String),
}

/// The host side of the agent: where files go and which of them it owns.
pub struct HostFiles<'a> {
    pub root: &'a HostRoot,
    pub owned: &'a mut OwnedFiles,
    pub state_file: &'a Path,
    /// sha256 of what this run last wrote (or found in place) per host path. Having to write
    /// the same content again means someone changed the file.
    pub last_written: &'a mut BTreeMap<String, String>,
    /// Where [`Step::Backup`] copies go (resolved), below it by their host paths.
    pub backup_dir: Option<&'a Path>,
}

impl HostFiles<'_> {
    /// Runs the steps in order. Rewriting a file that someone else edited or deleted since
    /// the agent last wrote it counts as a drift repair; a new desired content (a new bundle,
    /// an edited primary, a rotated token) does not.
    pub fn execute(&mut self, plan: &Plan, metrics: &Metrics) -> Result<(), ApplyError> {
        for step in &plan.steps {
            match step {
                Step::Write { path, bytes, mode } => {
                    let resolved = self.root.resolve(path)?;
                    let digest = sha256_hex(bytes);
                    // Content this run already wrote, yet the write was needed: someone
                    // edited, deleted or re-moded the file since.
                    let repairing = self.last_written.get(path) == Some(&digest);
                    if !self.owned.owns(path) {
                        self.owned.files.insert(path.clone());
                        self.owned.save(self.state_file)?;
                    }
                    let outcome = fsops::write_atomic(&resolved, bytes, *mode)?;
                    self.last_written.insert(path.clone(), digest);
                    if outcome == WriteOutcome::Written {
                        metrics.files_written.inc();
                        if repairing {
                            metrics.drift_repairs.inc();
                            tracing::warn!(path = %path, "repaired a file changed outside the agent");
                        }
                    }
                }
                Step::Backup { path } => {
                    let dir = self
                        .backup_dir
                        .ok_or_else(|| ApplyError::NoBackupDir(path.clone()))?;
                    let resolved = self.root.resolve(path)?;
                    let copy = fsops::backup(&resolved, &dir.join(path.trim_start_matches('/')))?;
                    metrics.upstream_backups.inc();
                    tracing::info!(path = %path, backup = %copy.display(), "taking over a file left by upstream's Multus DaemonSet");
                }
                Step::Remove { path } => {
                    let resolved = self.root.resolve(path)?;
                    fsops::remove(&resolved)?;
                    self.owned.files.remove(path);
                    self.last_written.remove(path);
                    self.owned.save(self.state_file)?;
                    tracing::info!(path = %path, "removed");
                }
            }
        }
        Ok(())
    }
}

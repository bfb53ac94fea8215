//! The record of every file the agent owns, kept outside every CNI directory (libcni reads
//! any `*.json` in the CNI conf dir). Only files listed here are ever changed or removed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

use crate::fsops::{self, FsError};

/// Default host path of the state file.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/multus-node-agent/owned-files.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedFiles {
    /// Host paths of owned files.
    pub files: BTreeSet<String>,
}

/// Errors reading the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {path} is corrupt: {source}; move it away to start over (owned files are then left alone)"
    )]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] FsError),
}

impl OwnedFiles {
    /// Loads the state; a missing file means nothing is owned yet.
    pub fn load(path: &Path) -> Result<OwnedFiles, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OwnedFiles::default()),
            Err(source) => Err(StateError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Saves the state atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        fsops::write_atomic(path, &text, 0o600)?;
        Ok(())
    }

    pub fn owns(&self, host_path: &str) -> bool {
        self.files.contains(host_path)
    }
}

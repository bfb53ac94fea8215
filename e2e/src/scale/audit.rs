//! The API server's audit log (`ControlPlane::start_with_audit`) read for one user's writes.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::E2eError;

/// One write request in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub verb: String,
    /// `configmaps`, `multusconfigs/status`, `events`, ...
    pub resource: String,
    pub name: String,
}

/// Reads the API server's audit log (`ControlPlane::start_with_audit`) from a remembered
/// position on.
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    /// The log at `path`, read from its current end.
    pub fn from_end(path: &Path) -> AuditLog {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        AuditLog {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// Write requests (create, update, patch, delete) of `user` completed since the last
    /// call (or since the log was opened); moves the position to the end.
    pub fn writes_since(&mut self, user: &str) -> Result<Vec<Write>, E2eError> {
        let io = |e: std::io::Error| E2eError::Io(format!("audit log: {e}"));
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut reader = std::io::BufReader::new(file);
        let mut writes = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            // A line still being written is read next time.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let text = |path: &str| {
                event
                    .pointer(path)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let verb = text("/verb");
            if text("/stage") != "ResponseComplete"
                || text("/user/username") != user
                || !["create", "update", "patch", "delete", "deletecollection"]
                    .contains(&verb.as_str())
            {
                continue;
            }
            let sub = text("/objectRef/subresource");
            let resource = if sub.is_empty() {
                text("/objectRef/resource")
            } else {
                format!("{}/{sub}", text("/objectRef/resource"))
            };
            writes.push(Write {
                verb,
                resource,
                name: text("/objectRef/name"),
            });
        }
        Ok(writes)
    }
}

/// Writes counted by resource, for a table cell: `5000 (configmaps 5000)`.
pub fn describe_writes(writes: &[Write]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for w in writes {
        *by.entry(w.resource.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(r, n)| format!("{r} {n}")).collect();
    if parts.is_empty() {
        "0".into()
    } else {
        format!("{} ({})", writes.len(), parts.join(", "))
    }
}

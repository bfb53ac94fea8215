//! API requests from the API server's audit log (one JSON event per line, metadata level,
//! as [`crate::ControlPlane::start_with_audit`] configures it), read as the file grows: who
//! made each request, for which node, and of what kind.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The user info extra that node-bound and pod-bound ServiceAccount tokens carry.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The audit log, read from where the last read stopped.
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    /// Reads `path` from its beginning.
    pub fn from_start(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// Calls `f` with each complete event appended since the last call. A line still being
    /// written is left for the next call.
    pub fn for_each_new(&mut self, mut f: impl FnMut(&Value)) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) if line.last() != Some(&b'\n') => {
                    // Incomplete: read again next time.
                    let _ = n;
                    return;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                        f(&event);
                    }
                }
            }
        }
    }
}

/// The user name of a request.
pub fn user(event: &Value) -> &str {
    event["user"]["username"].as_str().unwrap_or_default()
}

/// The node a request's token is bound to (pod-bound or node-bound ServiceAccount tokens).
pub fn node(event: &Value) -> Option<&str> {
    event["user"]["extra"][NODE_NAME_EXTRA][0].as_str()
}

/// `verb resource[/subresource]`, or `verb <path>` for a non-resource request.
pub fn kind(event: &Value) -> String {
    let verb = event["verb"].as_str().unwrap_or_default();
    let object = &event["objectRef"];
    match object["resource"].as_str() {
        Some(resource) => match object["subresource"].as_str() {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        },
        None => format!(
            "{verb} {}",
            event["requestURI"].as_str().unwrap_or_default()
        ),
    }
}

/// When the API server received the request.
pub fn received(event: &Value) -> Option<Timestamp> {
    event["requestReceivedTimestamp"].as_str()?.parse().ok()
}

/// Requests counted by user and kind, each audit ID once (a watch logs a started and a
/// completed stage).
#[derive(Default)]
pub struct Tally {
    seen: HashSet<String>,
    /// user -> kind -> requests.
    pub by_user: BTreeMap<String, BTreeMap<String, u64>>,
    /// user -> nodes its tokens were bound to.
    pub nodes: BTreeMap<String, HashSet<String>>,
}

impl Tally {
    /// Counts `event` when it is a request received in `[from, to)` not counted before.
    pub fn add(&mut self, event: &Value, from: Timestamp, to: Timestamp) {
        let Some(at) = received(event) else { return };
        if at < from || at >= to {
            return;
        }
        let Some(id) = event["auditID"].as_str() else {
            return;
        };
        if !self.seen.insert(id.to_string()) {
            return;
        }
        let who = user(event).to_string();
        if let Some(node) = node(event) {
            self.nodes
                .entry(who.clone())
                .or_default()
                .insert(node.to_string());
        }
        *self
            .by_user
            .entry(who)
            .or_default()
            .entry(kind(event))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_counted_once_by_user_and_kind_within_the_window() {
        let event = |id: &str, at: &str, verb: &str, sub: Option<&str>| {
            json!({
                "auditID": id,
                "verb": verb,
                "requestReceivedTimestamp": at,
                "user": { "username": "sa", "extra": { NODE_NAME_EXTRA: ["n1"] } },
                "objectRef": { "resource": "serviceaccounts", "subresource": sub },
            })
        };
        let from: Timestamp = "2030-01-01T00:00:10Z".parse().unwrap();
        let to: Timestamp = "2030-01-01T00:01:10Z".parse().unwrap();
        let mut tally = Tally::default();
        for e in [
            event("a", "2030-01-01T00:00:09.999999Z", "watch", None),
            event("b", "2030-01-01T00:00:10.000001Z", "watch", None),
            event("b", "2030-01-01T00:00:10.000001Z", "watch", None),
            event("c", "2030-01-01T00:00:30.5Z", "create", Some("token")),
            event("d", "2030-01-01T00:01:10Z", "create", Some("token")),
        ] {
            tally.add(&e, from, to);
        }
        let kinds = &tally.by_user["sa"];
        assert_eq!(kinds.get("watch serviceaccounts"), Some(&1));
        assert_eq!(kinds.get("create serviceaccounts/token"), Some(&1));
        assert_eq!(kinds.len(), 2);
        assert!(tally.nodes["sa"].contains("n1"));
    }
}

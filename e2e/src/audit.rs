//! API requests from the API server's audit log (one JSON event per line, metadata level,
//! as [`crate::ControlPlane::start_with_audit`] configures it), read as the file grows: who
//! made each request, for which node, of what kind, and the tallies the benches print.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::E2eError;
use crate::error::io;

/// The user info extra that node-bound and pod-bound ServiceAccount tokens carry.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The verbs that change objects.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

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

    /// Reads `path` from its current end: only what is logged from now on.
    pub fn from_end(path: &Path) -> AuditLog {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        AuditLog {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// Calls `f` with each complete event appended since the last call. A line still being
    /// written is left for the next call; a line that is not JSON is passed over.
    pub fn for_each_new(&mut self, mut f: impl FnMut(&Value)) -> Result<(), E2eError> {
        let context = || format!("audit log {}", self.path.display());
        let mut file = std::fs::File::open(&self.path).map_err(io(context()))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io(context()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io(context()))?;
            if n == 0 || line.last() != Some(&b'\n') {
                return Ok(());
            }
            self.offset += n as u64;
            if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                f(&event);
            }
        }
    }

    /// Write requests (create, update, patch, delete) of `user` completed since the last
    /// read (or since the log was opened).
    pub fn writes_since(&mut self, user: &str) -> Result<Vec<Write>, E2eError> {
        let mut writes = Vec::new();
        self.for_each_new(|event| {
            let verb = text(event, "/verb");
            if text(event, "/stage") == "ResponseComplete"
                && self::user(event) == user
                && WRITE_VERBS.contains(&verb)
            {
                writes.push(Write {
                    verb: verb.to_string(),
                    resource: resource(event).unwrap_or_default(),
                    name: text(event, "/objectRef/name").to_string(),
                });
            }
        })?;
        Ok(writes)
    }
}

/// The string at `pointer` in `event`, empty when absent.
fn text<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The user name of a request.
pub fn user(event: &Value) -> &str {
    text(event, "/user/username")
}

/// The node a request's token is bound to (pod-bound or node-bound ServiceAccount tokens).
pub fn node(event: &Value) -> Option<&str> {
    event["user"]["extra"][NODE_NAME_EXTRA][0].as_str()
}

/// `resource[/subresource]` of a resource request; `None` for a non-resource request.
pub fn resource(event: &Value) -> Option<String> {
    let resource = event["objectRef"]["resource"].as_str()?;
    Some(match text(event, "/objectRef/subresource") {
        "" => resource.to_string(),
        sub => format!("{resource}/{sub}"),
    })
}

/// `verb resource[/subresource]`, or `verb <path>` for a non-resource request.
pub fn kind(event: &Value) -> String {
    let verb = text(event, "/verb");
    match resource(event) {
        Some(resource) => format!("{verb} {resource}"),
        None => format!("{verb} {}", text(event, "/requestURI")),
    }
}

/// When the API server received the request.
pub fn received(event: &Value) -> Option<Timestamp> {
    event["requestReceivedTimestamp"].as_str()?.parse().ok()
}

/// One write request in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub verb: String,
    /// `configmaps`, `multusconfigs/status`, `events`, ...
    pub resource: String,
    pub name: String,
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

    fn event(id: &str, at: &str, verb: &str, sub: Option<&str>) -> Value {
        json!({
            "auditID": id,
            "stage": "ResponseComplete",
            "verb": verb,
            "requestReceivedTimestamp": at,
            "user": { "username": "sa", "extra": { NODE_NAME_EXTRA: ["n1"] } },
            "objectRef": { "resource": "serviceaccounts", "subresource": sub, "name": "multus" },
        })
    }

    #[test]
    fn requests_are_counted_once_by_user_and_kind_within_the_window() {
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

    #[test]
    fn only_completed_writes_of_the_user_are_read_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let at = "2030-01-01T00:00:10Z";
        let mut started = event("w", at, "watch", None);
        started["stage"] = json!("ResponseStarted");
        let mut other = event("o", at, "patch", None);
        other["user"]["username"] = json!("someone-else");
        let lines: Vec<String> = [
            event("c", at, "create", Some("token")),
            event("g", at, "get", None),
            started,
            other,
        ]
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
        let partial = event("p", at, "delete", None).to_string();
        std::fs::write(&path, format!("{}{partial}", lines.concat())).unwrap();

        let mut log = AuditLog::from_start(&path);
        let writes = log.writes_since("sa").unwrap();
        assert_eq!(
            writes,
            [Write {
                verb: "create".into(),
                resource: "serviceaccounts/token".into(),
                name: "multus".into(),
            }]
        );
        assert_eq!(describe_writes(&writes), "1 (serviceaccounts/token 1)");

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"\n").unwrap();
        let writes = log.writes_since("sa").unwrap();
        assert_eq!(writes.len(), 1, "the line completed since: {writes:?}");
        assert_eq!(writes[0].verb, "delete");
        assert!(
            AuditLog::from_end(&path)
                .writes_since("sa")
                .unwrap()
                .is_empty()
        );
    }
}

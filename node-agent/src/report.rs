//! Feedback on the node's own bundle ConfigMap: annotations with the state, the applied
//! hash and time, the chosen primary, the token expiry (never the token) and the last error.
//! The time comes from the caller; this module never reads the clock.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;

use multus_crds::bundle::{AgentState, feedback};

/// Field manager of the agent's writes (its feedback annotations).
pub const FIELD_MANAGER: &str = "multus-node-agent";

/// What one pass reports about the node.
#[derive(Clone, Copy, Debug)]
pub struct Report<'a> {
    pub state: AgentState,
    /// `bundleHash` of the bundle now applied, if it is.
    pub applied: Option<&'a str>,
    /// The primary config file chosen.
    pub primary: Option<&'a str>,
    /// Expiry of the token in the host kubeconfig (Unix seconds), never the token.
    pub token_expiry: Option<i64>,
    /// The last error; empty when healthy.
    pub error: &'a str,
}

/// Writes feedback annotations, and only when they differ from what was last reported.
pub struct Reporter {
    api: Api<ConfigMap>,
    reported: BTreeMap<String, String>,
}

impl Reporter {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            reported: BTreeMap::new(),
        }
    }

    /// Reports `report` on `cm` at `now` (Unix seconds, the time an application is
    /// stamped with). A failed write is logged and retried with the next pass.
    pub async fn report(&mut self, cm: &ConfigMap, report: &Report<'_>, now: i64) {
        if self.reported.is_empty() {
            // After a restart, what an earlier run reported is the baseline: an unchanged
            // node writes nothing and keeps its applied-at time.
            self.reported = cm
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(feedback::PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        let annotations = self.annotations(report, now);
        if annotations == self.reported {
            return;
        }
        let name = cm.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name, "annotations": annotations },
        });
        match self
            .api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(
                    state = report.state.as_str(),
                    error = report.error,
                    "reported"
                );
                self.reported = annotations;
            }
            Err(e) => tracing::warn!(error = %e, "could not report on the bundle ConfigMap"),
        }
    }

    /// The full set of annotations to report; applied hash and time carry over from the
    /// last report while nothing new is applied.
    fn annotations(&self, report: &Report<'_>, now: i64) -> BTreeMap<String, String> {
        let Report {
            state,
            applied,
            primary,
            token_expiry,
            error,
        } = *report;
        let mut annotations = BTreeMap::from([
            (feedback::STATE.to_string(), state.as_str().to_string()),
            (feedback::LAST_ERROR.to_string(), error.to_string()),
            (
                feedback::PRIMARY.to_string(),
                primary.unwrap_or_default().to_string(),
            ),
        ]);
        if let Some(expiry) = token_expiry {
            annotations.insert(feedback::TOKEN_EXPIRY.to_string(), rfc3339(expiry));
        }
        match applied {
            Some(hash) => {
                let unchanged = self
                    .reported
                    .get(feedback::APPLIED_HASH)
                    .is_some_and(|h| h == hash);
                let at = match self.reported.get(feedback::APPLIED_AT) {
                    Some(at) if unchanged => at.clone(),
                    _ => rfc3339(now),
                };
                annotations.insert(feedback::APPLIED_HASH.to_string(), hash.to_string());
                annotations.insert(feedback::APPLIED_AT.to_string(), at);
            }
            None => {
                for key in [feedback::APPLIED_HASH, feedback::APPLIED_AT] {
                    if let Some(v) = self.reported.get(key) {
                        annotations.insert(key.to_string(), v.clone());
                    }
                }
            }
        }
        annotations
    }
}

fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

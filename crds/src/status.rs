//! The status a MultusConfig reports: conditions, node counts, failing nodes and the
//! attachments that were materialized or rejected.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types a MultusConfig reports.
pub mod condition {
    /// Every selected node applied the current bundle and is healthy.
    pub const READY: &str = "Ready";
    /// A changed bundle is still rolling out.
    pub const PROGRESSING: &str = "Progressing";
    /// At least one node failed, or the spec cannot be rendered.
    pub const DEGRADED: &str = "Degraded";
    /// Some selected nodes are owned by an older MultusConfig.
    pub const CONFLICTED: &str = "Conflicted";
    /// Some selected NetworkAttachmentDefinitions were rejected.
    pub const INVALID_ATTACHMENTS: &str = "InvalidAttachments";
    /// Some NetworkAttachmentDefinitions will misbehave at pod time (lint warnings).
    pub const ATTACHMENT_WARNINGS: &str = "AttachmentWarnings";
}

/// How many failing nodes the status lists by name.
pub const MAX_LISTED_FAILING_NODES: usize = 10;

/// Observed state of a MultusConfig.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MultusConfigStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub nodes: NodeCounts,
    /// `<ready>/<selected>`, for `kubectl get`.
    #[serde(default)]
    pub ready_nodes: String,
    /// The first few failing nodes with their reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_nodes: Vec<NodeFailure>,
    #[serde(default)]
    pub attachments: AttachmentsStatus,
    /// One line on the overall state, for `kubectl get`.
    #[serde(default)]
    pub message: String,
}

/// Node counts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NodeCounts {
    /// Nodes the selector picks and this MultusConfig owns.
    pub selected: i32,
    /// Nodes whose ConfigMap carries the current bundle.
    pub updated: i32,
    /// Nodes whose agent applied the current bundle and is healthy.
    pub ready: i32,
    /// Nodes whose agent reports an error.
    pub failing: i32,
}

/// A node that is not healthy, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct NodeFailure {
    pub node: String,
    pub reason: String,
    pub message: String,
}

/// Attachments materialized and rejected.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AttachmentsStatus {
    /// `<namespace>/<name>` of every NAD written to the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materialized: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedAttachment>,
}

/// A NAD that never reaches a node, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RejectedAttachment {
    /// `<namespace>/<name>`.
    pub name: String,
    pub reason: String,
    pub message: String,
}

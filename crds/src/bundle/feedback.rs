//! The agent's half of the bundle contract: the annotations it writes on its own node's
//! ConfigMap (never the token, only its expiry) and the states it reports.

use serde::{Deserialize, Serialize};

/// Prefix shared by every feedback annotation.
pub const PREFIX: &str = "agent.operator.multus.dev/";
/// `bundleHash` of the manifest the agent last applied.
pub const APPLIED_HASH: &str = "agent.operator.multus.dev/applied-hash";
/// RFC 3339 time of that application.
pub const APPLIED_AT: &str = "agent.operator.multus.dev/applied-at";
/// The agent's state, one of [`AgentState`].
pub const STATE: &str = "agent.operator.multus.dev/state";
/// The primary config file the agent chose.
pub const PRIMARY: &str = "agent.operator.multus.dev/primary";
/// RFC 3339 expiry of the token in the host kubeconfig (never the token itself).
pub const TOKEN_EXPIRY: &str = "agent.operator.multus.dev/token-expiry";
/// The last error, empty when healthy.
pub const LAST_ERROR: &str = "agent.operator.multus.dev/last-error";

/// What an agent reports about its node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// Every file of the bundle is on disk.
    Applied,
    /// No primary config (or readiness indicator) yet; nothing written.
    WaitingForPrimary,
    /// The last attempt failed; see `last-error`.
    Failed,
    /// The owned files were removed (node unselected or MultusConfig deleted).
    Removed,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Applied => "Applied",
            AgentState::WaitingForPrimary => "WaitingForPrimary",
            AgentState::Failed => "Failed",
            AgentState::Removed => "Removed",
        }
    }

    pub fn parse(text: &str) -> Option<AgentState> {
        [
            AgentState::Applied,
            AgentState::WaitingForPrimary,
            AgentState::Failed,
            AgentState::Removed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

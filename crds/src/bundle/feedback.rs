//! The agent's half of the bundle contract: the annotations it writes on its own node's
//! ConfigMap (never the token, only its expiry) and the states it reports.

use serde::{Deserialize, Serialize};

annotation_keys! {
    /// Prefix shared by every feedback annotation.
    pub PREFIX = "agent.operator.multus.dev/";
    /// `bundleHash` of the manifest the agent last applied.
    APPLIED_HASH = "applied-hash";
    /// RFC 3339 time of that application.
    APPLIED_AT = "applied-at";
    /// The agent's state, one of [`AgentState`].
    STATE = "state";
    /// The primary config file the agent chose.
    PRIMARY = "primary";
    /// RFC 3339 expiry of the token in the host kubeconfig (never the token itself).
    TOKEN_EXPIRY = "token-expiry";
    /// The last error, empty when healthy.
    LAST_ERROR = "last-error";
}

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

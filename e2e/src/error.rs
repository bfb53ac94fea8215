//! The test environment's one error type, and the adapter that gives an I/O error the
//! context of what was being done.

use std::time::Duration;

/// Errors of the test environment.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("upstream binaries unavailable: {0}")]
    Binaries(String),
    #[error("test PKI: {0}")]
    Pki(String),
    #[error("{0}")]
    Io(String),
    #[error("{component} did not become ready within {timeout:?}; last log lines:\n{log}")]
    NotReady {
        component: String,
        timeout: Duration,
        log: String,
    },
    #[error("{component} exited during start; last log lines:\n{log}")]
    Exited { component: String, log: String },
    #[error("kube client: {0}")]
    Kube(String),
}

/// Turns an I/O error into [`E2eError::Io`] prefixed with `context` (what was being done).
pub(crate) fn io(context: impl std::fmt::Display) -> impl Fn(std::io::Error) -> E2eError {
    move |e| E2eError::Io(format!("{context}: {e}"))
}

//! `/metrics`, `/healthz` and `/readyz`. Liveness is served as long as the process runs;
//! readiness flips once the caches have synced, and drops at once when the leader lease
//! lapses (the same guard that fences the writes).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::lease::LeaderGuard;
use crate::metrics::Metrics;

const SYNCING: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;
const STEPPED_DOWN: u8 = 3;

/// Shared readiness. A standby replica (waiting for the leader Lease) counts as ready, so
/// that a rolling update of a Deployment with more than one replica can proceed; the
/// leader is ready once its caches have synced and only while its lease guard holds.
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<AtomicU8>,
    leader: LeaderGuard,
}

impl Readiness {
    /// Readiness of a replica whose writes `leader` guards.
    pub fn with_leader(leader: LeaderGuard) -> Self {
        Self {
            state: Arc::default(),
            leader,
        }
    }
    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::SeqCst);
    }
    /// Waiting for the Lease: healthy, not leading.
    pub fn set_standby(&self) {
        self.state.store(STANDBY, Ordering::SeqCst);
    }
    /// Waiting for the Lease again after losing it.
    pub fn set_stepped_down(&self) {
        self.state.store(STEPPED_DOWN, Ordering::SeqCst);
    }
    /// Leading (or about to), caches not synced yet.
    pub fn set_syncing(&self) {
        self.state.store(SYNCING, Ordering::SeqCst);
    }
    /// Leading with synced caches, lease renewed in time.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY && self.leader.holds()
    }
    /// Leading and allowed to write.
    pub fn is_leading(&self) -> bool {
        matches!(self.state.load(Ordering::SeqCst), READY | SYNCING) && self.leader.holds()
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready: Readiness,
}

/// The admin endpoints, served by [`multus_process::serve_admin`].
pub fn router(metrics: Metrics, ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AdminState { metrics, ready })
}

async fn metrics_handler(State(state): State<AdminState>) -> String {
    state
        .metrics
        .leader
        .set(i64::from(state.ready.is_leading()));
    state.metrics.encode()
}

async fn ready_handler(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    let ready = &state.ready;
    match ready.state.load(Ordering::SeqCst) {
        STANDBY => (StatusCode::OK, "standby: waiting for the leader lease"),
        STEPPED_DOWN => (
            StatusCode::OK,
            "standby: stepped down after the leader lease lapsed or was lost; waiting for it",
        ),
        _ if !ready.leader.holds() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not leading: the leader lease was not renewed in time; writes stopped",
        ),
        READY => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced"),
    }
}

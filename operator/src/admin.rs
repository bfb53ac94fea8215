//! `/metrics`, `/healthz` and `/readyz`. Liveness is served as long as the process runs;
//! readiness flips once the caches have synced.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::metrics::Metrics;

const SYNCING: u8 = 0;
const STANDBY: u8 = 1;
const READY: u8 = 2;

/// Shared readiness. A standby replica (waiting for the leader Lease) counts as ready, so
/// that a rolling update of a Deployment with more than one replica can proceed; the
/// leader is ready once its caches have synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(READY, Ordering::SeqCst);
    }
    /// Waiting for the Lease: healthy, not leading.
    pub fn set_standby(&self) {
        self.0.store(STANDBY, Ordering::SeqCst);
    }
    /// Leading (or about to), caches not synced yet.
    pub fn set_syncing(&self) {
        self.0.store(SYNCING, Ordering::SeqCst);
    }
    /// Leading with synced caches.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == READY
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready: Readiness,
}

/// Serves the admin endpoints on `addr` until `shutdown` completes. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AdminState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(state): State<AdminState>) -> String {
    state.metrics.encode()
}

async fn ready_handler(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    match state.ready.0.load(Ordering::SeqCst) {
        READY => (StatusCode::OK, "ready"),
        STANDBY => (StatusCode::OK, "standby: waiting for the leader lease"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced"),
    }
}

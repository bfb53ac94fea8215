//! `/metrics`, `/healthz` and `/readyz`. Liveness is served as long as the process runs;
//! readiness flips once the caches have synced.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Shared readiness flag.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
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
    if state.ready.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

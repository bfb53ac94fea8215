//! Agent metrics and the `/metrics`, `/healthz`, `/readyz` endpoints. The token's expiry
//! time is exported; the token never is.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::wake::Trigger;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    /// `disk`, `bundle`, `token` or `resync`.
    pub trigger: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Passes run, by what woke the agent.
    pub passes: Family<TriggerLabel, Counter>,
    pub files_written: Counter,
    pub drift_repairs: Counter,
    /// Files left by upstream's Multus DaemonSet copied to the backup directory.
    pub upstream_backups: Counter,
    pub token_rotations: Counter,
    pub rotation_failures: Counter,
    /// Unix time the current token expires.
    pub token_expiry: Gauge,
    /// Set once the current bundle is applied.
    pub applied: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multus_node_agent");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            passes: Family::default(),
            files_written: Counter::default(),
            drift_repairs: Counter::default(),
            upstream_backups: Counter::default(),
            token_rotations: Counter::default(),
            rotation_failures: Counter::default(),
            token_expiry: Gauge::default(),
            applied: Arc::default(),
        };
        // Every trigger is exported from the start, so a rate is defined before the first pass.
        for trigger in Trigger::ALL {
            let _ = m.passes.get_or_create(&TriggerLabel {
                trigger: trigger.as_str().into(),
            });
        }
        registry.register(
            "passes",
            "Passes (plan and apply) run, by what woke the agent",
            m.passes.clone(),
        );
        for (name, help, counter) in [
            (
                "files_written",
                "Files written (changed bytes only)",
                &m.files_written,
            ),
            (
                "drift_repairs",
                "Owned files restored after an outside change",
                &m.drift_repairs,
            ),
            (
                "upstream_backups",
                "Files left by upstream's Multus DaemonSet backed up before the take-over",
                &m.upstream_backups,
            ),
            (
                "token_rotations",
                "Tokens requested and verified",
                &m.token_rotations,
            ),
            (
                "token_rotation_failures",
                "Failed token requests",
                &m.rotation_failures,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "token_expiry_timestamp_seconds",
            "Unix time the kubeconfig token expires",
            m.token_expiry.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }
}

impl Metrics {
    /// Counts one pass started by `trigger`.
    pub fn pass(&self, trigger: Trigger) {
        self.passes
            .get_or_create(&TriggerLabel {
                trigger: trigger.as_str().into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The admin endpoints, served by [`multus_process::serve_admin`].
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Metrics>| async move { m.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Metrics>| async move {
                if m.applied.load(Ordering::SeqCst) {
                    (StatusCode::OK, "bundle applied")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "bundle not applied")
                }
            }),
        )
        .with_state(metrics)
}

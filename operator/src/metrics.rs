//! Prometheus metrics of the operator: reconciles, failures by reason, duration, API writes
//! by kind, nodes by state, leadership, and objects that cannot be decoded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// `configmap`, `configmap_delete`, `status`, `event`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeStateLabel {
    pub multusconfig: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Every metric, plus the registry that serves them.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciles: Counter,
    /// Reconciles that finished without error.
    pub reconciled: Counter,
    pub failures: Family<ReasonLabel, Counter>,
    pub duration: Histogram,
    pub writes: Family<WriteLabel, Counter>,
    pub nodes: Family<NodeStateLabel, Gauge>,
    /// 1 while this replica may write (leads, lease renewed in time), else 0.
    pub leader: Gauge,
    /// Times this replica stopped leading because its lease was lost or lapsed.
    pub step_downs: Counter,
    /// Objects of a watched kind in the caches that cannot be decoded, by kind.
    pub undecodable: Family<KindLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multus_operator");
        let reconciles = Counter::default();
        let reconciled = Counter::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let duration = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        let writes = Family::<WriteLabel, Counter>::default();
        let nodes = Family::<NodeStateLabel, Gauge>::default();
        let leader = Gauge::default();
        let step_downs = Counter::default();
        let undecodable = Family::<KindLabel, Gauge>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconciles_succeeded",
            "Reconciles that finished without error",
            reconciled.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server, by kind",
            writes.clone(),
        );
        registry.register("nodes", "Selected nodes by rollout state", nodes.clone());
        registry.register(
            "leader",
            "1 while this replica leads and may write, else 0",
            leader.clone(),
        );
        registry.register(
            "leader_step_downs",
            "Times this replica stopped leading because its lease was lost or not renewed in time",
            step_downs.clone(),
        );
        registry.register(
            "undecodable_objects",
            "Watched objects that cannot be decoded and are left out, by kind",
            undecodable.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            reconciled,
            failures,
            duration,
            writes,
            nodes,
            leader,
            step_downs,
            undecodable,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the guard drops.
    pub fn reconcile_started(&self) -> DurationGuard {
        self.reconciles.inc();
        DurationGuard {
            started: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn wrote(&self, kind: &str) {
        self.writes
            .get_or_create(&WriteLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The undecodable-objects gauge of `kind`.
    pub fn undecodable(&self, kind: &str) -> Gauge {
        self.undecodable
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .clone()
    }

    /// Total writes of every kind so far.
    pub fn total_writes(&self) -> u64 {
        ["configmap", "configmap_delete", "status", "event"]
            .iter()
            .map(|k| {
                self.writes
                    .get_or_create(&WriteLabel {
                        kind: k.to_string(),
                    })
                    .get()
            })
            .sum()
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes the reconcile duration when dropped.
pub struct DurationGuard {
    started: Instant,
    histogram: Histogram,
}

impl Drop for DurationGuard {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

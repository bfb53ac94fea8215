//! Node status heartbeats at kubelet's rate for simulated nodes: every period, each node's
//! Ready condition gets a new `lastHeartbeatTime` (a strategic merge patch of `nodes/status`,
//! as kubelet sends it), the nodes spread evenly over the period.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Patches in flight at most; when the API server falls behind, heartbeats slow down
/// (and [`Heartbeats::interval`] shows it) instead of piling up.
const IN_FLIGHT: usize = 64;

/// The running heartbeats; dropping them stops them.
pub struct Heartbeats {
    task: JoinHandle<()>,
    nodes: usize,
    started: Instant,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Heartbeats {
    /// Starts heartbeats for `nodes`, each every `period`, with `client` (an admin's, as
    /// kubelet's own node identity is out of scope here).
    pub fn start(client: Client, nodes: Vec<String>, period: Duration) -> Heartbeats {
        let count = nodes.len();
        let sent: Arc<AtomicU64> = Arc::default();
        let failed: Arc<AtomicU64> = Arc::default();
        let (task_sent, task_failed) = (sent.clone(), failed.clone());
        let task = tokio::spawn(async move {
            if nodes.is_empty() {
                return;
            }
            let api: Api<Node> = Api::all(client);
            let transition = Time(Timestamp::now());
            let step = period / nodes.len() as u32;
            let mut tick = tokio::time::interval(step.max(Duration::from_micros(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let limit = Arc::new(Semaphore::new(IN_FLIGHT));
            for name in nodes.iter().cycle() {
                tick.tick().await;
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let patch = json!({
                    "status": { "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": Time(Timestamp::now()),
                        "lastTransitionTime": transition,
                    }]},
                });
                let (api, name) = (api.clone(), name.clone());
                let (sent, failed) = (task_sent.clone(), task_failed.clone());
                tokio::spawn(async move {
                    let result = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await;
                    let counter = if result.is_ok() { &sent } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        });
        Heartbeats {
            task,
            nodes: count,
            started: Instant::now(),
            sent,
            failed,
        }
    }

    /// Heartbeats accepted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Heartbeats the API server refused or that failed on the way.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The time between two accepted heartbeats of one node, on average since the start.
    pub fn interval(&self) -> Option<Duration> {
        let per_node = self.sent() as f64 / self.nodes.max(1) as f64;
        (per_node >= 1.0).then(|| self.started.elapsed().div_f64(per_node))
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

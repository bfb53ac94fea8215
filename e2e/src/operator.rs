//! Running the operator inside a test process against the shared control plane, and
//! playing the node agent's part (feedback annotations) where a test needs it.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use multus_crds::bundle::{AgentState, feedback};
use multus_crds::multus_config::ServiceAccountRef;
use multus_operator::admin::Readiness;
use multus_operator::controller::{self, Settings};
use multus_operator::metrics::Metrics;
use multus_operator::render::RenderDefaults;

/// Label tests put on their MultusConfigs so that each test's operator manages only its own.
pub const TEST_LABEL: &str = "e2e.multus.dev/test";

/// An operator running as a task of the test.
pub struct RunningOperator {
    pub metrics: Metrics,
    pub ready: Readiness,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunningOperator {
    /// Starts the controller for MultusConfigs labelled `TEST_LABEL=<test>`, with bundles in
    /// `namespace`.
    pub fn start(client: Client, namespace: &str, test: &str, cleanup_timeout: Duration) -> Self {
        let settings = Settings {
            namespace: namespace.to_string(),
            defaults: RenderDefaults {
                service_account: ServiceAccountRef {
                    namespace: namespace.to_string(),
                    name: "multus".into(),
                },
            },
            cleanup_timeout,
            debounce: Duration::from_millis(100),
            config_selector: Some(format!("{TEST_LABEL}={test}")),
        };
        // Operator logs show when RUST_LOG is set (run with `--nocapture`).
        if std::env::var_os("RUST_LOG").is_some() {
            multus_operator::cli::run::init_logging(multus_operator::cli::run::LogFormat::Text);
        }
        let metrics = Metrics::default();
        let ready = Readiness::default();
        let (stop, mut rx) = watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let task_metrics = metrics.clone();
        let task_ready = ready.clone();
        let handle = tokio::spawn(controller::run(
            client,
            settings,
            task_metrics,
            task_ready,
            multus_operator::lease::LeaderGuard::always(),
            shutdown,
        ));
        RunningOperator {
            metrics,
            ready,
            stop,
            handle,
        }
    }

    /// Stops the controller and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

/// Waits until `events` lists an Event that `matches`, and returns it; panics after
/// `timeout` naming `what`.
pub async fn wait_event(
    events: &Api<Event>,
    what: &str,
    timeout: Duration,
    matches: impl Fn(&Event) -> bool,
) -> Event {
    eventually(what, timeout, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| matches(e))
            .ok_or_else(|| "no such event yet".to_string())
    })
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming
/// `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Writes the feedback annotations an agent writes on its ConfigMap.
pub async fn agent_reports(
    client: &Client,
    namespace: &str,
    configmap: &str,
    state: AgentState,
    applied_hash: &str,
    last_error: &str,
) -> Result<(), kube::Error> {
    let annotations = BTreeMap::from([
        (feedback::STATE, state.as_str()),
        (feedback::APPLIED_HASH, applied_hash),
        (feedback::LAST_ERROR, last_error),
        (feedback::APPLIED_AT, "2026-01-01T00:00:00Z"),
    ]);
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": configmap, "annotations": annotations },
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            configmap,
            &PatchParams::apply("multus-node-agent").force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
}

//! The cluster controller: watches MultusConfigs, Nodes, NetworkAttachmentDefinitions,
//! Namespaces and its own ConfigMaps, and reconciles every MultusConfig when any of them
//! changes (there are few MultusConfigs; a reconcile renders from in-memory caches).
//! Every watch decodes through [`DeserializeGuard`], so one object this build cannot decode
//! is reported ([`undecodable`]) instead of stopping its watch; Nodes and the bundle
//! ConfigMaps are watched by their metadata only, which always decodes.

mod reconcile;
pub mod triggers;
mod undecodable;
mod writes;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::Client;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use multus_crds::bundle::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use crate::admin::Readiness;
use crate::lease::LeaderGuard;
use crate::metrics::Metrics;
use crate::render::RenderDefaults;

pub use reconcile::ReconcileError;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "multus-operator";
/// Finalizer that holds a deleted MultusConfig until agents removed their files.
pub const FINALIZER: &str = "operator.multus.dev/cleanup";

/// Operator settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the node ConfigMaps.
    pub namespace: String,
    pub defaults: RenderDefaults,
    /// How long removal waits for an agent's confirmation before giving up on the node.
    pub cleanup_timeout: Duration,
    /// Events closer together than this are handled in one reconcile.
    pub debounce: Duration,
    /// Label selector limiting which MultusConfigs this operator manages (empty: all).
    pub config_selector: Option<String>,
}

/// Caches the reconciler reads from.
#[derive(Clone)]
pub struct Stores {
    pub configs: Store<DeserializeGuard<MultusConfig>>,
    /// Nodes by their metadata (all the controller reads of them).
    pub nodes: Store<Node>,
    pub nads: Store<DeserializeGuard<NetworkAttachmentDefinition>>,
    pub namespaces: Store<DeserializeGuard<Namespace>>,
    /// The bundle ConfigMaps by their metadata: the bundle hash and the agent's feedback are
    /// annotations, and keeping every node's bundle data would cost memory per node.
    pub configmaps: Store<PartialObjectMeta<ConfigMap>>,
    /// Turns true once the caches above (except `configs`, which the controller itself waits
    /// for) hold a full list.
    synced: tokio::sync::watch::Receiver<bool>,
}

impl Stores {
    /// Waits until the caches are synced. Any number of tasks may wait here at once.
    async fn wait_synced(&self) -> Result<(), ReconcileError> {
        let mut synced = self.synced.clone();
        synced
            .wait_for(|s| *s)
            .await
            .map(|_| ())
            .map_err(|_| ReconcileError::CachesStopped)
    }
}

/// Waits for each cache to hold its first full list. kube's `Store::wait_until_ready` wakes
/// only one waiter reliably, so this task is the only one that calls it; everyone else
/// waits on the watch channel it sets.
async fn announce_sync(
    nodes: Store<Node>,
    nads: Store<DeserializeGuard<NetworkAttachmentDefinition>>,
    namespaces: Store<DeserializeGuard<Namespace>>,
    configmaps: Store<PartialObjectMeta<ConfigMap>>,
    tx: tokio::sync::watch::Sender<bool>,
    ready: Readiness,
) {
    let synced = async {
        nodes.wait_until_ready().await?;
        nads.wait_until_ready().await?;
        namespaces.wait_until_ready().await?;
        configmaps.wait_until_ready().await
    };
    match synced.await {
        Ok(()) => {
            tracing::info!("caches synced");
            let _ = tx.send(true);
            ready.set_ready();
        }
        Err(e) => tracing::error!(error = %e, "caches stopped before they synced"),
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub stores: Stores,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Holds while this replica may write (always, without leader election). The client
    /// above is fenced by the same guard; reconciles check it first to fail early.
    pub leader: LeaderGuard,
    /// Undecodable objects already reported, so each version is reported once.
    pub reported: undecodable::Reported,
}

/// Runs the controller until `shutdown` completes. Watch errors are retried with backoff
/// and reconcile errors requeued, so it never stops on its own. `client` should be fenced
/// by `leader` (see [`crate::lease::fence`]) when more than one replica runs.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    ready: Readiness,
    leader: LeaderGuard,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let wc = watcher::Config::default();
    let (nodes, nodes_w) = reflector::store();
    let (nads, nads_w) = reflector::store();
    let (namespaces, namespaces_w) = reflector::store();
    let (configmaps, configmaps_w) = reflector::store();
    let node_events = triggers::node_changes(
        reflector::reflector(
            nodes_w,
            watcher(
                Api::<PartialObjectMeta<Node>>::all(client.clone()),
                wc.clone(),
            )
            .map(|event| event.map(triggers::node_from_metadata)),
        )
        .default_backoff(),
    )
    .map(log_watch_error)
    .boxed();
    let nad_events = cached_changes(
        nads_w,
        watcher(
            Api::<DeserializeGuard<NetworkAttachmentDefinition>>::all(client.clone()),
            wc.clone(),
        ),
    );
    let ns_events = cached_changes(
        namespaces_w,
        watcher(
            Api::<DeserializeGuard<Namespace>>::all(client.clone()),
            wc.clone(),
        ),
    );
    let cm_events = cached_changes(
        configmaps_w,
        watcher(
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), &settings.namespace),
            wc.clone()
                .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .map(|event| event.map(triggers::without_managed_fields)),
    );

    let config_wc = match &settings.config_selector {
        Some(selector) => wc.clone().labels(selector),
        None => wc.clone(),
    };
    let controller = Controller::new(
        Api::<DeserializeGuard<MultusConfig>>::all(client.clone()),
        config_wc,
    )
    .with_config(ControllerConfig::default().debounce(settings.debounce))
    .reconcile_all_on(stream::select_all([
        node_events,
        nad_events,
        ns_events,
        cm_events,
    ]))
    .graceful_shutdown_on(shutdown);
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    tokio::spawn(announce_sync(
        nodes.clone(),
        nads.clone(),
        namespaces.clone(),
        configmaps.clone(),
        synced_tx,
        ready,
    ));
    let stores = Stores {
        configs: controller.store(),
        nodes,
        nads,
        namespaces,
        configmaps,
        synced,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client,
        settings,
        stores,
        metrics,
        recorder,
        leader,
        reported: undecodable::Reported::default(),
    });
    controller
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

/// Keeps `writer`'s cache filled from `events` and yields once for every object that
/// changes, which is all the controller needs to reconcile every MultusConfig.
fn cached_changes<K>(
    writer: reflector::store::Writer<K>,
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> BoxStream<'static, ()>
where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    reflector::reflector(writer, events)
        .default_backoff()
        .touched_objects()
        .map(log_watch_error)
        .boxed()
}

/// Watch errors are retried with backoff by the watcher; they are logged so that a missing
/// CRD or RBAC rule is visible.
fn log_watch_error<K>(event: Result<K, watcher::Error>) {
    if let Err(e) = event {
        tracing::warn!(error = %e, "watch failed; retrying");
    }
}

fn error_policy(
    config: Arc<DeserializeGuard<MultusConfig>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    use kube::Resource;
    if error.is_waiting() {
        // The finalizer stays; agent feedback wakes the controller, this is the fallback.
        return Action::requeue(Duration::from_secs(5));
    }
    ctx.metrics.failed(error.reason());
    tracing::warn!(
        multusconfig = config.meta().name.as_deref().unwrap_or_default(),
        reason = error.reason(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

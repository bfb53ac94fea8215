//! One reconcile: snapshot the caches, decide (pure), then apply and report.

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use multus_crds::MultusConfig;

use super::{Context, FINALIZER, undecodable, writes};
use crate::desired::{self, OwnedConfigMap, Snapshot};
use crate::lease::fence::is_not_leading;
use crate::rollout::NodeState;
use crate::status;

/// How often a MultusConfig is looked at even when nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

/// Errors of one reconcile. Variant names are metric labels.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the caches stopped before they synced")]
    CachesStopped,
    #[error("not the leader: the leader lease was not renewed in time; nothing written")]
    NotLeading,
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot serialize {0}")]
    Serialize(String),
    #[error("waiting for {0} nodes to confirm cleanup")]
    CleanupPending(usize),
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<ReconcileError>>),
}

impl ReconcileError {
    /// Waiting for agents, not a failure: kept out of the failure metric and warnings.
    pub fn is_waiting(&self) -> bool {
        match self {
            ReconcileError::CleanupPending(_) => true,
            ReconcileError::Finalizer(inner) => matches!(
                inner.as_ref(),
                finalizer::Error::CleanupFailed(ReconcileError::CleanupPending(_))
            ),
            _ => false,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::CachesStopped => "CachesStopped",
            ReconcileError::NotLeading => "NotLeading",
            ReconcileError::Kube { source, .. } if is_not_leading(source) => "NotLeading",
            ReconcileError::Kube { .. } => "KubeApi",
            ReconcileError::Serialize(_) => "Serialize",
            ReconcileError::CleanupPending(_) => "CleanupPending",
            ReconcileError::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
        }
    }

    pub(super) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
        let action = action.into();
        move |source| ReconcileError::Kube { action, source }
    }
}

pub async fn reconcile(
    guarded: Arc<DeserializeGuard<MultusConfig>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let span = tracing::info_span!("reconcile", multusconfig = %guarded.name_any());
    async move {
        let _timer = ctx.metrics.reconcile_started();
        if !ctx.leader.holds() {
            return Err(ReconcileError::NotLeading);
        }
        ctx.stores.wait_synced().await?;
        undecodable::report(&ctx).await;
        // An undecodable MultusConfig was reported above; it waits for a change.
        let Ok(config) = &guarded.0 else {
            return Ok(Action::await_change());
        };
        let config = Arc::new(config.clone());
        let api: Api<MultusConfig> = Api::all(ctx.client.clone());
        let action = finalizer(&api, FINALIZER, config, |event| async {
            match event {
                FinalizerEvent::Apply(c) => apply_config(&c, &ctx).await,
                FinalizerEvent::Cleanup(c) => cleanup_config(&c, &ctx).await,
            }
        })
        .await
        .map_err(|e| ReconcileError::Finalizer(Box::new(e)))?;
        ctx.metrics.reconciled.inc();
        Ok(action)
    }
    .instrument(span)
    .await
}

/// The caches as owned data, so a [`Snapshot`] can borrow from it.
struct Cached {
    configs: Vec<Arc<DeserializeGuard<MultusConfig>>>,
    nodes: Vec<Arc<Node>>,
}

fn snapshot<'a>(config: &'a MultusConfig, ctx: &Context, cached: &'a Cached) -> Snapshot<'a> {
    let uid = config.meta().uid.clone().unwrap_or_default();
    let owned = ctx
        .stores
        .configmaps
        .state()
        .iter()
        .filter(|cm| cm.owner_references().iter().any(|o| o.uid == uid))
        .filter_map(|cm| OwnedConfigMap::from_metadata(&cm.metadata))
        .map(|cm| (cm.node.clone(), cm))
        .collect();
    Snapshot {
        config,
        // The cache may lag behind the object being reconciled; use the object itself.
        all_configs: std::iter::once(config)
            .chain(
                cached
                    .configs
                    .iter()
                    .filter_map(|c| c.0.as_ref().ok())
                    .filter(|c| c.metadata.uid != config.metadata.uid),
            )
            .collect(),
        nodes: cached.nodes.iter().map(|n| n.as_ref()).collect(),
        nads: ctx
            .stores
            .nads
            .state()
            .iter()
            .filter_map(|n| n.0.as_ref().ok().cloned())
            .collect(),
        namespaces: ctx
            .stores
            .namespaces
            .state()
            .iter()
            .map(|ns| (ns.name_any(), ns.labels().clone()))
            .collect(),
        owned,
        old_status: config.status.as_ref(),
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

fn cached(ctx: &Context) -> Cached {
    Cached {
        configs: ctx.stores.configs.state(),
        nodes: ctx.stores.nodes.state(),
    }
}

async fn apply_config(config: &MultusConfig, ctx: &Context) -> Result<Action, ReconcileError> {
    let cached = cached(ctx);
    let snap = snapshot(config, ctx, &cached);
    let decisions = desired::decide(&snap, &ctx.settings.defaults, ctx.settings.cleanup_timeout);
    write_bundles(ctx, config, &snap, &decisions).await?;
    writes::mark_removal(ctx, config, &decisions.mark_removal, &snap.owned, &snap.now).await?;
    writes::delete_configmaps(ctx, &decisions.delete).await?;
    writes::publish_given_up(ctx, config, &decisions.given_up).await;
    writes::publish_findings(
        ctx,
        &snap.nads,
        &decisions.new_rejections,
        &decisions.new_warnings,
    )
    .await;
    record_node_states(ctx, config, &decisions.findings.nodes);
    let status = status::compute(&decisions.findings, snap.old_status, &snap.now);
    writes::write_status(ctx, config, &status).await?;
    Ok(match decisions.requeue_after {
        Some(after) => Action::requeue(after.min(RESYNC)),
        None => Action::requeue(RESYNC),
    })
}

/// Bundle writes in flight at once: a rollout to many nodes is bound by the API server's
/// round trips (each write waits for etcd), not by this process.
const PARALLEL_WRITES: usize = 16;

/// Renders and stores the bundles decided on, a few nodes at a time, so that only those
/// bundles are in memory however many nodes a rollout reaches.
async fn write_bundles(
    ctx: &Context,
    config: &MultusConfig,
    snap: &Snapshot<'_>,
    decisions: &desired::Decisions,
) -> Result<(), ReconcileError> {
    let by_name: BTreeMap<&str, &Node> = snap
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|name| (name, *n)))
        .collect();
    stream::iter(
        decisions
            .write
            .iter()
            .filter_map(|name| by_name.get(name.as_str())),
    )
    .map(Ok)
    .try_for_each_concurrent(PARALLEL_WRITES, |node| async move {
        match decisions.bundle(node) {
            Some(Ok(bundle)) => writes::write_bundle(ctx, config, &bundle).await,
            // Rendering is pure: what rendered while deciding renders again.
            Some(Err(e)) => Err(ReconcileError::Serialize(e.to_string())),
            None => Ok(()),
        }
    })
    .await
}

async fn cleanup_config(config: &MultusConfig, ctx: &Context) -> Result<Action, ReconcileError> {
    let cached = cached(ctx);
    let snap = snapshot(config, ctx, &cached);
    let (decisions, pending) = desired::decide_cleanup(&snap, ctx.settings.cleanup_timeout);
    writes::mark_removal(ctx, config, &decisions.mark_removal, &snap.owned, &snap.now).await?;
    let status = status::compute(&decisions.findings, snap.old_status, &snap.now);
    writes::write_status(ctx, config, &status).await?;
    if pending.is_empty() {
        writes::publish_given_up(ctx, config, &decisions.given_up).await;
        tracing::info!("every node confirmed cleanup (or timed out); releasing the finalizer");
        return Ok(Action::await_change());
    }
    tracing::info!(
        pending = pending.len(),
        "waiting for agents to confirm cleanup"
    );
    // An error keeps the finalizer; agent feedback or the error policy's requeue brings the
    // next look.
    Err(ReconcileError::CleanupPending(pending.len()))
}

fn record_node_states(ctx: &Context, config: &MultusConfig, nodes: &BTreeMap<String, NodeState>) {
    let name = config.name_any();
    for state in [
        "missing", "outdated", "updating", "waiting", "ready", "failing",
    ] {
        let count = nodes
            .values()
            .filter(|s| {
                let label = match s {
                    NodeState::Missing => "missing",
                    NodeState::Outdated => "outdated",
                    NodeState::Updating => "updating",
                    NodeState::Waiting => "waiting",
                    NodeState::Ready => "ready",
                    NodeState::Failing { .. } => "failing",
                };
                label == state
            })
            .count();
        ctx.metrics
            .nodes
            .get_or_create(&crate::metrics::NodeStateLabel {
                multusconfig: name.clone(),
                state: state.into(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

//! The writes of a reconcile: bundle ConfigMaps (server-side apply, one field manager),
//! removal marks, deletions, Events and the status. Each write is counted.

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

use multus_crds::bundle::{NodeBundle, REMOVE_ANNOTATION, REMOVE_REQUESTED_AT_ANNOTATION};
use multus_crds::status::MultusConfigStatus;
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use super::{Context, FIELD_MANAGER, ReconcileError};
use crate::attachments::Finding;
use crate::configmap::{bundle_configmap, node_configmap};
use crate::desired::OwnedConfigMap;

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn configmaps(ctx: &Context) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), &ctx.settings.namespace)
}

/// Stores a bundle in its node's ConfigMap, owned by the MultusConfig.
pub async fn write_bundle(
    ctx: &Context,
    config: &MultusConfig,
    bundle: &NodeBundle,
) -> Result<(), ReconcileError> {
    let mut cm = bundle_configmap(bundle, &ctx.settings.namespace)
        .map_err(|e| ReconcileError::Serialize(e.to_string()))?;
    cm.metadata.owner_references = owner_ref(config).map(|o| vec![o]);
    let name = cm.name_any();
    configmaps(ctx)
        .patch(&name, &apply_params(), &Patch::Apply(&cm))
        .await
        .map_err(ReconcileError::kube(format!("apply ConfigMap {name}")))?;
    ctx.metrics.wrote("configmap");
    tracing::info!(node = %bundle.manifest.node, configmap = %name, bundle = %bundle.manifest.bundle_hash, "stored bundle");
    Ok(())
}

/// Marks the nodes' ConfigMaps for removal, keeping their content (read here: the cache
/// holds metadata only) so the agent knows what it owned.
pub async fn mark_removal(
    ctx: &Context,
    config: &MultusConfig,
    nodes: &[String],
    owned: &BTreeMap<String, OwnedConfigMap>,
    now: &Time,
) -> Result<(), ReconcileError> {
    for node in nodes {
        let Some(existing) = owned.get(node) else {
            continue;
        };
        let name = existing.name.clone();
        let Some(stored) = configmaps(ctx)
            .get_opt(&name)
            .await
            .map_err(ReconcileError::kube(format!("read ConfigMap {name}")))?
        else {
            continue;
        };
        let mut cm = node_configmap(
            node,
            &ctx.settings.namespace,
            existing.observed.bundle_hash.as_deref(),
            &[
                (REMOVE_ANNOTATION, "true".to_string()),
                (REMOVE_REQUESTED_AT_ANNOTATION, now.0.to_string()),
            ],
            stored.data,
        );
        cm.metadata.owner_references = owner_ref(config).map(|o| vec![o]);
        configmaps(ctx)
            .patch(&name, &apply_params(), &Patch::Apply(&cm))
            .await
            .map_err(ReconcileError::kube(format!(
                "mark ConfigMap {name} for removal"
            )))?;
        ctx.metrics.wrote("configmap");
        tracing::info!(node = %node, configmap = %name, "asked the agent to remove its files");
    }
    Ok(())
}

/// Deletes ConfigMaps; one already gone is fine.
pub async fn delete_configmaps(ctx: &Context, names: &[String]) -> Result<(), ReconcileError> {
    for name in names {
        match configmaps(ctx).delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.metrics.wrote("configmap_delete");
                tracing::info!(configmap = %name, "deleted bundle ConfigMap");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(ReconcileError::kube(format!("delete ConfigMap {name}"))(e)),
        }
    }
    Ok(())
}

/// Writes the status when it differs from what is stored.
pub async fn write_status(
    ctx: &Context,
    config: &MultusConfig,
    status: &MultusConfigStatus,
) -> Result<(), ReconcileError> {
    if config.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": MultusConfig::api_version(&()),
        "kind": MultusConfig::kind(&()),
        "status": status,
    });
    let api: Api<MultusConfig> = Api::all(ctx.client.clone());
    api.patch_status(&config.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(ReconcileError::kube("write status"))?;
    ctx.metrics.wrote("status");
    Ok(())
}

/// Warning Events on the NADs behind new rejections and lint findings. Failures to publish
/// are logged, never fatal: the status carries the same facts.
pub async fn publish_findings(
    ctx: &Context,
    nads: &[NetworkAttachmentDefinition],
    rejected: &[Finding],
    warnings: &[Finding],
) {
    let tagged = rejected
        .iter()
        .map(|f| (f, "Rejected"))
        .chain(warnings.iter().map(|f| (f, "Linted")));
    for (finding, action) in tagged {
        let Some(nad) = nads.iter().find(|n| n.key() == finding.nad) else {
            continue;
        };
        let reference = ObjectReference {
            api_version: Some("k8s.cni.cncf.io/v1".into()),
            kind: Some("NetworkAttachmentDefinition".into()),
            name: nad.metadata.name.clone(),
            namespace: nad.metadata.namespace.clone(),
            uid: nad.metadata.uid.clone(),
            ..ObjectReference::default()
        };
        let note = match action {
            "Rejected" => format!(
                "not written to any node: {}: {}",
                finding.path, finding.message
            ),
            _ => format!("{}: {}", finding.path, finding.message),
        };
        warn_event(ctx, &reference, finding.reason.as_str(), action, &note).await;
    }
}

/// Publishes a Warning Event (the note cut to the API's 1 KiB). A failure is logged, never
/// fatal: the status carries the same facts.
async fn warn_event(
    ctx: &Context,
    regarding: &ObjectReference,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: action.into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, regarding).await {
        Ok(()) => ctx.metrics.wrote("event"),
        Err(e) => tracing::warn!(
            object = regarding.name.as_deref().unwrap_or_default(),
            reason,
            error = %e,
            "could not publish event"
        ),
    }
}

/// A Warning Event on the MultusConfig naming the nodes whose agents never confirmed file
/// removal before the timeout (offline or broken nodes may still hold its files).
pub async fn publish_given_up(ctx: &Context, config: &MultusConfig, nodes: &[String]) {
    if nodes.is_empty() {
        return;
    }
    tracing::warn!(nodes = %nodes.join(","), "gave up waiting for agents to confirm file removal");
    let note = format!(
        "no confirmation of file removal within {} s from: {}; their files may still be on the host",
        ctx.settings.cleanup_timeout.as_secs(),
        nodes.join(", ")
    );
    let regarding = config.object_ref(&());
    warn_event(ctx, &regarding, "CleanupTimedOut", "Cleanup", &note).await;
}

/// The MultusConfig as controller of its ConfigMaps. `blockOwnerDeletion` makes a
/// foreground deletion (`kubectl delete --cascade=foreground`) wait for them too.
fn owner_ref(config: &MultusConfig) -> Option<OwnerReference> {
    config.controller_owner_ref(&()).map(|o| OwnerReference {
        block_owner_deletion: Some(true),
        ..o
    })
}

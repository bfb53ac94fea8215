//! One reconcile's decisions, computed purely from a snapshot of the cluster: which
//! ConfigMaps to write, mark for removal or delete, and the findings for the status.

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;
use std::time::Duration;

use multus_crds::bundle::{
    AgentState, NODE_ANNOTATION, NodeBundle, REMOVE_ANNOTATION, REMOVE_REQUESTED_AT_ANNOTATION,
};
use multus_crds::status::{MultusConfigStatus, RejectedAttachment};
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use crate::attachments::{self, Finding, NamespaceLabels};
use crate::ownership;
use crate::render::{self, PreparedConfig, RenderDefaults, RenderError};
use crate::rollout::{self, NodeState, Observed};
use crate::status::Findings;

/// A bundle ConfigMap this MultusConfig owns, as observed from its metadata (the operator
/// never keeps bundle data: the bundle hash is an annotation too).
#[derive(Clone, Debug)]
pub struct OwnedConfigMap {
    pub name: String,
    pub node: String,
    pub observed: Observed,
    pub remove_requested_at: Option<Time>,
}

impl OwnedConfigMap {
    /// Reads a ConfigMap; `None` when it names no node.
    pub fn from_configmap(cm: &ConfigMap) -> Option<OwnedConfigMap> {
        OwnedConfigMap::from_metadata(&cm.metadata)
    }

    /// Reads a ConfigMap's metadata; `None` when it names no node.
    pub fn from_metadata(metadata: &ObjectMeta) -> Option<OwnedConfigMap> {
        let annotations = metadata.annotations.as_ref();
        let node = annotations.and_then(|a| a.get(NODE_ANNOTATION))?.clone();
        let marked = annotations
            .and_then(|a| a.get(REMOVE_ANNOTATION))
            .is_some_and(|v| v == "true");
        let remove_requested_at = if marked {
            annotations
                .and_then(|a| a.get(REMOVE_REQUESTED_AT_ANNOTATION))
                .and_then(|t| t.parse().ok())
                .map(Time)
                .or(Some(Time(Default::default())))
        } else {
            None
        };
        Some(OwnedConfigMap {
            name: metadata.name.clone().unwrap_or_default(),
            node,
            observed: Observed::from_annotations(annotations),
            remove_requested_at,
        })
    }
}

/// The cluster as one reconcile sees it.
pub struct Snapshot<'a> {
    pub config: &'a MultusConfig,
    pub all_configs: Vec<&'a MultusConfig>,
    pub nodes: Vec<&'a Node>,
    pub nads: Vec<NetworkAttachmentDefinition>,
    pub namespaces: NamespaceLabels,
    /// This config's ConfigMaps by node name.
    pub owned: BTreeMap<String, OwnedConfigMap>,
    pub old_status: Option<&'a MultusConfigStatus>,
    pub now: Time,
}

/// What to do.
#[derive(Debug, Default)]
pub struct Decisions {
    /// Nodes whose bundle is stored now: new, changed, or a removal mark to clear. Only
    /// names: each bundle is rendered again when it is written ([`Decisions::bundle`]), so a
    /// rollout over thousands of nodes never holds every node's bundle at once.
    pub write: Vec<String>,
    /// The config's stage of rendering, kept for [`Decisions::bundle`].
    prepared: Option<PreparedConfig>,
    /// Node names whose ConfigMap gets the removal mark.
    pub mark_removal: Vec<String>,
    /// ConfigMap names to delete.
    pub delete: Vec<String>,
    pub findings: Findings,
    /// Rejections and warnings not reported before (for Events).
    pub new_rejections: Vec<Finding>,
    pub new_warnings: Vec<Finding>,
    /// When to look again even if nothing changes (a removal timeout).
    pub requeue_after: Option<Duration>,
    /// Nodes given up on: their agent did not confirm file removal within the timeout (the
    /// node may be offline). Their ConfigMaps are deleted all the same; this is reported.
    pub given_up: Vec<String>,
}

impl Decisions {
    /// The bundle to store for `node` (one of [`Decisions::write`]): the same bytes that
    /// decided the write, since rendering is pure.
    pub fn bundle(&self, node: &Node) -> Option<Result<NodeBundle, RenderError>> {
        self.prepared
            .as_ref()
            .map(|p| p.node(node).map(|rendered| rendered.bundle))
    }
}

/// Decides the normal (not deleting) reconcile.
pub fn decide(
    snap: &Snapshot<'_>,
    defaults: &RenderDefaults,
    cleanup_timeout: Duration,
) -> Decisions {
    let mut d = Decisions {
        findings: Findings {
            generation: snap.config.metadata.generation,
            ..Findings::default()
        },
        ..Decisions::default()
    };
    let spec = &snap.config.spec;
    let assignment = match ownership::assign(snap.config, &snap.all_configs, &snap.nodes) {
        Ok(a) => a,
        Err(e) => {
            d.findings.spec_error = Some((e.reason().into(), e.to_string()));
            return d;
        }
    };
    d.findings.conflicted = assignment.conflicted.clone();
    let budget = match rollout::Budget::parse(&spec.rollout.max_unavailable) {
        Ok(b) => b,
        Err(e) => {
            d.findings.spec_error = Some((
                "InvalidSpec".into(),
                format!("spec.rollout.maxUnavailable: {e}"),
            ));
            return d;
        }
    };
    let catalog = match attachments::build(spec.attachments.as_ref(), &snap.nads, &snap.namespaces)
    {
        Ok(c) => c,
        Err(e) => {
            d.findings.spec_error = Some(("InvalidSpec".into(), e.to_string()));
            return d;
        }
    };
    report_catalog(&catalog, snap.old_status, &mut d);

    let prepared = match render::prepare(snap.config, &catalog, &snap.nads, defaults) {
        Ok(p) => p,
        Err(e) => {
            // Errors of this stage come from the spec or the primary NAD and hit every node
            // alike: keep what nodes have and report it once.
            d.findings.spec_error = Some((e.reason().into(), e.to_string()));
            return d;
        }
    };

    let by_name: BTreeMap<&str, &Node> = snap
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|name| (name, *n)))
        .collect();
    // Only the bundle hash of each node is kept: holding every node's bundle would cost a
    // bundle's size per node, though in a steady state none is written.
    let mut states: BTreeMap<String, NodeState> = BTreeMap::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut missing_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node_name in &assignment.owned {
        let Some(node) = by_name.get(node_name.as_str()) else {
            continue;
        };
        match prepared.node(node) {
            Ok(rendered) => {
                for failure in rendered.failed_attachments {
                    missing_values
                        .entry(failure.nad)
                        .or_default()
                        .push(node_name.clone());
                }
                let owned = snap.owned.get(node_name);
                let marked = owned.is_some_and(|cm| cm.remove_requested_at.is_some());
                let observed = owned.filter(|_| !marked).map(|cm| &cm.observed);
                let hash = rendered.bundle.manifest.bundle_hash;
                let state = rollout::node_state(&hash, observed);
                if marked || matches!(state, NodeState::Missing | NodeState::Outdated) {
                    hashes.insert(node_name.clone(), hash);
                }
                states.insert(node_name.clone(), state);
            }
            Err(e @ RenderError::TooLarge { .. }) => {
                d.findings
                    .render_failures
                    .insert(node_name.clone(), (e.reason().into(), e.to_string()));
            }
            Err(e) => {
                d.findings.spec_error = Some((e.reason().into(), e.to_string()));
                return d;
            }
        }
    }
    for (nad, nodes) in missing_values {
        d.findings.rejected.push(RejectedAttachment {
            name: nad,
            reason: "MissingNodeValue".into(),
            message: format!(
                "a placeholder's label or annotation is missing on {}: {}",
                plural(nodes.len(), "node"),
                nodes.join(", ")
            ),
        });
    }

    let plan = rollout::plan(&states, budget.nodes(states.len()));
    for node in &plan.write {
        if hashes.remove(node).is_some() {
            d.write.push(node.clone());
        }
    }
    // A node whose ConfigMap already holds the current bundle but still carries a removal
    // mark (selected again before its agent cleaned up) gets the mark cleared.
    for (node, hash) in hashes {
        if snap.owned.get(&node).is_some_and(|cm| {
            cm.remove_requested_at.is_some() && cm.observed.bundle_hash.as_deref() == Some(&hash)
        }) {
            d.write.push(node);
        }
    }
    d.prepared = Some(prepared);
    // What this round writes counts as updated: the status describes the state after it.
    for node in &plan.write {
        states.insert(node.clone(), NodeState::Updating);
    }
    d.findings.halted = plan.halted;
    d.findings.nodes = states;

    let wanted: Vec<&String> = assignment.owned.iter().collect();
    let existing: Vec<&str> = by_name.keys().copied().collect();
    remove_unwanted(snap, &wanted, &existing, cleanup_timeout, &mut d);
    d
}

/// Decides the cleanup of a MultusConfig being deleted: every ConfigMap is marked for
/// removal; the finalizer may go once `pending` is empty.
pub fn decide_cleanup(snap: &Snapshot<'_>, cleanup_timeout: Duration) -> (Decisions, Vec<String>) {
    let mut d = Decisions::default();
    let existing: Vec<&str> = snap
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    remove_unwanted(snap, &[], &existing, cleanup_timeout, &mut d);
    let pending: Vec<String> = snap
        .owned
        .values()
        .filter(|cm| !d.delete.contains(&cm.name))
        .map(|cm| cm.node.clone())
        .collect();
    // During deletion the ConfigMaps go with the MultusConfig (owner references); deleting
    // them one by one is not needed.
    d.delete.clear();
    d.findings.generation = snap.config.metadata.generation;
    d.findings.cleanup = Some(if pending.is_empty() && d.given_up.is_empty() {
        "cleanup confirmed on every node".into()
    } else if pending.is_empty() {
        format!(
            "cleanup finished; gave up on {} that did not confirm file removal within {} s: {}",
            plural(d.given_up.len(), "node"),
            cleanup_timeout.as_secs(),
            d.given_up.join(", ")
        )
    } else {
        format!(
            "deleting: waiting for {} to confirm file removal: {}",
            plural(pending.len(), "node"),
            pending.join(", ")
        )
    });
    (d, pending)
}

/// ConfigMaps of nodes not in `wanted`: gone nodes are deleted at once; others are marked,
/// then deleted when the agent confirms or the timeout passes.
fn remove_unwanted(
    snap: &Snapshot<'_>,
    wanted: &[&String],
    existing_nodes: &[&str],
    timeout: Duration,
    d: &mut Decisions,
) {
    for (node, cm) in &snap.owned {
        if wanted.contains(&node) {
            continue;
        }
        if !existing_nodes.contains(&node.as_str()) {
            d.delete.push(cm.name.clone());
            continue;
        }
        let Some(requested) = &cm.remove_requested_at else {
            d.mark_removal.push(node.clone());
            d.requeue_after = min_duration(d.requeue_after, timeout);
            continue;
        };
        let confirmed = cm.observed.agent_state == Some(AgentState::Removed);
        let waited = seconds_between(requested, &snap.now);
        if confirmed || waited >= timeout.as_secs_f64() {
            d.delete.push(cm.name.clone());
            if !confirmed {
                d.given_up.push(node.clone());
            }
        } else {
            let left = Duration::from_secs_f64((timeout.as_secs_f64() - waited).max(1.0));
            d.requeue_after = min_duration(d.requeue_after, left);
        }
    }
}

/// Lists rejections and warnings, and which of them the old status did not mention yet.
fn report_catalog(
    catalog: &attachments::Catalog,
    old: Option<&MultusConfigStatus>,
    d: &mut Decisions,
) {
    for finding in &catalog.rejected {
        let rejected = RejectedAttachment {
            name: finding.nad.clone(),
            reason: finding.reason.as_str().into(),
            message: format!("{}: {}", finding.path, finding.message),
        };
        let known = old.is_some_and(|o| o.attachments.rejected.contains(&rejected));
        if !known {
            d.new_rejections.push(finding.clone());
        }
        d.findings.rejected.push(rejected);
    }
    let old_warnings = old
        .and_then(|o| {
            o.conditions
                .iter()
                .find(|c| c.type_ == multus_crds::status::condition::ATTACHMENT_WARNINGS)
        })
        .map(|c| c.message.clone())
        .unwrap_or_default();
    for finding in &catalog.warnings {
        let text = finding.to_string();
        if !old_warnings.contains(&text) {
            d.new_warnings.push(finding.clone());
        }
        d.findings.warnings.push(text);
    }
    d.findings.materialized = catalog.attachments.iter().map(|a| a.key()).collect();
}

fn seconds_between(from: &Time, to: &Time) -> f64 {
    let span = to.0.duration_since(from.0);
    span.as_secs_f64()
}

fn min_duration(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

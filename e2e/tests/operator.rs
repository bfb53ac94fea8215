//! The operator against the real control plane: bundles per node, selection changes, NAD
//! edits, invalid NADs, conflicts, agent feedback and rollout, deletion with cleanup, and
//! a restart that writes nothing. Each test runs its own operator over its own MultusConfigs
//! (label `e2e.multus.dev/test`), nodes and namespace.

use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use multus_crds::bundle::{
    AgentState, MANAGED_BY_LABEL, NODE_ANNOTATION, NodeBundle, REMOVE_ANNOTATION,
    node_configmap_name,
};
use multus_crds::nad::NODE_CONFIG_ANNOTATION;
use multus_crds::status::condition;
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};
use multus_e2e::operator::{RunningOperator, TEST_LABEL, agent_reports, eventually};
use multus_e2e::process::expect_success;
use multus_e2e::test_env::TestEnv;
use multus_e2e::{ControlPlane, fixtures};
use multus_operator::attachments;
use multus_operator::render::{RenderDefaults, render_node};

/// Deadline for what the operator itself does (about a second on an idle machine); it holds
/// with both cores busy and another test running beside.
const WAIT: Duration = Duration::from_secs(60);
/// Deadline for kube-controller-manager's garbage collector to delete dependents of a
/// deleted owner. It knows our CRDs from its start (the harness installs them first), so
/// this takes seconds; the bound allows two of its 30 s discovery syncs (a constant in
/// kube-controller-manager) and its work queue on a loaded machine.
const GC_WAIT: Duration = Duration::from_secs(90);
const POOL_LABEL: &str = "e2e.multus.dev/pool";
const UPLINK_LABEL: &str = "e2e.multus.dev/uplink";

/// One test's corner of the cluster, and the client the operator runs with: the chart's
/// operator ServiceAccount.
struct Env {
    base: TestEnv,
    operator_client: Client,
}

multus_e2e::deref_to_test_env!(Env);

impl Env {
    async fn new(prefix: &str) -> Env {
        let base = TestEnv::new(prefix).await.unwrap();
        let operator_client = base.identities.operator_client(base.cp).await.unwrap();
        Env {
            base,
            operator_client,
        }
    }

    fn operator(&self) -> RunningOperator {
        RunningOperator::start(
            self.operator_client.clone(),
            &self.ns,
            &self.test,
            Duration::from_secs(60),
        )
    }

    async fn node(&self, name: &str, uplink: &str) -> Node {
        let pool = (POOL_LABEL, self.test.as_str());
        let uplink = (UPLINK_LABEL, uplink);
        fixtures::node(&self.client, name, &[pool, uplink], &[])
            .await
            .unwrap()
    }

    /// Creates one node of this test's pool per uplink, named `<test>-n1`, `<test>-n2`...;
    /// returns their names.
    async fn nodes<const N: usize>(&self, uplinks: [&str; N]) -> [String; N] {
        let names = std::array::from_fn(|i| format!("{}-n{}", self.test, i + 1));
        for (name, uplink) in names.iter().zip(uplinks) {
            self.node(name, uplink).await;
        }
        names
    }

    async fn nad(&self, name: &str, config: &str, node_config: Option<&str>) {
        let mut annotations = BTreeMap::new();
        if let Some(template) = node_config {
            annotations.insert(NODE_CONFIG_ANNOTATION, template);
        }
        self.base.nad(name, &annotations, config).await.unwrap();
    }

    fn nads(&self) -> Api<NetworkAttachmentDefinition> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn configs(&self) -> Api<MultusConfig> {
        Api::all(self.client.clone())
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a MultusConfig over this test's node pool and NAD namespace.
    async fn config(&self, name: &str, extra: Value) -> MultusConfig {
        let mut spec = json!({
            "nodeSelector": { "matchLabels": { POOL_LABEL: self.test } },
            "primary": { "file": "10-calico.conflist" },
            "attachments": { "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": self.ns } } },
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let object = serde_json::from_value(json!({
            "apiVersion": "operator.multus.dev/v1alpha1",
            "kind": "MultusConfig",
            "metadata": { "name": name, "labels": { TEST_LABEL: self.test } },
            "spec": spec,
        }))
        .unwrap();
        self.configs()
            .create(&PostParams::default(), &object)
            .await
            .unwrap()
    }

    /// Creates the pool's nodes (as [`Self::nodes`]), starts the operator, creates the
    /// MultusConfig `name` (as [`Self::config`]) and waits until every node has its bundle.
    async fn operate<const N: usize>(
        &self,
        name: &str,
        extra: Value,
        uplinks: [&str; N],
    ) -> (RunningOperator, [String; N], BTreeMap<String, ConfigMap>) {
        let nodes = self.nodes(uplinks).await;
        let op = self.operator();
        self.config(name, extra).await;
        let bundles = self
            .wait_bundles(&format!("{N} bundles"), |b| b.len() == N)
            .await;
        (op, nodes, bundles)
    }

    /// Bundle ConfigMaps by node name.
    async fn bundles(&self) -> BTreeMap<String, ConfigMap> {
        let list = self
            .configmaps()
            .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}=multus-operator")))
            .await
            .unwrap();
        list.items
            .into_iter()
            .filter_map(|cm| {
                let node = cm
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(NODE_ANNOTATION)?
                    .clone();
                Some((node, cm))
            })
            .collect()
    }

    /// Waits until the bundles by node name satisfy `check`; returns them.
    async fn wait_bundles(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, ConfigMap>) -> bool,
    ) -> BTreeMap<String, ConfigMap> {
        self.wait_bundles_within(what, WAIT, check).await
    }

    /// [`Self::wait_bundles`] with a deadline of `timeout`.
    async fn wait_bundles_within(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&BTreeMap<String, ConfigMap>) -> bool,
    ) -> BTreeMap<String, ConfigMap> {
        eventually(what, timeout, || async {
            let bundles = self.bundles().await;
            if check(&bundles) {
                Ok(bundles)
            } else {
                Err(format!("{:?}", bundles.keys().collect::<Vec<_>>()))
            }
        })
        .await
    }

    /// Waits until there are `n` bundles and every one satisfies `check`.
    async fn wait_every_bundle(
        &self,
        what: &str,
        n: usize,
        check: impl Fn(&ConfigMap) -> bool,
    ) -> BTreeMap<String, ConfigMap> {
        self.wait_bundles(what, |b| b.len() == n && b.values().all(&check))
            .await
    }

    /// Waits until there are `n` bundles, each marked for removal.
    async fn wait_marked_for_removal(&self, n: usize) -> BTreeMap<String, ConfigMap> {
        let what = format!("{n} bundles marked for removal");
        self.wait_every_bundle(&what, n, |cm| removal_mark(cm).is_some())
            .await
    }

    async fn wait_condition(&self, config: &str, type_: &str, status: &str) -> MultusConfig {
        eventually(&format!("{config} {type_}={status}"), WAIT, || async {
            let c = self
                .configs()
                .get(config)
                .await
                .map_err(|e| e.to_string())?;
            let found = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|x| x.type_ == type_))
                .map(|x| (x.status.clone(), x.message.clone()));
            match found {
                Some((s, _)) if s == status => Ok(c),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Plays the agent of `cm`'s node reporting `state` for the bundle `hash`, with the
    /// error `message`.
    async fn report(&self, cm: &ConfigMap, state: AgentState, hash: &str, message: &str) {
        let name = cm.metadata.name.as_deref().unwrap();
        agent_reports(&self.client, &self.ns, name, state, hash, message)
            .await
            .unwrap();
    }

    /// Plays every node's agent reporting its current bundle as applied.
    async fn all_agents_applied(&self, bundles: &BTreeMap<String, ConfigMap>) {
        for cm in bundles.values() {
            let hash = bundle_of(cm).manifest.bundle_hash;
            self.report(cm, AgentState::Applied, &hash, "").await;
        }
    }

    async fn label_node(&self, node: &str, key: &str, value: Option<&str>) {
        let patch = json!({ "metadata": { "labels": { key: value } } });
        Api::<Node>::all(self.client.clone())
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

/// Waits for an Event about an object that `about` recognizes.
async fn wait_event(
    events: &Api<Event>,
    what: &str,
    about: impl Fn(&ObjectReference) -> bool,
) -> Event {
    multus_e2e::operator::wait_event(events, what, WAIT, |e| {
        e.regarding.as_ref().is_some_and(&about)
    })
    .await
}

fn bundle_of(cm: &ConfigMap) -> NodeBundle {
    NodeBundle::from_configmap_data(cm.data.as_ref().unwrap()).unwrap()
}

/// Whether the bundle holds the file `key`.
fn has_file(cm: &ConfigMap, key: &str) -> bool {
    cm.data.as_ref().is_some_and(|d| d.contains_key(key))
}

/// The bundle's removal mark, if it has one.
fn removal_mark(cm: &ConfigMap) -> Option<&str> {
    let annotations = cm.metadata.annotations.as_ref()?;
    annotations.get(REMOVE_ANNOTATION).map(String::as_str)
}

fn file_json(cm: &ConfigMap, key: &str) -> Option<Value> {
    cm.data
        .as_ref()?
        .get(key)
        .and_then(|t| serde_json::from_str(t).ok())
}

/// Whether the bundle's Multus config has the rollout test's change: `logLevel: debug`.
fn logs_debug(cm: &ConfigMap) -> bool {
    file_json(cm, "00-multus.conf").is_some_and(|v| v["logLevel"] == "debug")
}

const BRIDGE: &str = r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"br-e2e","ipam":{"type":"host-local","subnet":"10.99.0.0/16"}}"#;
const MACVLAN_TEMPLATE: &str = r#"{"cniVersion":"0.3.1","type":"macvlan","master":"{{ node.labels[e2e.multus.dev/uplink] }}","mode":"bridge"}"#;

#[multus_e2e::test]
async fn one_config_three_nodes_two_nads_follow_every_change() {
    let env = Env::new("bundles").await;
    let nodes = env.nodes(["eth1", "eth2", "eth3"]).await;
    env.nad("plain", BRIDGE, None).await;
    env.nad("perhost", "", Some(MACVLAN_TEMPLATE)).await;
    let op = env.operator();
    env.config(
        "bundles",
        json!({ "rollout": { "maxUnavailable": "100%" } }),
    )
    .await;

    let bundles = env
        .wait_every_bundle("three bundles with both attachments", 3, |cm| {
            has_file(cm, &format!("{}-plain.conf", env.ns))
                && has_file(cm, &format!("{}-perhost.conf", env.ns))
        })
        .await;

    // Exactly the files the pure renderer gives for the objects as the API server stores them.
    let config = env.configs().get("bundles").await.unwrap();
    let nads = env.nads().list(&ListParams::default()).await.unwrap().items;
    let catalog = attachments::build(
        config.spec.attachments.as_ref(),
        &nads,
        &BTreeMap::from([(
            env.ns.clone(),
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), env.ns.clone())]),
        )]),
    )
    .unwrap();
    let defaults = RenderDefaults {
        service_account: multus_crds::multus_config::ServiceAccountRef {
            namespace: env.ns.clone(),
            name: "multus".into(),
        },
    };
    for (i, node_name) in nodes.iter().enumerate() {
        let node = Api::<Node>::all(env.client.clone())
            .get(node_name)
            .await
            .unwrap();
        let expected = render_node(&config, &node, &catalog, &nads, &defaults)
            .unwrap()
            .bundle;
        let cm = &bundles[node_name];
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some(node_configmap_name(node_name).as_str())
        );
        assert_eq!(
            cm.data.as_ref().unwrap(),
            &expected.to_configmap_data().unwrap(),
            "bundle of {node_name}"
        );
        let perhost = file_json(cm, &format!("{}-perhost.conf", env.ns)).unwrap();
        assert_eq!(perhost["master"], format!("eth{}", i + 1));
        assert_eq!(perhost["name"], "perhost");
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, config.metadata.uid.clone().unwrap());
    }

    // A node leaves the pool: its ConfigMap asks the agent to clean up, and goes once the
    // agent confirms.
    env.label_node(&nodes[2], POOL_LABEL, None).await;
    let bundles = env
        .wait_bundles("removal mark on the third node", |b| {
            b.get(&nodes[2])
                .is_some_and(|cm| removal_mark(cm) == Some("true"))
        })
        .await;
    env.report(&bundles[&nodes[2]], AgentState::Removed, "", "")
        .await;
    env.wait_bundles("third node's ConfigMap deleted", |b| {
        !b.contains_key(&nodes[2])
    })
    .await;

    // The node is labelled back into the pool: it gets its bundle again.
    env.label_node(&nodes[2], POOL_LABEL, Some(&env.test)).await;
    env.wait_bundles("bundle for the relabelled node", |b| {
        b.len() == 3
            && b.get(&nodes[2])
                .is_some_and(|cm| removal_mark(cm).is_none())
    })
    .await;

    // A new node joins the pool: it gets a bundle.
    let fourth = format!("{}-n4", env.test);
    env.node(&fourth, "eth4").await;
    env.wait_bundles("bundle for the new node", |b| {
        b.contains_key(&fourth) && b.len() == 4
    })
    .await;

    // Editing a NAD reaches every bundle; deleting it removes the entry everywhere.
    env.nad("plain", &BRIDGE.replace("br-e2e", "br-edited"), None)
        .await;
    let plain = format!("{}-plain.conf", env.ns);
    env.wait_every_bundle("edited NAD in every bundle", 4, |cm| {
        file_json(cm, &plain).is_some_and(|v| v["bridge"] == "br-edited")
    })
    .await;
    env.nads()
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_every_bundle("deleted NAD gone from every bundle", 4, |cm| {
        !has_file(cm, &plain)
    })
    .await;
    op.stop().await;
}

#[multus_e2e::test]
async fn an_invalid_nad_gets_an_event_and_a_condition_and_reaches_no_node() {
    let env = Env::new("invalid").await;
    env.nodes(["eth1"]).await;
    env.nad("good", BRIDGE, None).await;
    env.nad("broken", r#"{"cniVersion":"0.3.1","type":"#, None)
        .await;
    // Valid, but Multus will never write device info for it: no resource name annotation.
    env.nad(
        "devinfo",
        r#"{"cniVersion":"0.3.1","type":"host-device","capabilities":{"CNIDeviceInfoFile":true}}"#,
        None,
    )
    .await;
    let op = env.operator();
    env.config("invalid", json!({})).await;

    let config = env
        .wait_condition("invalid", condition::INVALID_ATTACHMENTS, "True")
        .await;
    let status = config.status.unwrap();
    let rejected: Vec<&str> = status
        .attachments
        .rejected
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rejected, vec![format!("{}/broken", env.ns)]);
    assert_eq!(status.attachments.rejected[0].reason, "InvalidJson");
    assert_eq!(
        status.attachments.materialized,
        vec![format!("{}/devinfo", env.ns), format!("{}/good", env.ns)]
    );
    let warnings = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::ATTACHMENT_WARNINGS)
        .expect("AttachmentWarnings condition");
    assert_eq!(warnings.status, "True");
    assert!(
        warnings.message.contains(&format!("{}/devinfo", env.ns)),
        "{}",
        warnings.message
    );

    let bundles = env.wait_bundles("one bundle", |b| b.len() == 1).await;
    for cm in bundles.values() {
        let data = cm.data.as_ref().unwrap();
        assert!(data.contains_key(&format!("{}-good.conf", env.ns)));
        assert!(!data.keys().any(|k| k.contains("broken")));
    }

    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    let event = wait_event(&events, "a Warning event on the broken NAD", |r| {
        r.name.as_deref() == Some("broken")
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("InvalidJson"));
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains("not written to any node")
    );
    let lint = wait_event(&events, "a Warning event on the devinfo NAD", |r| {
        r.name.as_deref() == Some("devinfo")
    })
    .await;
    assert_eq!(lint.type_.as_deref(), Some("Warning"));
    assert_eq!(lint.reason.as_deref(), Some("DeviceInfoWithoutResource"));
    op.stop().await;
}

#[multus_e2e::test]
async fn a_node_that_never_confirms_removal_is_given_up_after_the_timeout_and_reported() {
    let env = Env::new("giveup").await;
    let [node] = env.nodes(["eth1"]).await;
    let op = RunningOperator::start(
        env.operator_client.clone(),
        &env.ns,
        &env.test,
        Duration::from_secs(3),
    );
    env.config("abandoned", json!({})).await;
    env.wait_bundles("one bundle", |b| b.len() == 1).await;
    let uid = env.configs().get("abandoned").await.unwrap().metadata.uid;
    env.configs()
        .delete("abandoned", &DeleteParams::default())
        .await
        .unwrap();
    // No agent ever answers: the finalizer is released once the timeout has passed.
    eventually("MultusConfig gone after the timeout", WAIT, || async {
        match env.configs().get_opt("abandoned").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let events: Api<Event> = Api::all(env.client.clone());
    let event = wait_event(
        &events,
        "a CleanupTimedOut event on the MultusConfig",
        |r| r.uid == uid,
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("CleanupTimedOut"));
    assert!(
        event.note.as_deref().unwrap_or_default().contains(&node),
        "{event:?}"
    );
    // Waiting for agents is not a reconcile failure.
    assert!(
        !op.metrics.encode().contains("CleanupPending"),
        "{}",
        op.metrics.encode()
    );
    op.stop().await;
}

#[multus_e2e::test]
async fn the_newer_of_two_configs_over_one_node_is_conflicted() {
    let env = Env::new("conflict").await;
    let [node] = env.nodes(["eth1"]).await;
    let op = env.operator();
    // The older config has the name that sorts last, so only the age rule makes it win
    // (ties in the one-second creation time would go by name).
    let older = env.config("z-older", json!({})).await;
    env.wait_bundles("bundle of the older config", |b| b.len() == 1)
        .await;
    let created = older
        .metadata
        .creation_timestamp
        .map(|t| t.0.as_second())
        .unwrap();
    eventually(
        "the clock passes the older config's creation second",
        WAIT,
        || async {
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            if now > created {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    )
    .await;
    env.config("a-newer", json!({})).await;
    let newer = env
        .wait_condition("a-newer", condition::CONFLICTED, "True")
        .await;
    let message = newer
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == condition::CONFLICTED)
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("{node} (owned by z-older)")),
        "{message}"
    );
    env.wait_condition("z-older", condition::CONFLICTED, "False")
        .await;
    let bundles = env.bundles().await;
    let owner = &bundles[&node].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.name, "z-older");
    op.stop().await;
}

#[multus_e2e::test]
async fn agent_feedback_drives_counts_ready_and_a_staged_rollout_that_halts_on_failure() {
    let env = Env::new("rollout").await;
    let one_at_a_time = json!({ "rollout": { "maxUnavailable": 1 } });
    let (op, nodes, bundles) = env.operate("rollout", one_at_a_time, ["eth1"; 3]).await;

    // Every agent applies the first bundle: the config becomes Ready, and kubectl can wait
    // for it.
    env.all_agents_applied(&bundles).await;
    let out = ControlPlane::shared()
        .kubectl_from_async(&[
            "wait",
            "--for=condition=Ready",
            "mcfg/rollout",
            "--timeout=30s",
        ])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}; status: {:?}",
        String::from_utf8_lossy(&out.stderr),
        env.configs().get("rollout").await.unwrap().status
    );
    let status = env.configs().get("rollout").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.nodes.selected,
            status.nodes.updated,
            status.nodes.ready,
            status.nodes.failing
        ),
        (3, 3, 3, 0)
    );
    assert_eq!(status.ready_nodes, "3/3");

    // A spec change rolls out one node at a time.
    let patch = json!({ "spec": { "multus": { "logLevel": "debug" } } });
    env.configs()
        .patch("rollout", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let first = eventually("exactly one node updated", WAIT, || async {
        let b = env.bundles().await;
        let updated: Vec<String> = b
            .iter()
            .filter(|(_, cm)| logs_debug(cm))
            .map(|(n, _)| n.clone())
            .collect();
        if updated.len() == 1 {
            Ok(updated[0].clone())
        } else {
            Err(format!("{updated:?}"))
        }
    })
    .await;
    assert_eq!(first, nodes[0], "nodes update in name order");
    let status = eventually("status of generation 2", WAIT, || async {
        let s = env
            .configs()
            .get("rollout")
            .await
            .map_err(|e| e.to_string())?
            .status;
        match s {
            Some(s) if s.observed_generation == Some(2) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        (status.nodes.updated, status.nodes.ready),
        (1, 0),
        "{status:?}"
    );

    // The first updated node fails: the rollout stops there and the status names it.
    let cm = &env.bundles().await[&first];
    let hash = bundle_of(cm).manifest.bundle_hash;
    env.report(
        cm,
        AgentState::Failed,
        &hash,
        "cannot write 00-multus.conf: read-only file system",
    )
    .await;
    let config = env
        .wait_condition("rollout", condition::DEGRADED, "True")
        .await;
    let status = config.status.unwrap();
    assert_eq!(status.failing_nodes[0].node, first);
    assert!(
        status.failing_nodes[0]
            .message
            .contains("read-only file system")
    );
    assert!(status.message.contains(&first), "{}", status.message);
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::PROGRESSING)
        .unwrap();
    assert_eq!(progressing.reason, "RolloutHalted");
    // The other two still hold the old bundle.
    let b = env.bundles().await;
    for n in &nodes[1..] {
        assert!(
            file_json(&b[n], "00-multus.conf").is_some_and(|v| v.get("logLevel").is_none()),
            "{n} was updated"
        );
    }

    // The failing node recovers: the next node gets the bundle.
    env.report(cm, AgentState::Applied, &hash, "").await;
    env.wait_bundles("second node updated", |b| logs_debug(&b[&nodes[1]]))
        .await;
    op.stop().await;
}

#[multus_e2e::test]
async fn deleting_a_config_waits_for_cleanup_then_its_configmaps_go() {
    let env = Env::new("delete").await;
    let (op, nodes, bundles) = env.operate("doomed", json!({}), ["eth1"; 2]).await;
    // What makes the ConfigMaps go with their MultusConfig is ours: each is owned by it,
    // as its controller, and blocks its deletion until the garbage collector has run.
    let owner = env.configs().get("doomed").await.unwrap();
    for cm in bundles.values() {
        let refs = cm.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.len(), 1, "{refs:?}");
        assert_eq!(refs[0].kind, "MultusConfig");
        assert_eq!(refs[0].name, "doomed");
        assert_eq!(Some(&refs[0].uid), owner.metadata.uid.as_ref());
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));
    }
    env.configs()
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();

    let marked = env.wait_marked_for_removal(2).await;
    // One agent confirms; the MultusConfig must still exist, held by its finalizer.
    env.report(&marked[&nodes[0]], AgentState::Removed, "", "")
        .await;
    let waiting = eventually("status naming the node still cleaning up", WAIT, || async {
        let c = env
            .configs()
            .get("doomed")
            .await
            .map_err(|e| e.to_string())?;
        let message = c.status.map(|s| s.message).unwrap_or_default();
        if message.contains("waiting for 1 node") {
            Ok(message)
        } else {
            Err(message)
        }
    })
    .await;
    assert!(waiting.contains(&nodes[1]), "{waiting}");
    assert!(env.configs().get_opt("doomed").await.unwrap().is_some());

    env.report(&bundles[&nodes[1]], AgentState::Removed, "", "")
        .await;
    eventually("MultusConfig gone", WAIT, || async {
        match env.configs().get_opt("doomed").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Deleting them is the garbage collector's part (upstream's speed, bounded by GC_WAIT).
    env.wait_bundles_within("ConfigMaps garbage collected", GC_WAIT, BTreeMap::is_empty)
        .await;
    op.stop().await;
}

#[multus_e2e::test]
async fn restarting_the_operator_with_nothing_changed_writes_nothing() {
    let env = Env::new("restart").await;
    env.nad("plain", BRIDGE, None).await;
    env.nad("broken", "{", None).await;
    let all_at_once = json!({ "rollout": { "maxUnavailable": "100%" } });
    let (op, _, bundles) = env.operate("steady", all_at_once, ["eth1"; 3]).await;
    env.all_agents_applied(&bundles).await;
    env.wait_condition("steady", condition::READY, "True").await;
    let reconciles_before = op.metrics.reconciles.get();
    op.stop().await;
    assert!(reconciles_before > 0);

    let versions = |bundles: &BTreeMap<String, ConfigMap>| -> Vec<String> {
        bundles
            .values()
            .map(|cm| cm.metadata.resource_version.clone().unwrap_or_default())
            .collect()
    };
    let before_cms = versions(&env.bundles().await);
    let before_config = env
        .configs()
        .get("steady")
        .await
        .unwrap()
        .metadata
        .resource_version;

    let op = env.operator();
    eventually("a completed reconcile after the restart", WAIT, || async {
        let n = op.metrics.reconciled.get();
        if n >= 1 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    // One more reconcile, caused by a change that does not matter to this config (a node
    // outside its pool): still nothing to write.
    let done = op.metrics.reconciled.get();
    let outsider = format!("{}-outsider", env.test);
    fixtures::node(&env.client, &outsider, &[], &[])
        .await
        .unwrap();
    env.label_node(&outsider, "e2e.multus.dev/unrelated", Some("yes"))
        .await;
    eventually("another completed reconcile", WAIT, || async {
        let n = op.metrics.reconciled.get();
        if n > done { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    assert_eq!(
        op.metrics.total_writes(),
        0,
        "writes after restart:\n{}",
        op.metrics.encode()
    );
    assert_eq!(versions(&env.bundles().await), before_cms);
    assert_eq!(
        env.configs()
            .get("steady")
            .await
            .unwrap()
            .metadata
            .resource_version,
        before_config
    );
    op.stop().await;
}

/// Runs `multus-operator uninstall` for this test's MultusConfigs with the chart's
/// uninstall hook identity.
async fn uninstall(env: &Env, timeout: &str) -> tokio::process::Child {
    let kubeconfig = env
        .identities
        .uninstall_kubeconfig(ControlPlane::shared())
        .await
        .unwrap();
    let binary = tokio::task::spawn_blocking(|| {
        multus_e2e::binaries_local::workspace_bin("multus-operator")
    })
    .await
    .unwrap()
    .unwrap();
    tokio::process::Command::new(binary)
        .args(["uninstall", "--namespace", &env.ns, "--timeout", timeout])
        .args([
            "--multusconfig-selector",
            &format!("{TEST_LABEL}={}", env.test),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[multus_e2e::test]
async fn uninstall_deletes_the_configs_and_returns_once_every_agent_removed_its_files() {
    let env = Env::new("uninstall").await;
    let (op, _, _) = env.operate("leaving", json!({}), ["eth1"; 2]).await;

    // Too short a wait with no agent answering: it fails, naming what is left.
    let early = uninstall(&env, "2s")
        .await
        .wait_with_output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success());
    assert!(
        stderr.contains("MultusConfigs still present after 2s: leaving"),
        "{stderr}"
    );

    // With both agents confirming, it returns successfully once the config is gone.
    let child = uninstall(&env, "60s").await;
    let marked = env.wait_marked_for_removal(2).await;
    for cm in marked.values() {
        env.report(cm, AgentState::Removed, "", "").await;
    }
    let done = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("uninstall returned")
        .unwrap();
    let stdout = expect_success(&done, "multus-operator uninstall");
    assert!(stdout.contains("every MultusConfig is gone"), "{stdout}");
    assert!(env.configs().get_opt("leaving").await.unwrap().is_none());
    op.stop().await;
}

//! Two operator processes (the real binary, the chart's operator identity, two pod-bound
//! tokens so that the audit log tells them apart) under leader election. The leader is frozen
//! (SIGSTOP) past its lease: the standby takes over and carries on; the old leader, resumed,
//! sends no write, steps down and says so on /readyz and /metrics. Writes are counted from
//! the API server's audit log of a control plane of this test's own. Last, the write fence
//! on a real client: a write refused by a lapsed guard never reaches the API server.

use base64::Engine;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::{MANAGED_BY_LABEL, NODE_ANNOTATION};
use multus_e2e::identities::Identities;
use multus_e2e::operator::{TEST_LABEL, eventually};
use multus_e2e::replica::Replica;
use multus_e2e::{ControlPlane, fixtures, http, unique_name};
use multus_operator::lease::LeaderGuard;
use multus_operator::lease::fence::{WriteFenceLayer, is_not_leading};

/// The lease duration the replicas run with: the leader renews every 1.5 s and stops
/// writing 4 s after its last renewal; a standby takes over after 6 s without a change.
const LEASE_SECONDS: u64 = 6;
/// Deadline for what an operator does on its own (about a second when idle): start, sync
/// caches, write bundles. It holds with both cores busy and another test running beside.
const WAIT: Duration = Duration::from_secs(60);
/// Deadline for the standby to take over a frozen leader's Lease: one lease duration after
/// it last saw a renewal plus its 1.5 s polling, so about 8 s; the bound allows a loaded
/// API server and scheduler several times that.
const TAKEOVER: Duration = Duration::from_secs(60);
const POOL_LABEL: &str = "e2e.multus.dev/pool";

/// The replicas' flags beyond the common ones: a short lease, prompt reconciles.
fn replica_flags() -> Vec<String> {
    vec![
        "--lease-duration-seconds".into(),
        LEASE_SECONDS.to_string(),
        "--debounce-ms".into(),
        "100".into(),
    ]
}

fn pid(replica: &Replica) -> Pid {
    Pid::from_raw(replica.child.id().map(|p| p as i32).expect("running"))
}

async fn metric(replica: &Replica, name: &str) -> f64 {
    let (_, text) = http::get(&replica.addr, "/metrics").await.unwrap();
    http::metric(&text, name).unwrap_or(0.0)
}

/// A copy of `kubeconfig` that later calls cannot overwrite, and the name of the Pod its
/// token is bound to (the `kubernetes.io.pod.name` claim; the audit log's
/// `user.extra["authentication.kubernetes.io/pod-name"]`).
fn keep(kubeconfig: &Path, dir: &Path, name: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, &text).unwrap();
    let parsed: Value = serde_saphyr::from_str(&text).unwrap();
    let token = parsed["users"][0]["user"]["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .unwrap();
    let claims: Value = serde_json::from_slice(&claims).unwrap();
    let pod = claims["kubernetes.io"]["pod"]["name"].as_str().unwrap();
    (path, pod.to_string())
}

/// The audit log, one JSON event per line (metadata level, ResponseComplete stage).
struct Audit {
    path: PathBuf,
    admin: Client,
    ns: String,
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl Audit {
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until a marker object written now (as admin) is in the log: every request
    /// answered before it is logged by then.
    async fn flush(&self) {
        let name = unique_name("audit-marker");
        let marker: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": self.ns },
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(self.admin.clone(), &self.ns)
            .create(&PostParams::default(), &marker)
            .await
            .unwrap();
        // The API server writes the event as it answers; a few seconds at most when loaded.
        eventually("the marker in the audit log", WAIT, || async {
            let seen = self
                .events()
                .iter()
                .any(|e| e["verb"] == "create" && e["objectRef"]["name"] == name.as_str());
            if seen { Ok(()) } else { Err("not yet".into()) }
        })
        .await;
    }

    /// Writes (by resource) that the user bound to `pod` sent.
    async fn writes_by(&self, pod: &str) -> BTreeMap<String, usize> {
        self.flush().await;
        let mut counts = BTreeMap::new();
        for e in self.events() {
            let by_pod = e["user"]["extra"]["authentication.kubernetes.io/pod-name"]
                .as_array()
                .is_some_and(|names| names.iter().any(|n| n == pod));
            let write = WRITE_VERBS.iter().any(|v| e["verb"] == *v);
            if by_pod && write && e["stage"] == "ResponseComplete" {
                let resource = e["objectRef"]["resource"].as_str().unwrap_or("?");
                let sub = e["objectRef"]["subresource"].as_str().unwrap_or("");
                let key = format!(
                    "{} {resource}{}{sub}",
                    e["verb"].as_str().unwrap_or("?"),
                    if sub.is_empty() { "" } else { "/" }
                );
                *counts.entry(key).or_default() += 1;
            }
        }
        counts
    }
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().sum()
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("multus-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn multus_config(client: &Client, ns: &str, name: &str, pool: &str) {
    let object: MultusConfig = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": name, "labels": { TEST_LABEL: ns } },
        "spec": {
            "nodeSelector": { "matchLabels": { POOL_LABEL: pool } },
            "primary": { "file": "10-calico.conflist" },
            "attachments": {},
        },
    }))
    .unwrap();
    Api::<MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Waits until `node` has its bundle ConfigMap.
async fn wait_bundle(client: &Client, ns: &str, node: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually(&format!("a bundle for {node}"), WAIT, || async {
        let list = cms
            .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}=multus-operator")))
            .await
            .map_err(|e| e.to_string())?;
        let nodes: Vec<String> = list
            .items
            .iter()
            .filter_map(|cm| {
                cm.metadata
                    .annotations
                    .as_ref()?
                    .get(NODE_ANNOTATION)
                    .cloned()
            })
            .collect();
        if nodes.iter().any(|n| n == node) {
            Ok(())
        } else {
            Err(format!("{nodes:?}"))
        }
    })
    .await;
}

#[multus_e2e::test]
async fn a_frozen_leader_is_replaced_and_sends_no_write_after_it_resumes() {
    let cp = ControlPlane::own(ControlPlane::start_with_audit).await;
    let (admin, ns) = fixtures::test_namespace(&cp, "fencing").await.unwrap();
    let identities = Identities::apply(&cp, &ns, "thin").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each call binds a new token to a new Pod of the operator account, as two replicas of
    // the Deployment get: one ServiceAccount, two users in the audit log.
    let (kubeconfig_a, pod_a) = keep(
        &identities.operator_kubeconfig(&cp).await.unwrap(),
        dir.path(),
        "a",
    );
    let (kubeconfig_b, pod_b) = keep(
        &identities.operator_kubeconfig(&cp).await.unwrap(),
        dir.path(),
        "b",
    );
    assert_ne!(pod_a, pod_b);
    let audit = Audit {
        path: cp.dir.join("audit.log"),
        admin: admin.clone(),
        ns: ns.clone(),
    };
    let (node_one, node_two) = (unique_name("one"), unique_name("two"));
    fixtures::node(&admin, &node_one, &[(POOL_LABEL, "one")], &[])
        .await
        .unwrap();
    fixtures::node(&admin, &node_two, &[(POOL_LABEL, "two")], &[])
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);

    let flags = replica_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut a = Replica::start(&kubeconfig_a, &ns, "replica-a", &flags)
        .await
        .unwrap();
    a.wait_readyz(200, "ready", WAIT).await;
    let b = Replica::start(&kubeconfig_b, &ns, "replica-b", &flags)
        .await
        .unwrap();
    b.wait_readyz(200, "standby", WAIT).await;
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-a"));
    multus_config(&admin, &ns, "first", "one").await;
    wait_bundle(&admin, &ns, &node_one).await;
    // The leader renews: it holds the Lease past one lease duration while the standby
    // watches it (renewals every 1.5 s; the bound allows a loaded machine).
    eventually(
        "replica-a renewed its Lease past one duration",
        WAIT,
        || async {
            let spec = leases
                .get("multus-operator")
                .await
                .map_err(|e| e.to_string())?
                .spec
                .unwrap_or_default();
            let held = match (&spec.acquire_time, &spec.renew_time) {
                (Some(a), Some(r)) => r.0.duration_since(a.0).as_secs_f64(),
                _ => 0.0,
            };
            if spec.holder_identity.as_deref() == Some("replica-a") && held > LEASE_SECONDS as f64 {
                Ok(())
            } else {
                Err(format!(
                    "{:?} renewed {held:.1} s after acquiring",
                    spec.holder_identity
                ))
            }
        },
    )
    .await;
    b.wait_readyz(200, "standby", WAIT).await;

    // Freeze the leader past its lease.
    kill(pid(&a), Signal::SIGSTOP).unwrap();
    let frozen = std::time::Instant::now();
    eventually("replica-b holds the Lease", TAKEOVER, || async {
        match lease_holder(&leases).await {
            Some(h) if h == "replica-b" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let took_over = frozen.elapsed();
    // The new leader's work goes on.
    multus_config(&admin, &ns, "second", "two").await;
    wait_bundle(&admin, &ns, &node_two).await;
    b.wait_readyz(200, "ready", WAIT).await;
    let a_before = audit.writes_by(&pod_a).await;

    // Resume the old leader. It still holds watches and a reconcile queue, and it learns of
    // "second" through them: everything it would write is refused before it is sent.
    kill(pid(&a), Signal::SIGCONT).unwrap();
    let body = a.wait_readyz(200, "standby: stepped down", WAIT).await;
    assert_eq!(metric(&a, "multus_operator_leader").await, 0.0);
    assert_eq!(
        metric(&a, "multus_operator_leader_step_downs_total").await,
        1.0
    );
    assert_eq!(metric(&b, "multus_operator_leader").await, 1.0);
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-b"));
    let a_after = audit.writes_by(&pod_a).await;
    let b_after = audit.writes_by(&pod_b).await;
    let logs = a.log_text();
    let (_, a_metrics) = http::get(&a.addr, "/metrics").await.unwrap();
    let refused: Vec<&str> = a_metrics
        .lines()
        .filter(|l| l.starts_with("multus_operator_reconcile_failures_total"))
        .collect();

    println!("lease {LEASE_SECONDS} s; replica-b took over {took_over:.1?} after replica-a froze");
    println!(
        "replica-a writes before it froze: {} {a_before:?}",
        total(&a_before)
    );
    println!(
        "replica-a writes after it resumed: {}",
        total(&a_after) - total(&a_before)
    );
    println!("replica-b writes in all: {} {b_after:?}", total(&b_after));
    println!("replica-a /readyz after resuming: {body}");
    println!("replica-a reconcile failures after resuming: {refused:?}");
    assert_eq!(
        a_after, a_before,
        "the old leader wrote after it resumed; logs:\n{logs}"
    );
    assert!(total(&a_before) > 0, "replica-a never wrote: {a_before:?}");
    assert!(
        b_after.keys().any(|k| k.starts_with("patch configmaps")),
        "replica-b wrote no bundle: {b_after:?}"
    );
    assert!(logs.contains("leadership lost"), "{logs}");
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "replica-a exited; logs:\n{logs}"
    );
    let _ = a.child.start_kill();

    // The fence on a real client stack: once the guard lapses, a write fails in the
    // client and never reaches the API server; reads go on.
    let guard = LeaderGuard::elected();
    let kubeconfig = Kubeconfig::read_from(&cp.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let fenced = ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&WriteFenceLayer(guard.clone()))
        .build();
    let cms: Api<ConfigMap> = Api::namespaced(fenced, &ns);
    let fenced_name = unique_name("fenced");
    let object: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": fenced_name, "namespace": ns },
    }))
    .unwrap();
    guard.arm(std::time::Instant::now() + Duration::from_secs(60));
    cms.create(&PostParams::default(), &object).await.unwrap();
    guard.disarm();
    let refused = cms.delete(&fenced_name, &Default::default()).await;
    assert!(refused.as_ref().is_err_and(is_not_leading), "{refused:?}");
    assert!(cms.get(&fenced_name).await.is_ok(), "reads pass the fence");
    audit.flush().await;
    let deletes = audit
        .events()
        .iter()
        .filter(|e| e["verb"] == "delete" && e["objectRef"]["name"] == fenced_name.as_str())
        .count();
    println!("a delete refused by a lapsed guard reached the API server {deletes} times");
    assert_eq!(deletes, 0);
}

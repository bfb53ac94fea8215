//! The real control plane itself: release version, CRD admission with CEL, printer columns,
//! node-bound tokens, ValidatingAdmissionPolicy, and no leaked processes.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::time::{Duration, Instant};

use multus_e2e::fixtures::{self, BoundTo};
use multus_e2e::process::{expect_success, leftovers, wait_until};
use multus_e2e::{ControlPlane, unique_name};

/// MultusConfig specs the API server must refuse, each with (a part of) its message.
const REJECTED: &str = include_str!("fixtures/rejected-multusconfigs.yaml");

fn mcfg_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("operator.multus.dev", "v1alpha1", "MultusConfig");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

fn mcfg(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("valid object")
}

/// A test namespace holding the ServiceAccount `multus`, and a Node: what the token tests
/// mint tokens for and bind them to.
struct Accounts {
    admin: Client,
    ns: String,
    node_name: String,
    node: Node,
}

impl Accounts {
    async fn new(prefix: &str) -> Accounts {
        let (admin, ns) = fixtures::test_namespace(ControlPlane::shared(), prefix)
            .await
            .unwrap();
        fixtures::service_account(&admin, &ns, "multus")
            .await
            .unwrap();
        let node_name = unique_name("node");
        let node = fixtures::node(&admin, &node_name, &[], &[]).await.unwrap();
        Accounts {
            admin,
            ns,
            node_name,
            node,
        }
    }

    /// A 600 s token of `multus` bound to `bound`, a client that authenticates with it, and
    /// who the API server says that client is (asserted to be the account).
    async fn multus_token(&self, bound: BoundTo<'_>) -> (Client, UserInfo) {
        let minted = fixtures::token(&self.admin, &self.ns, "multus", bound, 600)
            .await
            .unwrap();
        let token = minted.status.and_then(|s| s.token).expect("token issued");
        let client = ControlPlane::shared()
            .client_with_token(&token)
            .await
            .unwrap();
        let user = fixtures::whoami(&client).await.unwrap();
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{}:multus", self.ns).as_str())
        );
        (client, user)
    }
}

/// The Kubernetes release e2e/testenv pins, read from its go.mod.
fn pinned_release() -> String {
    let gomod =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testenv/kube/go.mod"))
            .expect("testenv/kube/go.mod");
    gomod
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("require k8s.io/kubernetes v")
                .or_else(|| l.strip_prefix("k8s.io/kubernetes v"))
        })
        .map(|v| format!("v{}", v.split_whitespace().next().unwrap_or_default()))
        .expect("go.mod requires k8s.io/kubernetes")
}

#[multus_e2e::test]
async fn the_control_plane_serves_the_pinned_upstream_release() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, pinned_release());
    eprintln!(
        "control plane {} ready in {:.1}s",
        version.git_version,
        cp.startup.as_secs_f64()
    );
}

#[multus_e2e::test]
async fn invalid_multusconfigs_are_rejected_by_the_api_server_with_readable_messages() {
    let client = ControlPlane::shared().client().await.unwrap();
    let api = mcfg_api(&client);
    let cases: Vec<serde_json::Value> = serde_saphyr::from_str(REJECTED).expect("valid YAML");
    assert!(!cases.is_empty());
    for row in cases {
        let (case, spec) = (row["case"].as_str().expect("case"), row["spec"].clone());
        let expected = row["message"].as_str().expect("message");
        let name = unique_name("invalid");
        let err = api
            .create(&PostParams::default(), &mcfg(&name, spec))
            .await
            .expect_err(case);
        let kube::Error::Api(status) = &err else {
            panic!("{case}: expected an API rejection, got {err}");
        };
        assert_eq!(status.code, 422, "{case}: {status:?}");
        assert!(
            status.message.contains(expected),
            "{case}: message {:?} lacks {expected:?}",
            status.message
        );
    }
}

#[multus_e2e::test]
async fn a_valid_multusconfig_is_stored_with_defaults_and_kubectl_shows_its_columns() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let api = mcfg_api(&client);
    let name = unique_name("valid");
    let spec = json!({
        "mode": "thick",
        "primary": { "networkAttachment": "kube-system/pod-network" },
        "rollout": { "maxUnavailable": "25%" },
        "kubeconfig": { "refreshBeforeExpiry": "10m" },
    });
    let stored = api
        .create(&PostParams::default(), &mcfg(&name, spec))
        .await
        .unwrap();
    let spec = &stored.data["spec"];
    assert_eq!(spec["paths"]["multusConfDir"], "/etc/cni/multus/net.d");
    assert_eq!(spec["kubeconfig"]["expirationSeconds"], 3600);
    assert_eq!(spec["kubeconfig"]["enabled"], true);
    assert_eq!(spec["multus"]["cniVersion"], "0.3.1");
    assert_eq!(spec["thick"]["daemonPathPrefix"], "/host");

    // The typed client reads back what the API server stored.
    let typed: Api<multus_crds::MultusConfig> = Api::all(client.clone());
    let back = typed.get(&name).await.unwrap();
    assert_eq!(back.spec.mode, multus_crds::multus_config::Mode::Thick);

    let status = json!({ "status": { "readyNodes": "2/3", "message": "rolling out", "conditions": [{
        "type": "Ready", "status": "False", "reason": "Progressing", "message": "1 node updating",
        "lastTransitionTime": "2026-01-01T00:00:00Z" }] } });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let out = cp.kubectl(&["get", "mcfg", &name]).unwrap();
    let text = expect_success(&out, "kubectl get mcfg");
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "MODE", "NODES", "READY", "AGE", "MESSAGE"]);
    let row = text.lines().nth(1).unwrap_or_default();
    for expected in [name.as_str(), "thick", "2/3", "False", "rolling out"] {
        assert!(row.contains(expected), "row {row:?} lacks {expected:?}");
    }
}

#[multus_e2e::test]
async fn a_node_bound_token_authenticates_until_its_node_is_deleted() {
    let accounts = Accounts::new("tokens").await;
    let (admin, node_name) = (&accounts.admin, &accounts.node_name);
    let uid = accounts.node.metadata.uid.clone().unwrap();

    let bound = BoundTo::Node {
        name: node_name,
        uid: &uid,
    };
    let (as_multus, user) = accounts.multus_token(bound).await;
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/node-name"),
        Some(&vec![node_name.clone()])
    );

    Api::<Node>::all(admin.clone())
        .delete(node_name, &DeleteParams::default())
        .await
        .unwrap();
    // The API server caches a successful token authentication for 10 s and learns of the
    // deletion through its informers: 60 s holds that several times over on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fixtures::whoami(&as_multus).await {
            Err(kube::Error::Api(status)) if status.code == 401 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "token still accepted 60s after its node was deleted: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[multus_e2e::test]
async fn a_validating_admission_policy_really_denies_requests() {
    let cp = ControlPlane::shared();
    let (client, ns) = fixtures::test_namespace(cp, "vap").await.unwrap();
    let policy_name = unique_name("deny-forbidden");
    let gvk = |kind| GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let policies: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&gvk("ValidatingAdmissionPolicy")),
    );
    let bindings: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&gvk("ValidatingAdmissionPolicyBinding")),
    );
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": policy_name },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"] }] },
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('e2e.multus.dev/forbidden' in object.metadata.labels)",
                "message": "configmaps labelled e2e.multus.dev/forbidden are denied" }]
        }
    }))
    .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": policy_name },
        "spec": {
            "policyName": policy_name,
            "validationActions": ["Deny"],
            "matchResources": { "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": ns } } }
        }
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let allowed: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "allowed" }, "data": { "a": "b" } }))
    .unwrap();
    cms.create(&PostParams::default(), &allowed).await.unwrap();

    // The policy takes effect once the API server's informer has loaded it (about a second
    // when idle); wait for that, bounded generously for a busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0;
    let denial = loop {
        attempt += 1;
        let forbidden: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": format!("forbidden-{attempt}"),
                          "labels": { "e2e.multus.dev/forbidden": "yes" } } }))
        .unwrap();
        match cms.create(&PostParams::default(), &forbidden).await {
            Err(kube::Error::Api(status)) => break status,
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "policy never enforced within 60s"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    };
    assert_eq!(denial.code, 422, "{denial:?}");
    assert!(
        denial
            .message
            .contains("configmaps labelled e2e.multus.dev/forbidden are denied"),
        "{}",
        denial.message
    );
}

/// Run by `no_process_outlives_its_test_process` in a child process: starts etcd under the
/// watchdog, prints its state directory and exits without any cleanup.
#[multus_e2e::test]
#[ignore = "helper run in a child process"]
fn helper_start_etcd_and_exit_abruptly() {
    if std::env::var_os("MULTUS_E2E_LEAK_HELPER").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("multus-e2e-{}-leak", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let etcd = multus_e2e::binaries::bin("etcd").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls=http://127.0.0.1:{port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{port}"),
        format!("--listen-peer-urls=http://127.0.0.1:{}", port + 1),
    ];
    let child = multus_e2e::process::Supervised::start("etcd", &etcd, &args, &dir.join("etcd.log"))
        .unwrap();
    println!("LEAK-DIR {}", dir.display());
    // Exit the way a test binary does: statics and leaked values are never dropped.
    std::mem::forget(child);
    std::process::exit(0);
}

#[multus_e2e::test]
fn no_process_outlives_its_test_process() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_start_etcd_and_exit_abruptly",
            "--ignored",
            "--nocapture",
        ])
        .env("MULTUS_E2E_LEAK_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LEAK-DIR "))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no dir: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    // The watchdog polls its owner every 0.5 s and gives the child 10 s after SIGTERM.
    let gone = wait_until(Duration::from_secs(30), || {
        leftovers().iter().all(|l| !l.contains(&dir))
    });
    assert!(
        gone,
        "processes of {dir} outlived their test process: {:?}",
        leftovers()
    );
    let _ = std::fs::remove_dir_all(&dir);
    // And nothing from any earlier test binary or run is left either (a control plane whose
    // test process just ended gets a short grace period to stop).
    let clean = wait_until(Duration::from_secs(30), || leftovers().is_empty());
    assert!(clean, "leftover e2e processes: {:?}", leftovers());
}

#[multus_e2e::test]
async fn a_pod_bound_token_names_its_pod_and_the_pods_node() {
    let accounts = Accounts::new("podtoken").await;
    let (admin, ns, node_name) = (&accounts.admin, &accounts.ns, &accounts.node_name);
    // A pod already bound to the node, as a DaemonSet's pod is (no scheduler here).
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "agent", "namespace": ns },
        "spec": {
            "nodeName": node_name,
            "serviceAccountName": "multus",
            "containers": [{ "name": "agent", "image": "multus-node-agent" }],
        },
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let uid = pod.metadata.uid.clone().unwrap();

    let bound = BoundTo::Pod {
        name: "agent",
        uid: &uid,
    };
    let (_, user) = accounts.multus_token(bound).await;
    // These claims are what an admission policy can key a node's permissions on.
    let extra = user.extra.unwrap_or_default();
    assert_eq!(
        extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["agent".to_string()])
    );
    assert_eq!(
        extra.get("authentication.kubernetes.io/node-name"),
        Some(&vec![node_name.clone()])
    );
}

/// `#[multus_e2e::test]` runs an `async` test on a multi-threaded runtime with two workers,
/// and the test holds a slot named after it while it runs.
#[multus_e2e::test]
async fn the_test_attribute_runs_an_async_test_on_two_workers_holding_its_slot() {
    let runtime = tokio::runtime::Handle::current();
    assert_eq!(
        runtime.runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    assert_eq!(runtime.metrics().num_workers(), 2);
    let me = "control_plane::the_test_attribute_runs_an_async_test_on_two_workers_holding_its_slot";
    assert!(
        multus_e2e::slot::running().iter().any(|t| t == me),
        "{me} holds no slot: {:?}",
        multus_e2e::slot::running()
    );
}

/// A plain test gets libtest's runner, no runtime, and its slot too.
#[multus_e2e::test]
fn the_test_attribute_gives_a_plain_test_its_slot_and_no_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let me = "control_plane::the_test_attribute_gives_a_plain_test_its_slot_and_no_runtime";
    assert!(
        multus_e2e::slot::running().iter().any(|t| t == me),
        "{me} holds no slot: {:?}",
        multus_e2e::slot::running()
    );
}

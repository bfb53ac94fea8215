//! Faults of the control plane itself, on a control plane of this binary's own (its etcd and
//! kube-apiserver are restarted, which other tests must not see): etcd restarted in the
//! middle of a rollout, and kube-apiserver down across a token rotation. Nothing is lost, the
//! rollout completes, and the host kubeconfig never holds an expired token while the API
//! server is reachable.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;

use multus_crds::bundle::{NodeBundle, feedback};
use multus_e2e::ControlPlane;
use multus_e2e::agent::RunningAgent;
use multus_e2e::operator::eventually;
use multus_e2e::scenario::OneNode;

/// Our operator and agent after a restart of the store or the API server: the clients'
/// watches back off for a few seconds before they reconnect, on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(90);

/// The tests restart parts of the one control plane: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This binary's own control plane.
fn own() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        std::thread::spawn(ControlPlane::start)
            .join()
            .expect("control plane thread")
            .expect("control plane")
    })
}

async fn state(scenario: &OneNode) -> (Option<String>, Option<String>, Option<String>) {
    let cm = scenario.configmap().await.ok().flatten();
    let hash = cm
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .and_then(|d| NodeBundle::from_configmap_data(d).ok())
        .map(|b| b.manifest.bundle_hash);
    let annotations = cm.and_then(|c| c.metadata.annotations).unwrap_or_default();
    (
        hash,
        annotations.get(feedback::APPLIED_HASH).cloned(),
        annotations.get(feedback::STATE).cloned(),
    )
}

/// Waits until the ConfigMap holds a bundle other than `previous` and the agent has
/// applied it.
async fn applied_after(scenario: &OneNode, previous: Option<&str>, what: &str) -> String {
    eventually(what, WAIT, || async {
        match state(scenario).await {
            (Some(want), Some(have), Some(s))
                if want == have && s == "Applied" && Some(want.as_str()) != previous =>
            {
                Ok(want)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn applied(scenario: &OneNode, what: &str) -> String {
    applied_after(scenario, None, what).await
}

/// Waits until the agent has counted one more failed token rotation than it has now.
async fn another_failed_rotation(agent: &RunningAgent, what: &str) {
    let failures = || async {
        multus_e2e::http::metric(
            &agent.metrics().await,
            "multus_node_agent_token_rotation_failures_total",
        )
        .unwrap_or_default()
    };
    let before = failures().await;
    eventually(what, WAIT, || async {
        let n = failures().await;
        (n > before).then_some(()).ok_or(format!("{n} failures"))
    })
    .await;
}

fn bridge_nad(ns: &str, bridge: &str) -> serde_json::Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "rolling", "namespace": ns },
        "spec": { "config": json!({ "cniVersion": "0.3.1", "type": "bridge", "bridge": bridge }).to_string() },
    })
}

#[multus_e2e::test]
async fn etcd_restarted_during_a_rollout_loses_nothing_and_the_rollout_completes() {
    let _serial = SERIAL.lock().await;
    let cp = own();
    let scenario = OneNode::start(cp, "etcd", json!({ "attachments": {} }))
        .await
        .unwrap();
    let nads: Api<multus_crds::NetworkAttachmentDefinition> =
        Api::namespaced(scenario.client.clone(), &scenario.ns);
    let apply = |bridge: &'static str| {
        let nads = nads.clone();
        let nad = bridge_nad(&scenario.ns, bridge);
        async move {
            nads.patch(
                "rolling",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&nad),
            )
            .await
            .map(|_| ())
        }
    };
    apply("br-one").await.unwrap();
    let root = scenario.root.path();
    let agent = scenario.agent().await.unwrap();
    let first = applied(&scenario, "the first bundle applied").await;

    // A new bundle is on its way to the node when the store goes down and comes back.
    apply("br-two").await.unwrap();
    eventually("the second bundle in the ConfigMap", WAIT, || async {
        match state(&scenario).await {
            (Some(hash), _, _) if hash != first => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::task::spawn_blocking(|| own().restart_etcd())
        .await
        .unwrap()
        .unwrap();
    let second = applied_after(
        &scenario,
        Some(&first),
        "the second bundle applied after etcd's restart",
    )
    .await;
    assert_ne!(first, second);
    let file = root.join(format!("etc/cni/multus/net.d/{}-rolling.conf", scenario.ns));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["bridge"], "br-two");

    // Later changes still flow: the watches came back.
    apply("br-three").await.unwrap();
    applied_after(&scenario, Some(&second), "a third bundle applied").await;
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["bridge"], "br-three");
    scenario.finish(agent).await;
}

/// The token in the host kubeconfig on disk, and whom the API server says it is.
async fn token_in_file(
    cp: &ControlPlane,
    root: &std::path::Path,
) -> (String, Result<String, String>) {
    let text = std::fs::read_to_string(root.join("etc/cni/net.d/multus.d/multus.kubeconfig"))
        .unwrap_or_default();
    let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_default();
    let token = config["users"][0]["user"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let who = match cp.client_with_token(&token).await {
        Ok(client) => Api::<SelfSubjectReview>::all(client)
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map(|r| {
                r.status
                    .and_then(|s| s.user_info)
                    .and_then(|u| u.username)
                    .unwrap_or_default()
            })
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    (token, who)
}

/// The `exp` claim of a JWT, in Unix seconds.
fn jwt_expiry(token: &str) -> u64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    claims["exp"].as_u64().unwrap_or_default()
}

#[multus_e2e::test]
async fn the_api_server_down_across_a_token_rotation_leaves_a_working_token_in_the_file() {
    let _serial = SERIAL.lock().await;
    let cp = own();
    // 600 s tokens (the API server's minimum) replaced 590 s before expiry: a rotation every
    // ten seconds or so.
    let scenario = OneNode::start(
        cp,
        "rotate",
        json!({ "kubeconfig": { "expirationSeconds": 600, "refreshBeforeExpiry": "590s" } }),
    )
    .await
    .unwrap();
    let root = scenario.root.path();
    let agent = scenario.agent().await.unwrap();
    applied(&scenario, "the bundle applied").await;
    let (before, who) = token_in_file(cp, root).await;
    assert_eq!(
        who,
        Ok(format!("system:serviceaccount:{}:multus", scenario.ns))
    );

    tokio::task::spawn_blocking(|| own().stop_apiserver())
        .await
        .unwrap();
    // While it is down rotations fail; the file keeps its token, which is still valid for
    // minutes.
    another_failed_rotation(&agent, "a failed rotation counted").await;
    let (kept, _) = token_in_file(cp, root).await;
    another_failed_rotation(&agent, "another failed rotation counted").await;
    let (still, _) = token_in_file(cp, root).await;
    assert_eq!(
        still, kept,
        "the token in the file stays while no new one can be had"
    );
    let expiry = jwt_expiry(&kept);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry > now + 60,
        "the kept token is valid for more than a minute"
    );
    tokio::task::spawn_blocking(|| own().start_apiserver())
        .await
        .unwrap()
        .unwrap();

    // Back up: a new token is requested, verified and written, and it works.
    let after = eventually("a new token in the file", WAIT, || async {
        match token_in_file(cp, root).await {
            (token, Ok(who)) if token != before => Ok((token, who)),
            (_, who) => Err(format!("{who:?}")),
        }
    })
    .await;
    assert_eq!(
        after.1,
        format!("system:serviceaccount:{}:multus", scenario.ns)
    );
    scenario.finish(agent).await;
}

//! Token rotation with a real API server, in its own test binary because it stops the API
//! server: at least three rotations, every new token authenticates, the file never holds an
//! expired token, and after 30 s without an API server the agent recovers and rotates again.
//! Regression for upstream #852: tokens that expire and are never refreshed.

use base64::Engine as _;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use multus_crds::bundle::{feedback, node_configmap_name};
use multus_e2e::agent::RunningAgent;
use multus_e2e::operator::eventually;
use multus_e2e::scenario::OneNode;
use multus_e2e::{ControlPlane, fixtures, http};

const KUBECONFIG: &str = "etc/cni/net.d/multus.d/multus.kubeconfig";
/// Deadline for what the agent or operator does (a second or two when idle), on a busy machine.
const WAIT: Duration = Duration::from_secs(60);

/// (token, exp) from a kubeconfig the agent wrote.
fn token_of(text: &str) -> Option<(String, i64)> {
    let parsed: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    let token = parsed["users"][0]["user"]["token"].as_str()?.to_string();
    let claims = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    Some((token, claims["exp"].as_i64()?))
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

#[multus_e2e::test]
async fn tokens_rotate_early_never_expire_in_the_file_and_survive_an_api_outage() {
    let cp = ControlPlane::shared();
    // The shortest lifetime the API server grants, replaced 5 s after issue.
    let spec = json!({ "kubeconfig": { "expirationSeconds": 600, "refreshBeforeExpiry": "595s" } });
    let scenario = OneNode::start(cp, "rotation", spec).await.unwrap();
    let (ns, root) = (&scenario.ns, &scenario.root);
    let agent = RunningAgent::start_as(&scenario.agent_kubeconfig, ns, &scenario.node, root.path())
        .await
        .unwrap();

    // Watch the file for the whole test: every version must hold an unexpired token.
    let path: PathBuf = root.path().join(KUBECONFIG);
    let seen: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let expired: Arc<Mutex<Vec<String>>> = Arc::default();
    let sampler = {
        let (seen, expired, path) = (seen.clone(), expired.clone(), path.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    match token_of(&text) {
                        Some((token, exp)) => {
                            if exp <= now() {
                                expired
                                    .lock()
                                    .unwrap()
                                    .push(format!("exp {exp} at {}", now()));
                            }
                            let mut seen = seen.lock().unwrap();
                            if seen.last().map(|(t, _)| t) != Some(&token) {
                                seen.push((token, exp));
                            }
                        }
                        None => expired.lock().unwrap().push("unparsable kubeconfig".into()),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let distinct = |seen: &Arc<Mutex<Vec<(String, i64)>>>| {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .len()
    };
    eventually(
        "three rotations (four distinct tokens)",
        Duration::from_secs(120),
        || async {
            let n = distinct(&seen);
            if n >= 4 {
                Ok(())
            } else {
                Err(format!("{n} tokens; {}", agent.log_tail()))
            }
        },
    )
    .await;
    let tokens: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    for token in &tokens {
        let as_multus = cp.client_with_token(token).await.unwrap();
        let user = fixtures::whoami(&as_multus)
            .await
            .unwrap()
            .username
            .unwrap_or_default();
        assert_eq!(user, format!("system:serviceaccount:{ns}:multus"));
    }

    // Thirty seconds without an API server: the agent keeps its still-valid token.
    let before_outage = distinct(&seen);
    tokio::task::spawn_blocking(|| ControlPlane::shared().stop_apiserver())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        distinct(&seen),
        before_outage,
        "a token changed while the API server was down"
    );
    tokio::task::spawn_blocking(|| ControlPlane::shared().start_apiserver())
        .await
        .unwrap()
        .unwrap();
    eventually(
        "a rotation after the API server came back",
        Duration::from_secs(120),
        || async {
            let n = distinct(&seen);
            if n > before_outage {
                Ok(())
            } else {
                Err(agent.log_tail())
            }
        },
    )
    .await;
    let latest = seen.lock().unwrap().last().cloned().unwrap();
    let as_multus = cp.client_with_token(&latest.0).await.unwrap();
    assert!(fixtures::whoami(&as_multus).await.is_ok());

    // The expiry of the token in the file (never the token) is reported on the ConfigMap
    // and as a metric. Tokens keep rotating every few seconds, so the three are compared
    // at one moment, until they agree.
    let configmaps: Api<ConfigMap> = Api::namespaced(cp.client().await.unwrap(), ns);
    let cm_name = node_configmap_name(&scenario.node);
    let (annotations, metrics) = eventually("the reported expiry is the file's", WAIT, || async {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let (_, exp) = token_of(&text).ok_or("no token in the file")?;
        let expiry = k8s_openapi::jiff::Timestamp::from_second(exp)
            .map_err(|e| e.to_string())?
            .to_string();
        let cm = configmaps.get(&cm_name).await.map_err(|e| e.to_string())?;
        let annotations = cm.metadata.annotations.unwrap_or_default();
        let metrics = agent.metrics().await;
        let gauge = http::metric(&metrics, "multus_node_agent_token_expiry_timestamp_seconds");
        let reported = annotations.get(feedback::TOKEN_EXPIRY);
        if reported == Some(&expiry) && gauge == Some(exp as f64) {
            Ok((annotations, metrics))
        } else {
            Err(format!(
                "file {expiry}, annotation {reported:?}, metric {gauge:?}"
            ))
        }
    })
    .await;

    sampler.abort();
    let expired = expired.lock().unwrap().clone();
    assert!(
        expired.is_empty(),
        "the file held an expired or broken token: {expired:?}"
    );
    let failures = http::metric(
        &agent.metrics().await,
        "multus_node_agent_token_rotation_failures_total",
    );
    assert!(
        failures.is_some_and(|n| n > 0.0),
        "failures during the outage are counted: {failures:?}"
    );
    // Tokens never reach the logs, the annotations or the metrics.
    let log = std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default();
    let reported = format!("{annotations:?}");
    for token in tokens.iter().chain([&latest.0]) {
        assert!(
            !log.contains(token.as_str()),
            "a token appeared in the agent log"
        );
        assert!(
            !reported.contains(token.as_str()),
            "a token in the annotations"
        );
        assert!(!metrics.contains(token.as_str()), "a token in the metrics");
    }
    agent.terminate().await;
    scenario.operator.stop().await;
}

//! Upstream failure 4, token expiry (#852), next to ours through real Multus: upstream's thin
//! entrypoint embeds its pod's token once and never refreshes it, so pods fail with
//! `Unauthorized` once it expires; the agent rotates tokens and also replaces a token that
//! stops authenticating early (its ServiceAccount deleted and recreated). See
//! `upstream_failures.rs` for the two-node setup.

use serde_json::json;
use std::time::Duration;

use multus_e2e::ControlPlane;
use multus_e2e::podnet::{AgentNode, PodRef, printed};
use multus_e2e::process::expect_success;
use multus_e2e::upstream::Entrypoint;
use multus_e2e::upstream_node::UpstreamNode;

/// Deadline for an upstream entrypoint to write its files (tens of milliseconds idle).
const WAIT: Duration = Duration::from_secs(60);

/// The token in a kubeconfig file.
fn token_in(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let parsed: serde_json::Value = serde_saphyr::from_str(&text).ok()?;
    Some(parsed["users"][0]["user"]["token"].as_str()?.to_string())
}

/// ADD then DEL through `node` for `pod`; both must succeed.
async fn add_del(node: &AgentNode, pod: &PodRef) {
    let added = node.multus("ADD", pod).await.unwrap();
    expect_success(&added, "multus ADD");
    let deleted = node.multus("DEL", pod).await.unwrap();
    expect_success(&deleted, "multus DEL");
}

#[multus_e2e::test]
async fn a_recreated_service_account_voids_the_token_and_the_agent_writes_a_new_one_within_a_minute()
 {
    let cp = ControlPlane::shared();
    let mut ours = AgentNode::new(cp, "sarecreate").await.unwrap();
    ours.start(cp, json!({})).await.unwrap();
    let kubeconfig = ours.host.root().join("net.d/multus.d/multus.kubeconfig");
    let first = token_in(&kubeconfig).unwrap();
    let pod = ours.pod("client", "").await.unwrap();
    add_del(&ours, &pod).await;

    // Deleting and recreating the account invalidates its tokens (the UID in their claims
    // no longer matches) hours before they expire.
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(ours.client.clone(), &ours.ns);
    accounts
        .delete("multus", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    multus_e2e::fixtures::service_account(&ours.client, &ours.ns, "multus")
        .await
        .unwrap();
    let replaced = tokio::time::Instant::now();
    // The API server caches a successful token check for 10 s, so the voided token keeps
    // working that long; ADD fails from then on, until the agent replaces it.
    let mut voided = None;
    while voided.is_none() && token_in(&kubeconfig).as_deref() == Some(first.as_str()) {
        assert!(
            replaced.elapsed() < Duration::from_secs(60),
            "ADD never failed"
        );
        let added = ours.multus("ADD", &pod).await.unwrap();
        if added.status.success() {
            let _ = ours.multus("DEL", &pod).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            voided = Some(printed(&added));
        }
    }
    if let Some(said) = &voided {
        eprintln!(
            "ADD with the voided token, {:?} after the account was recreated, printed:\n{said}",
            replaced.elapsed()
        );
        assert!(said.contains("Unauthorized"), "{said}");
    }

    // The agent checks the token in use every 30 s; a new one is then requested, verified
    // and written at once. The requirement is a minute.
    let second = multus_e2e::operator::eventually(
        "a new token in the kubeconfig",
        Duration::from_secs(60),
        || async {
            match token_in(&kubeconfig) {
                Some(t) if t != first => Ok(t),
                _ => Err("still the voided token".to_string()),
            }
        },
    )
    .await;
    let took = replaced.elapsed();
    eprintln!("the agent wrote a new token {took:?} after the account was recreated");
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_ne!(second, first);
    add_del(&ours, &pod).await;
    ours.stop().await;
}

/// Upstream's thin entrypoint embeds its pod's token in the host kubeconfig once; the
/// DaemonSet does not set `--cleanup-config-on-exit`, so it never refreshes it (#852). With
/// 600 s tokens (the API server's minimum) upstream's ADD fails once the token expired, while
/// the agent's rotations keep ADD working. It waits for a real expiry, about 12 minutes, so
/// it is ignored by default; run it with
/// `cargo test -p multus-e2e --test upstream_token_expiry -- --ignored --nocapture upstream_v4_3_0s_token_expires`
#[ignore = "about 12 minutes: waits for a 600 s token to expire"]
#[multus_e2e::test]
async fn upstream_v4_3_0s_token_expires_and_add_fails_while_ours_rotates_and_add_keeps_working() {
    let cp = ControlPlane::shared();
    let mut ours = AgentNode::new(cp, "expiry").await.unwrap();
    // 600 s tokens replaced 72 to 120 s after issue: several rotations before upstream's
    // token runs out.
    let spec = json!({ "kubeconfig": { "expirationSeconds": 600, "refreshBeforeExpiry": "480s" } });
    ours.start(cp, spec).await.unwrap();
    let ours_kubeconfig = ours.host.root().join("net.d/multus.d/multus.kubeconfig");

    let mut upstream = UpstreamNode::new(cp, &ours.ns, "198.18.40.0/24")
        .await
        .unwrap();
    upstream.token_seconds = 600;
    let started = tokio::time::Instant::now();
    let which = Entrypoint {
        log: "thin_entrypoint-expiry.log",
        ..Entrypoint::LATEST_AUTO
    };
    upstream
        .run_entrypoint(cp, &which, "multus config file is created.", WAIT)
        .await
        .unwrap();
    let conf = "etc/cni/net.d/00-multus.conf";
    let multus = upstream.path("opt/cni/bin/multus");
    let up_pod = upstream.pod("upstream-client", "").await.unwrap();
    let added = upstream.cni(&multus, "ADD", conf, &up_pod).await.unwrap();
    expect_success(&added, "upstream multus ADD");
    let deleted = upstream.cni(&multus, "DEL", conf, &up_pod).await.unwrap();
    expect_success(&deleted, "upstream multus DEL");

    let pod = ours.pod("client", "").await.unwrap();
    add_del(&ours, &pod).await;
    let mut last = token_in(&ours_kubeconfig).unwrap();
    let mut rotations = 0;
    // The token expires 600 s after it was minted; the API server rejects it from then on.
    // Three more minutes cover a busy machine.
    let deadline = started + Duration::from_secs(600 + 180);
    let failure = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream's ADD still works after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Some(now) = token_in(&ours_kubeconfig)
            && now != last
        {
            rotations += 1;
            last = now;
            add_del(&ours, &pod).await;
        }
        if started.elapsed() < Duration::from_secs(600) {
            continue;
        }
        let added = upstream.cni(&multus, "ADD", conf, &up_pod).await.unwrap();
        if !added.status.success() {
            break printed(&added);
        }
        let _ = upstream.cni(&multus, "DEL", conf, &up_pod).await;
    };
    eprintln!(
        "after {:?} upstream's ADD printed:\n{failure}\nours rotated {rotations} times meanwhile",
        started.elapsed()
    );
    assert!(failure.contains("Unauthorized"), "{failure}");
    assert!(rotations >= 3, "{rotations}");
    add_del(&ours, &pod).await;
    ours.stop().await;
}

//! 100 SIGKILLs of the agent, swept over its first 800 ms, during a storm of bundle updates:
//! every file on disk parses and is the old or a newer version the bundle had, and the next
//! start leaves no temp file and converges. Regression for empty or half-written configs (upstream #1155).

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::Duration;

use multus_crds::bundle::{NodeBundle, feedback, node_configmap_name};
use multus_e2e::ControlPlane;
use multus_e2e::agent::{RunningAgent, snapshot};
use multus_e2e::operator::eventually;
use multus_e2e::scenario::OneNode;

#[multus_e2e::test]
async fn a_hundred_sigkills_during_updates_never_leave_a_broken_or_foreign_file() {
    let cp = ControlPlane::shared();
    let spec = json!({ "attachments": {}, "rollout": { "maxUnavailable": "100%" } });
    let scenario = OneNode::start(cp, "crash", spec).await.unwrap();
    let (client, ns, node, root) = (
        &scenario.client,
        &scenario.ns,
        &scenario.node,
        &scenario.root,
    );
    let nads: Api<multus_crds::NetworkAttachmentDefinition> = Api::namespaced(client.clone(), ns);
    let set_bridge = |i: usize| {
        json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": { "name": "storm", "namespace": ns },
            "spec": { "config": format!(r#"{{"cniVersion":"0.3.1","type":"bridge","bridge":"br-{i}"}}"#) },
        })
    };
    nads.patch(
        "storm",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&set_bridge(0)),
    )
    .await
    .unwrap();
    let attachment = format!("etc/cni/multus/net.d/{ns}-storm.conf");

    let bridge_on_disk = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
        files.get(&attachment).map(|bytes| {
            let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
            v["bridge"].as_str().unwrap_or_default().to_string()
        })
    };
    let (mut kills_with_temp, mut kills_after_a_write, mut kills_before_any_write) = (0, 0, 0);
    let mut last_seen = bridge_on_disk(&snapshot(root.path()));
    for i in 1..=100 {
        let agent = RunningAgent::start_as(&scenario.agent_kubeconfig, ns, node, root.path())
            .await
            .unwrap();
        nads.patch(
            "storm",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&set_bridge(i)),
        )
        .await
        .unwrap();
        if i % 10 == 0 {
            // Every tenth agent is killed right after it wrote this round's version, so
            // kills after a write happen however slow the machine is.
            let new = format!("\"br-{i}\"");
            eventually(
                "this round's version on disk",
                Duration::from_secs(60),
                || async {
                    match std::fs::read_to_string(root.path().join(&attachment)) {
                        Ok(text) if text.contains(&new) => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
        } else {
            // The others sweep the first 800 ms of the agent's life in 8 ms steps, each with
            // a random offset: before it read its bundle, while it writes, after it applied.
            let at = (i as u64 * 8) % 800 + fastrand::u64(0..8);
            tokio::time::sleep(Duration::from_millis(at)).await;
        }
        agent.kill().await;

        let files = snapshot(root.path());
        for (path, bytes) in &files {
            if path.contains(".multus-agent-") {
                kills_with_temp += 1;
                continue;
            }
            if path.ends_with(".conf") || path.ends_with(".conflist") || path.ends_with(".json") {
                let parsed: Result<Value, _> = serde_json::from_slice(bytes);
                assert!(
                    parsed.is_ok(),
                    "kill {i}: {path} does not parse: {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
            if path.ends_with("00-multus.conf") {
                let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
                assert_eq!(
                    v["delegates"][0]["name"], "k8s-pod-network",
                    "kill {i}: the Multus config always delegates to the primary"
                );
            }
            if path.ends_with(".kubeconfig") {
                assert!(
                    serde_saphyr::from_slice::<Value>(bytes).is_ok(),
                    "kill {i}: {path}"
                );
            }
        }
        // Old or new, nothing else: the file holds a version some bundle had, and never one
        // older than before (a torn or rolled-back write would show here). The operator
        // may lag behind the edits, so "new" is any version up to this round's.
        let version = |b: &Option<String>| {
            b.as_deref()
                .and_then(|b| b.strip_prefix("br-"))
                .and_then(|n| n.parse::<usize>().ok())
        };
        let now = bridge_on_disk(&files);
        if now.is_some() {
            let (before, after) = (version(&last_seen), version(&now));
            assert!(
                after.is_some_and(|a| a <= i && before.is_none_or(|b| a >= b)),
                "kill {i}: {now:?} is neither the old ({last_seen:?}) nor a newer bundle version"
            );
        } else {
            assert!(last_seen.is_none(), "kill {i}: the attachment disappeared");
        }
        if now == last_seen {
            kills_before_any_write += 1;
        } else {
            kills_after_a_write += 1;
        }
        last_seen = now;
    }
    eprintln!(
        "kills: {kills_after_a_write} after the agent wrote, {kills_before_any_write} before it changed anything, {kills_with_temp} left a temp file"
    );
    assert!(
        kills_after_a_write > 0 && kills_before_any_write > 0,
        "the kills must hit the agent both before and after it writes"
    );

    // A kill between creating and renaming a temp file leaves one like this (the window is
    // microseconds, so random kills rarely hit it): the next start must remove it.
    std::fs::write(
        root.path()
            .join("etc/cni/net.d/.multus-agent-00-multus.conf.tmp"),
        "{\"cniVer",
    )
    .unwrap();
    // The next start cleans up and converges on the last bundle.
    let agent = RunningAgent::start_as(&scenario.agent_kubeconfig, ns, node, root.path())
        .await
        .unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually(
        "the last bundle applied",
        Duration::from_secs(60),
        || async {
            let cm = cms
                .get(&node_configmap_name(node))
                .await
                .map_err(|e| e.to_string())?;
            let bundle = NodeBundle::from_configmap_data(cm.data.as_ref().ok_or("no data")?)
                .map_err(|e| e.to_string())?;
            let applied = cm
                .metadata
                .annotations
                .unwrap_or_default()
                .get(feedback::APPLIED_HASH)
                .cloned();
            let on_disk =
                std::fs::read_to_string(root.path().join(&attachment)).unwrap_or_default();
            // Ready means this process applied the bundle itself, not an earlier, killed one.
            let ready = agent.is_ready().await;
            if ready
                && applied.as_deref() == Some(bundle.manifest.bundle_hash.as_str())
                && on_disk.contains("\"br-100\"")
            {
                Ok(())
            } else {
                Err(format!("applied {applied:?}, disk {on_disk}"))
            }
        },
    )
    .await;
    let temps: Vec<String> = snapshot(root.path())
        .into_keys()
        .filter(|p| p.contains(".multus-agent-"))
        .collect();
    assert!(
        temps.is_empty(),
        "temp files after the next start: {temps:?}"
    );
    agent.terminate().await;
    scenario.operator.stop().await;
}

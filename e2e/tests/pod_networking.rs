//! Pod networking through real Multus (thin, v4.3.0) and the real CNI reference plugins in a
//! network namespace, with every file written by the agent from the operator's bundle:
//! the primary (a bridge) becomes eth0 and a NAD with an empty `spec.config` becomes net1,
//! found by name in the confDir the operator wrote explicitly (upstream #1362: a file-backed
//! delegate looked up in the wrong directory gives "No networks found"). ADD, CHECK and DEL
//! as the runtime calls them; DEL is checked on the pod's namespace and the IPAM leases.

use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::{Value, json};
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::nad::NODE_CONFIG_ANNOTATION as NODE_CONFIG;
use multus_crds::status::condition;
use multus_e2e::ControlPlane;
use multus_e2e::operator::{eventually, wait_event};
use multus_e2e::podnet::{AgentNode, PodRef, addresses_in, interfaces_in, printed};
use multus_e2e::process::expect_success;

/// Our operator and agent, on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);

/// The shared control plane and a new node of our own for one test, nothing running yet
/// (see [`AgentNode::new`]).
async fn agent_node(prefix: &str) -> (&'static ControlPlane, AgentNode) {
    let cp = ControlPlane::shared();
    (cp, AgentNode::new(cp, prefix).await.unwrap())
}

/// `command` (ADD, CHECK or DEL) for `pod`, through Multus, must succeed.
async fn multus_ok(node: &AgentNode, command: &'static str, pod: &PodRef) {
    let out = node.multus(command, pod).await.unwrap();
    expect_success(&out, &format!("multus {command}"));
}

/// ADD for `pod` must succeed; returns its addresses.
async fn add(node: &AgentNode, pod: &PodRef) -> String {
    multus_ok(node, "ADD", pod).await;
    addresses_in(&pod.netns).unwrap()
}

/// The network-status entry of `network` (`<ns>/<name>`), if any.
fn status_of<'a>(status: &'a [Value], network: &str) -> Option<&'a Value> {
    status.iter().find(|s| s["name"] == network)
}

#[multus_e2e::test]
async fn a_pod_gets_its_primary_and_a_file_backed_network_through_real_multus() {
    let (cp, mut node) = agent_node("podnet").await;
    // A NAD with an empty spec.config: its content reaches the node as a file.
    let storage = node.host.bridge_network(1, "198.18.1.0/24", false);
    node.nad("storage", json!({ NODE_CONFIG: storage.to_string() }), "")
        .await
        .unwrap();
    node.start(cp, json!({})).await.unwrap();
    assert!(
        node.host
            .root()
            .join(format!("multus/{}-storage.conf", node.ns))
            .exists()
    );

    // A pod on the node asking for the file-backed network. Multus runs with the token the
    // agent minted for the chart's `multus` account, so this ADD proves the chart grants
    // Multus enough.
    let pod = node.pod("client", "storage").await.unwrap();
    let links = add(&node, &pod).await;
    assert!(
        links.contains("eth0") && links.contains("198.18.0."),
        "primary missing: {links}"
    );
    assert!(
        links.contains("net1") && links.contains("198.18.1."),
        "file-backed network missing: {links}"
    );
    multus_ok(&node, "CHECK", &pod).await;

    // Multus wrote the network status on the pod with the agent's token.
    let status = pod.network_status(&node.client).await.unwrap();
    assert!(
        status_of(&status, &format!("{}/storage", node.ns)).is_some(),
        "{status:?}"
    );
    // host-local keeps one lease file per address, in a directory named after the network
    // (the NAD's name: the operator sets the config's name to it).
    assert_eq!(node.host.leases("podnet").len(), 1);
    assert_eq!(node.host.leases("storage").len(), 1);

    // DEL for real: the interfaces are gone from the pod and both leases released.
    multus_ok(&node, "DEL", &pod).await;
    assert_eq!(interfaces_in(&pod.netns).unwrap(), vec!["lo".to_string()]);
    assert_eq!(node.host.leases("podnet"), Vec::<String>::new());
    assert_eq!(node.host.leases("storage"), Vec::<String>::new());
    node.stop().await;
}

#[multus_e2e::test]
async fn device_info_asked_for_without_a_resource_name_is_warned_and_multus_indeed_gives_none() {
    let (cp, mut node) = agent_node("devinfo").await;
    // An inline NAD that no MultusConfig writes to a node (the attachment selector wants a
    // label it lacks): Multus reads it from the API server when a pod names it, so the lint
    // covers it all the same.
    let mut asking = node.host.bridge_network(1, "198.18.2.0/24", false);
    asking["capabilities"] = json!({ "CNIDeviceInfoFile": true });
    node.nad("devices", json!({}), &asking.to_string())
        .await
        .unwrap();
    node.start(
        cp,
        json!({ "attachments": {
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": node.ns } },
            "selector": { "matchLabels": { "written": "yes" } },
        } }),
    )
    .await
    .unwrap();

    let events: Api<Event> = Api::namespaced(node.client.clone(), &node.ns);
    let event = wait_event(&events, "a Warning Event on the NAD", WAIT, |e| {
        e.regarding
            .as_ref()
            .is_some_and(|r| r.name.as_deref() == Some("devices"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("DeviceInfoWithoutResource"));
    let configs: Api<MultusConfig> = Api::all(node.client.clone());
    let ns = node.ns.clone();
    let warning = eventually("the AttachmentWarnings condition", WAIT, || async {
        let config = configs.get(&ns).await.map_err(|e| e.to_string())?;
        config
            .status
            .and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == condition::ATTACHMENT_WARNINGS && c.status == "True")
            })
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert!(
        warning.message.contains(&format!("{}/devices", node.ns))
            && warning.message.contains("CNIDeviceInfoFile"),
        "{}",
        warning.message
    );
    assert!(
        !node
            .host
            .root()
            .join(format!("multus/{}-devices.conf", node.ns))
            .exists(),
        "not a node file"
    );

    // Exactly as the warning said: the pod gets the network, and no device info for it.
    let pod = node.pod("client", "devices").await.unwrap();
    let links = add(&node, &pod).await;
    assert!(
        links.contains("net1") && links.contains("198.18.2."),
        "{links}"
    );
    let status = pod.network_status(&node.client).await.unwrap();
    let entry = status_of(&status, &format!("{}/devices", node.ns))
        .unwrap_or_else(|| panic!("no status for the network: {status:?}"));
    assert!(entry.get("device-info").is_none(), "{entry}");
    multus_ok(&node, "DEL", &pod).await;
    node.stop().await;
}

#[multus_e2e::test]
async fn an_invalid_nad_beside_valid_ones_keeps_pods_on_the_valid_networks_coming_up() {
    let (cp, mut node) = agent_node("badnad").await;
    // Upstream Multus stops at the first confDir file that fails to parse, for every
    // network; the operator never writes such a file, so the good network stays reachable.
    node.nad(
        "broken",
        json!({ NODE_CONFIG: "{\"cniVersion\": \"0.3.1\", \"type\": " }),
        "",
    )
    .await
    .unwrap();
    let good = node.host.bridge_network(1, "198.18.3.0/24", false);
    node.nad("good", json!({ NODE_CONFIG: good.to_string() }), "")
        .await
        .unwrap();
    node.start(cp, json!({})).await.unwrap();
    let files: Vec<String> = std::fs::read_dir(node.host.root().join("multus"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![format!("{}-good.conf", node.ns)]);

    for name in ["first", "second"] {
        let pod = node.pod(name, "good").await.unwrap();
        let links = add(&node, &pod).await;
        assert!(
            links.contains("net1") && links.contains("198.18.3."),
            "{links}"
        );
    }
    // A pod naming the broken network fails, saying which.
    let pod = node.pod("third", "broken").await.unwrap();
    let failed = node.multus("ADD", &pod).await.unwrap();
    assert!(!failed.status.success());
    assert!(printed(&failed).contains("broken"), "{}", printed(&failed));
    node.stop().await;
}

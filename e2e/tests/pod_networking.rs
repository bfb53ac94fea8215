//! Pod networking through real Multus (thin, v4.3.0) and the real CNI reference plugins in a
//! network namespace, with every file written by the agent from the operator's bundle:
//! the primary (a bridge) becomes eth0 and a NAD with an empty `spec.config` becomes net1,
//! found by name in the confDir the operator wrote explicitly (upstream #1362: a file-backed
//! delegate looked up in the wrong directory gives "No networks found").

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_e2e::agent::{Launch, RunningAgent};
use multus_e2e::binaries::{bin, bin_dir};
use multus_e2e::identities::Identities;
use multus_e2e::operator::{RunningOperator, TEST_LABEL};
use multus_e2e::{ControlPlane, fixtures, unique_name};

/// Removes what the test creates on the host, also when it fails.
struct HostCleanup {
    netns: String,
    bridges: Vec<String>,
}

impl Drop for HostCleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        for b in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", b]).status();
        }
    }
}

fn multus(command: &str, stdin: &str, netns: &str, args: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin("multus").unwrap())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "e2e-container")
        .env("CNI_NETNS", format!("/var/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin_dir().unwrap().join("cni"))
        .env("CNI_ARGS", args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn links_in(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ip", "-o", "addr"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_gets_its_primary_and_a_file_backed_network_through_real_multus() {
    let _slot = multus_e2e::test_slot!();
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = unique_name("podnet");
    fixtures::namespace(&client, &ns).await.unwrap();
    let node = format!("{ns}-n1");
    fixtures::node(&client, &node, &[("pool", &ns)], &[])
        .await
        .unwrap();
    // The chart's identities: Multus runs with the token the agent minted for the chart's
    // `multus` account, so the pod's ADD below proves the chart grants Multus enough.
    let identities = Identities::apply(cp, &ns, "thin").await.unwrap();
    let agent_kubeconfig = identities.agent_kubeconfig(cp, &node).await.unwrap();

    // Real host paths in a temp dir (Multus runs on this host and reads them as written).
    let host = tempfile::tempdir().unwrap();
    let h = host.path().display().to_string();
    let short = &ns[ns.len().saturating_sub(6)..];
    let (br0, br1, netns) = (
        format!("e2e0-{short}"),
        format!("e2e1-{short}"),
        format!("e2e-{ns}"),
    );
    let _cleanup = HostCleanup {
        netns: netns.clone(),
        bridges: vec![br0.clone(), br1.clone()],
    };
    std::fs::create_dir_all(format!("{h}/net.d")).unwrap();
    std::fs::write(
        format!("{h}/net.d/10-bridge.conflist"),
        json!({
            "cniVersion": "0.3.1", "name": "podnet",
            "plugins": [{ "type": "bridge", "bridge": br0, "isGateway": true,
                "ipam": { "type": "host-local", "subnet": "10.233.0.0/24", "dataDir": format!("{h}/ipam") } }]
        })
        .to_string(),
    )
    .unwrap();

    // A NAD with an empty spec.config: its content reaches the node as a file.
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "storage", "namespace": ns, "annotations": {
            "operator.multus.dev/node-config": json!({
                "cniVersion": "0.3.1", "type": "bridge", "bridge": br1,
                "ipam": { "type": "host-local", "subnet": "10.234.0.0/24", "dataDir": format!("{h}/ipam") }
            }).to_string() } },
        "spec": {},
    });
    Api::<multus_crds::NetworkAttachmentDefinition>::namespaced(client.clone(), &ns)
        .patch(
            "storage",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&nad),
        )
        .await
        .unwrap();

    let operator = RunningOperator::start(
        identities.operator_client(cp).await.unwrap(),
        &ns,
        &ns,
        Duration::from_secs(60),
    );
    let config: MultusConfig = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": ns, "labels": { TEST_LABEL: ns } },
        "spec": {
            "nodeSelector": { "matchLabels": { "pool": ns } },
            "primary": { "auto": {} },
            "paths": {
                "cniConfDir": format!("{h}/net.d"),
                "multusConfDir": format!("{h}/multus"),
                "cniBinDir": bin_dir().unwrap().join("cni").display().to_string(),
                "kubeconfigPath": format!("{h}/net.d/multus.d/multus.kubeconfig"),
            },
            "multus": { "multusNamespace": ns },
            "attachments": {},
        },
    }))
    .unwrap();
    Api::<MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();

    // The agent sees the real host (host root `/`) and keeps its state beside the files.
    let agent_root = tempfile::tempdir().unwrap();
    let options = Launch {
        state_file: Some(format!("{h}/state/owned-files.json")),
        log_dir: Some(agent_root.path().to_path_buf()),
        allowed_dirs: vec![format!("{h}/net.d"), format!("{h}/multus")],
        ..Launch::default()
    };
    let agent = RunningAgent::launch(&agent_kubeconfig, &ns, &node, Path::new("/"), &options)
        .await
        .unwrap();
    agent
        .wait_ready("agent applied the bundle", Duration::from_secs(60))
        .await;
    assert!(Path::new(&format!("{h}/multus/{ns}-storage.conf")).exists());

    // A pod on the node asking for the file-backed network.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "client", "namespace": ns,
            "annotations": { "k8s.v1.cni.cncf.io/networks": "storage" } },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "none" }] },
    }))
    .unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    assert!(
        Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap()
            .success()
    );

    let conf = std::fs::read_to_string(format!("{h}/net.d/00-multus.conf")).unwrap();
    let args = format!(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE={ns};K8S_POD_NAME=client;K8S_POD_INFRA_CONTAINER_ID=e2e-container;K8S_POD_UID={uid}"
    );
    let added = tokio::task::spawn_blocking({
        let (conf, netns, args) = (conf.clone(), netns.clone(), args.clone());
        move || multus("ADD", &conf, &netns, &args)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(
        added.status.success(),
        "multus ADD failed: {}{stderr}",
        String::from_utf8_lossy(&added.stdout)
    );
    let links = links_in(&netns);
    assert!(
        links.contains("eth0") && links.contains("10.233.0."),
        "primary missing: {links}"
    );
    assert!(
        links.contains("net1") && links.contains("10.234.0."),
        "file-backed network missing: {links}"
    );

    // Multus wrote the network status on the pod with the agent's token.
    let status = Api::<Pod>::namespaced(client.clone(), &ns)
        .get("client")
        .await
        .unwrap();
    let network_status = status
        .metadata
        .annotations
        .unwrap_or_default()
        .get("k8s.v1.cni.cncf.io/network-status")
        .cloned()
        .unwrap_or_default();
    assert!(
        network_status.contains(&format!("{ns}/storage")),
        "{network_status}"
    );

    let deleted = tokio::task::spawn_blocking(move || multus("DEL", &conf, &netns, &args))
        .await
        .unwrap();
    assert!(
        deleted.status.success(),
        "multus DEL failed: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    agent.terminate().await;
    operator.stop().await;
}

//! A real node: the upstream kubelet with containerd and runc, registered with the test
//! control plane, runs a pod the real scheduler placed on the node's own bridge network.

use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

use multus_e2e::node::{NodeOptions, RealNode};
use multus_e2e::operator::eventually;
use multus_e2e::process::expect_success;
use multus_e2e::{ControlPlane, fixtures, oci, unique_name};

/// From creation to Running: the scheduler binds at once, then the kubelet sets up the
/// sandbox (bridge plugin, pause), the projected token volume and the container; about
/// 2 s on an idle 2-core VM, far more when other tests or a build share its two cores.
const POD_RUNNING: Duration = Duration::from_secs(120);

fn ip_of(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

#[multus_e2e::test]
async fn a_node_registers_ready_with_its_own_cni_dirs_and_stopping_it_leaves_nothing() {
    let cp = ControlPlane::shared_for_real_nodes();
    let client = cp.client().await.unwrap();
    let name = unique_name("rn-ready");

    let mut node = RealNode::start(cp, &name, &NodeOptions::default()).unwrap();
    let cold = node.startup;
    let registered = Api::<Node>::all(client.clone()).get(&name).await.unwrap();
    assert_eq!(ip_of(&registered), Some(node.ip.to_string()));
    // The chart's hostPaths are the node's own directories, seen from the host.
    let conflist = node.host_path("/etc/cni/net.d/10-bridge.conflist").unwrap();
    assert!(conflist.exists(), "{}", conflist.display());
    assert!(node.host_path("/opt/cni/bin/bridge").unwrap().exists());
    assert!(
        !Path::new("/etc/cni/net.d/10-bridge.conflist").exists()
            || !std::fs::read_to_string("/etc/cni/net.d/10-bridge.conflist")
                .unwrap_or_default()
                .contains(&node.bridge),
        "the node's CNI config leaked into the host's /etc/cni"
    );
    let dir = node.dir.clone();
    let bridge = node.bridge.clone();
    node.stop();

    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} is left"
    );
    let marker = dir.display().to_string();
    let cgroup = dir.file_name().unwrap().to_string_lossy().into_owned();
    for hierarchy in multus_e2e::node::host::hierarchies() {
        assert!(!hierarchy.join(&cgroup).exists(), "cgroup {cgroup} is left");
    }
    // Processes of this node (their command lines name its state dir), whose owner, this
    // test process, is alive: process::leftovers() would not list them.
    let running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&marker))
        .collect();
    assert!(running.is_empty(), "node processes left: {running:?}");
    let deleted = Api::<Node>::all(client.clone())
        .get_opt(&name)
        .await
        .unwrap();
    assert!(deleted.is_none(), "Node {name} was not deleted");

    // Again with the images, binaries and pages warm.
    let warm = RealNode::start(cp, &name, &NodeOptions::default()).unwrap();
    eprintln!(
        "node start: cold {:.1}s, warm {:.1}s",
        cold.as_secs_f64(),
        warm.startup.as_secs_f64()
    );
}

#[multus_e2e::test]
async fn a_scheduled_busybox_pod_runs_on_the_node_subnet_reaches_the_api_and_sees_node_paths() {
    let cp = ControlPlane::shared_for_real_nodes();
    let (client, ns) = fixtures::test_namespace(cp, "rn-pod").await.unwrap();
    let name = unique_name("rn-pod");
    let images = tempfile::tempdir().unwrap();
    let busybox = oci::images::busybox(images.path()).unwrap();
    let options = NodeOptions {
        images: vec![busybox.path.clone()],
        ..NodeOptions::default()
    };
    let node = RealNode::start(cp, &name, &options).unwrap();

    // The ServiceAccount admission plugin refuses pods until `default` exists.
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    eventually("the default ServiceAccount", POD_RUNNING, || async {
        match accounts.get_opt("default").await {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "sleeper" },
        "spec": {
            "nodeSelector": { "kubernetes.io/hostname": name },
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleeper",
                "image": busybox.reference,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo $HOSTNAME | tee /host/written-by-pod && exec sleep 3600"],
                "volumeMounts": [{
                    "name": "agent-state",
                    "mountPath": "/host",
                    "mountPropagation": "HostToContainer",
                }],
            }],
            "volumes": [{
                "name": "agent-state",
                "hostPath": { "path": "/var/lib/multus-node-agent", "type": "DirectoryOrCreate" },
            }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let running = eventually("the pod to run", POD_RUNNING, || async {
        let pod = pods.get("sleeper").await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some("Running") {
            Ok(pod)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    let spec = running.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(name.as_str()));
    let pod_ip = running.status.unwrap().pod_ip.unwrap();
    let prefix = node.pod_subnet.trim_end_matches("0/24");
    assert!(
        pod_ip.starts_with(prefix),
        "pod IP {pod_ip} is not in {}",
        node.pod_subnet
    );

    // Through the API server's kubelet client, the kubelet and containerd's stream server.
    let out = cp
        .kubectl(&[
            "exec", "-n", &ns, "sleeper", "--", "ip", "addr", "show", "eth0",
        ])
        .unwrap();
    let shown = expect_success(&out, "kubectl exec");
    assert!(
        shown.contains(&format!("inet {pod_ip}/24")),
        "eth0 of the pod:\n{shown}"
    );

    let out = cp.kubectl(&["logs", "-n", &ns, "sleeper"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sleeper\n",
        "kubectl logs"
    );

    // A hostPath is the node's directory, which the test reads from outside.
    let written = node
        .host_path("/var/lib/multus-node-agent/written-by-pod")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "sleeper\n");
    // HostToContainer: a mount made on the node later appears in the pod.
    let sub = node.host_path("/var/lib/multus-node-agent/sub").unwrap();
    std::fs::create_dir_all(&sub).unwrap();
    let mounted = node
        .command("mount")
        .args([
            "-t",
            "tmpfs",
            "e2e-propagation",
            "/var/lib/multus-node-agent/sub",
        ])
        .status()
        .unwrap();
    assert!(mounted.success());
    let out = cp
        .kubectl(&["exec", "-n", &ns, "sleeper", "--", "cat", "/proc/mounts"])
        .unwrap();
    let mounts = String::from_utf8_lossy(&out.stdout);
    assert!(
        mounts.contains("e2e-propagation /host/sub tmpfs"),
        "the pod's mounts:\n{mounts}"
    );

    // The API server from the pod network, without kube-proxy or address translation.
    // Debian's static busybox wget crashes (also on the host), and busybox has no TLS client
    // the API server's certificate works with; plain HTTP to the TLS port gets the API
    // server's own answer ("Client sent an HTTP request to an HTTPS server"), which proves
    // the route and the listener.
    let (host, port) = cp.api_host_port();
    let request = format!("printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {host} {port}");
    let out = cp
        .kubectl(&["exec", "-n", &ns, "sleeper", "--", "sh", "-c", &request])
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("HTTP request to an HTTPS server"),
        "{request} in the pod: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopping the node kills the running pod with it: its cgroup subtree is gone, which
    // the kernel allows only once no process is left in it.
    let cgroup = node.dir.file_name().unwrap().to_string_lossy().into_owned();
    drop(node);
    for hierarchy in multus_e2e::node::host::hierarchies() {
        assert!(!hierarchy.join(&cgroup).exists(), "cgroup {cgroup} is left");
    }
}

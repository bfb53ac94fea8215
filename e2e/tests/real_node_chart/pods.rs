//! Secondary networks for the chart tests on a real node, and busybox pods asking for them,
//! inspected with kubectl.

use serde_json::{Value, json};
use std::process::Output;

use multus_e2e::chart::text;
use multus_e2e::node::RealNode;
use multus_e2e::{ControlPlane, oci, unique_name};

use super::support::{CONVERGE, POD_RUNNING, Release, apply, attachments_label, kubectl, wait_for};

/// Two secondary networks of a namespace: `net-a` with its config inline in `spec.config`,
/// `net-b` file-backed (empty `spec.config`, the config in the operator's node-config
/// annotation, written by the agent into the Multus confDir). Each is a reference bridge
/// plugin on a bridge of its own with host-local addresses from its own /24 of
/// 198.18.0.0/16 and no gateway or route: nothing leaves the machine. Dropping it deletes
/// the bridges the plugin created.
pub struct Networks {
    cp: &'static ControlPlane,
    pub ns: String,
    /// `(NAD name, bridge, subnet prefix such as "198.18.201.")`.
    pub nets: [(String, String, String); 2],
}

impl Networks {
    /// A namespace labelled for `release`'s attachments with both NADs; waits until the
    /// agent has written the file-backed one on `node`.
    pub fn create(release: &Release, node: &RealNode) -> Networks {
        let cp = release.cp;
        let ns = unique_name("rnc-pods");
        kubectl(cp, &["create", "namespace", &ns]);
        let (key, value) = attachments_label(&release.name);
        kubectl(cp, &["label", "namespace", &ns, &format!("{key}={value}")]);
        // Bridge names from the node's (`mo-node<n>`: 15 characters at most with a suffix)
        // and subnets 198.18.<200 + 2n>.0/24 and the next: distinct from every node's
        // 198.18.<n>.0/24 as long as fewer than 200 nodes run on the machine.
        let n: u32 = node
            .bridge
            .trim_start_matches("mo-node")
            .parse()
            .expect("bridge number");
        let third = 200 + 2 * (n % 27);
        let nets = [
            (
                "net-a".to_string(),
                format!("{}a", node.bridge),
                format!("198.18.{third}."),
            ),
            (
                "net-b".to_string(),
                format!("{}b", node.bridge),
                format!("198.18.{}.", third + 1),
            ),
        ];
        let config = |(name, bridge, prefix): &(String, String, String)| {
            json!({
                "cniVersion": "0.3.1",
                "name": name,
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": { "type": "host-local", "subnet": format!("{prefix}0/24") },
            })
            .to_string()
        };
        apply(
            cp,
            &json!({
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": { "name": nets[0].0, "namespace": ns },
                "spec": { "config": config(&nets[0]) },
            }),
        );
        apply(
            cp,
            &json!({
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {
                    "name": nets[1].0,
                    "namespace": ns,
                    "annotations": { "operator.multus.dev/node-config": config(&nets[1]) },
                },
                "spec": { "config": "" },
            }),
        );
        let file = node
            .host_path(&format!("/etc/cni/multus/net.d/{ns}-{}.conf", nets[1].0))
            .expect("host path");
        wait_for("the agent to write the file-backed NAD", CONVERGE, || {
            std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|text| {
                    if text.contains(&nets[1].1) {
                        Ok(())
                    } else {
                        Err(text)
                    }
                })
        });
        Networks { cp, ns, nets }
    }
}

impl Drop for Networks {
    fn drop(&mut self) {
        // Waits for the pods to go (CNI DEL through Multus), so that no DEL of theirs
        // meets a half-removed release; not after a failure, when Multus may not answer.
        let wait = if std::thread::panicking() {
            "--wait=false".to_string()
        } else {
            format!("--timeout={}s", POD_RUNNING.as_secs())
        };
        let _ = self.cp.kubectl(&["delete", "namespace", &self.ns, &wait]);
        for (_, bridge, _) in &self.nets {
            multus_e2e::node::host::delete_bridge(bridge);
        }
    }
}

/// A busybox pod on `node` in `ns` asking for `networks` (Multus' annotation, comma-separated);
/// waits until it runs and returns its network-status annotation (empty without Multus).
pub fn run_pod(
    cp: &ControlPlane,
    node: &RealNode,
    ns: &str,
    name: &str,
    networks: &str,
) -> Vec<Value> {
    create_pod(cp, node, ns, name, networks);
    wait_running(cp, ns, name)
}

/// Creates the pod without waiting.
pub fn create_pod(cp: &ControlPlane, node: &RealNode, ns: &str, name: &str, networks: &str) {
    apply(
        cp,
        &json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "annotations": { "k8s.v1.cni.cncf.io/networks": networks },
            },
            "spec": {
                "nodeSelector": { "kubernetes.io/hostname": node.name },
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main",
                    "image": oci::images::BUSYBOX,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                }],
            },
        }),
    );
}

/// Waits until the pod runs; returns its network-status.
pub fn wait_running(cp: &ControlPlane, ns: &str, name: &str) -> Vec<Value> {
    let pod = wait_for(&format!("pod {ns}/{name} to run"), POD_RUNNING, || {
        let out = cp
            .kubectl(&["get", "pod", "-n", ns, name, "-o", "json"])
            .map_err(|e| e.to_string())?;
        let pod: Value =
            serde_json::from_str(&check(&out, "get pod")?).map_err(|e| e.to_string())?;
        if pod["status"]["phase"] == "Running" {
            Ok(pod)
        } else {
            // The sandbox errors (CNI) are in the events.
            let events = cp
                .kubectl(&[
                    "get",
                    "events",
                    "-n",
                    ns,
                    "--field-selector",
                    &format!("involvedObject.name={name}"),
                    "-o",
                    "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
                ])
                .map(|o| text(&o.stdout))
                .unwrap_or_default();
            Err(format!("{}\n{events}", pod["status"]))
        }
    });
    network_status(&pod)
}

pub fn network_status(pod: &Value) -> Vec<Value> {
    pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .map(|s| serde_json::from_str(s).expect("network-status is JSON"))
        .unwrap_or_default()
}

/// The pod's interfaces with their IPv4 addresses (`ip -o -4 addr` in its container),
/// loopback left out, sorted by name.
pub fn interfaces(cp: &ControlPlane, ns: &str, pod: &str) -> Vec<(String, String)> {
    let shown = kubectl(cp, &["exec", "-n", ns, pod, "--", "ip", "-o", "-4", "addr"]);
    let mut found: Vec<(String, String)> = shown
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            // `net1@if12` for a veth in some ip versions.
            let name = words.next()?.split('@').next()?.to_string();
            let address = words.skip_while(|w| *w != "inet").nth(1)?.to_string();
            (name != "lo").then_some((name, address))
        })
        .collect();
    found.sort();
    found
}

/// The IPv4 address (without prefix) a pod has on `interface`.
pub fn address_on(interfaces: &[(String, String)], interface: &str) -> String {
    interfaces
        .iter()
        .find(|(name, _)| name == interface)
        .map(|(_, cidr)| cidr.split('/').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no {interface} in {interfaces:?}"))
}

/// Pings `address` from `pod` (three tries within 10 s: the first packet waits for ARP).
pub fn ping(cp: &ControlPlane, ns: &str, pod: &str, address: &str) {
    let out = cp
        .kubectl(&[
            "exec", "-n", ns, pod, "--", "ping", "-c", "1", "-w", "10", address,
        ])
        .expect("kubectl");
    assert!(
        out.status.success(),
        "ping {address} from {pod}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The names of the files in a node directory, sorted.
pub fn listing(node: &RealNode, dir: &str) -> Vec<String> {
    let path = node.host_path(dir).expect("host path");
    multus_e2e::scenario::sorted_names(&path)
}

fn check(out: &Output, what: &str) -> Result<String, String> {
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "{what}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}

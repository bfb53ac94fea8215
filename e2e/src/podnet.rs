//! Pod networking on this machine as a container runtime drives it: real Multus and the CNI
//! reference plugins called with the CNI environment for a pod (a Pod object in the API
//! server, a fresh network namespace), and what they leave behind: links and addresses in
//! the namespace, host-local IPAM leases on disk, the pod's network-status annotation.
//!
//! Everything a test creates on the host is named after its tag and removed on drop:
//! network namespaces, bridges, and the temp directory holding the node's CNI directories.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::E2eError;
use crate::binaries::bin_dir;
use crate::error::io;

pub use crate::agent_node::AgentNode;

/// Annotation Multus writes the attachment results to.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Annotation a pod names its extra networks in.
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// One simulated node's host side: CNI directories in a temp dir, bridges and network
/// namespaces of its own.
pub struct PodHost {
    dir: tempfile::TempDir,
    /// Short suffix that keeps this host's link names unique (15 bytes at most).
    tag: String,
    /// The whole unique name, for network namespaces (no length limit).
    unique: String,
    bridges: Vec<String>,
    namespaces: Vec<String>,
}

impl PodHost {
    /// A new host; `tag` (a unique test name) names its bridges and namespaces.
    pub fn new(tag: &str) -> Result<PodHost, E2eError> {
        let dir = tempfile::tempdir().map_err(io("host directory"))?;
        for sub in ["net.d", "multus", "ipam", "state"] {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(io("host directory"))?;
        }
        // Link names are at most 15 bytes: keep the tail of the unique name.
        let unique = tag.to_string();
        let tag = tag[tag.len().saturating_sub(6)..].to_string();
        Ok(PodHost {
            dir,
            tag,
            unique,
            bridges: Vec::new(),
            namespaces: Vec::new(),
        })
    }

    /// The host directory; real host paths, since Multus runs on this machine.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/<relative>` as a string, for configs.
    pub fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    /// A bridge name for network `n` of this host, removed on drop.
    pub fn bridge(&mut self, n: u8) -> String {
        let name = format!("e2e{n}-{}", self.tag);
        if !self.bridges.contains(&name) {
            self.bridges.push(name.clone());
        }
        name
    }

    /// A bridge network on its own bridge with host-local IPAM leases under `ipam/`.
    /// `name` is the network's `name`, or none for a NAD config (the operator sets it).
    pub fn bridge_network(&mut self, n: u8, subnet: &str, gateway: bool) -> Value {
        let bridge = self.bridge(n);
        json!({
            "cniVersion": "0.4.0", "type": "bridge", "bridge": bridge, "isGateway": gateway,
            "ipam": { "type": "host-local", "subnet": subnet, "dataDir": self.path("ipam") }
        })
    }

    /// Writes a primary bridge conflist `net.d/10-bridge.conflist` (network `podnet`).
    pub fn write_primary(&mut self, subnet: &str) -> Result<(), E2eError> {
        let plugin = self.bridge_network(0, subnet, true);
        let conflist = json!({ "cniVersion": "0.4.0", "name": "podnet", "plugins": [plugin] });
        std::fs::write(
            self.dir.path().join("net.d/10-bridge.conflist"),
            conflist.to_string(),
        )
        .map_err(io("primary config"))
    }

    /// Creates a network namespace for a pod, removed on drop.
    pub fn netns(&mut self, pod: &str) -> Result<String, E2eError> {
        // The unique name carries this process's id: a namespace of that name can only be
        // left by a killed process that had the same id, and goes first.
        let name = format!("e2e-{}-{pod}", self.unique);
        let add = || {
            Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .map_err(io("ip netns add"))
        };
        let mut added = add()?;
        if !added.status.success() && String::from_utf8_lossy(&added.stderr).contains("File exists")
        {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            added = add()?;
        }
        if !added.status.success() {
            return Err(E2eError::Io(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&added.stderr)
            )));
        }
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// The IP addresses host-local holds for `network` (its lease files).
    pub fn leases(&self, network: &str) -> Vec<String> {
        let mut leases: Vec<String> = std::fs::read_dir(self.dir.path().join("ipam").join(network))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        leases.sort();
        leases
    }
}

impl Drop for PodHost {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for b in &self.bridges {
            let _ = Command::new("ip")
                .args(["link", "del", b])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A pod as the runtime sees it for CNI calls.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Its network namespace (`ip netns` name).
    pub netns: String,
    pub container_id: String,
}

impl PodRef {
    /// Creates the Pod object on `node` asking for `networks` (the annotation's value,
    /// none when empty) and a network namespace for it.
    pub async fn create(
        client: &Client,
        host: &mut PodHost,
        namespace: &str,
        name: &str,
        node: &str,
        networks: &str,
    ) -> Result<PodRef, E2eError> {
        let mut metadata = json!({ "name": name, "namespace": namespace });
        if !networks.is_empty() {
            metadata["annotations"] = json!({ NETWORKS: networks });
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": metadata,
            "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "none" }] },
        }))
        .map_err(|e| E2eError::Kube(e.to_string()))?;
        let pod = Api::<Pod>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| E2eError::Kube(format!("create pod {name}: {e}")))?;
        let netns = host.netns(name)?;
        Ok(PodRef {
            namespace: namespace.into(),
            name: name.into(),
            uid: pod.metadata.uid.unwrap_or_default(),
            // Unique on this machine like the namespace: Multus caches each attachment under
            // its container ID in the host's /var/lib/cni/multus, shared by parallel tests.
            container_id: netns.clone(),
            netns,
        })
    }

    /// `CNI_ARGS` as kubelet's runtime passes them.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.container_id, self.uid
        )
    }

    /// The pod's network-status annotation, parsed (empty when absent).
    pub async fn network_status(&self, client: &Client) -> Result<Vec<Value>, E2eError> {
        let pod = Api::<Pod>::namespaced(client.clone(), &self.namespace)
            .get(&self.name)
            .await
            .map_err(|e| E2eError::Kube(format!("get pod {}: {e}", self.name)))?;
        let text = pod
            .metadata
            .annotations
            .unwrap_or_default()
            .get(NETWORK_STATUS)
            .cloned()
            .unwrap_or_else(|| "[]".into());
        serde_json::from_str(&text).map_err(|e| E2eError::Kube(format!("{NETWORK_STATUS}: {e}")))
    }
}

/// Runs a CNI plugin binary (`multus` or `multus-shim`) for `pod` with `config` on stdin,
/// as the runtime does: `CNI_COMMAND` ADD, CHECK or DEL, interface `eth0`, the reference
/// plugins in `CNI_PATH`. Blocking: call it from `spawn_blocking` in async tests.
pub fn cni(binary: &Path, command: &str, config: &str, pod: &PodRef) -> Result<Output, E2eError> {
    let plugins = bin_dir()?.join("cni");
    let mut child = Command::new(binary)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/var/run/netns/{}", pod.netns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &plugins)
        .env("CNI_ARGS", pod.cni_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("start the CNI plugin"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.as_bytes())
            .map_err(io("CNI config to stdin"))?;
    }
    child
        .wait_with_output()
        .map_err(io("wait for the CNI plugin"))
}

/// `cni` off the async runtime, for a config file on disk.
pub async fn cni_file(
    binary: PathBuf,
    command: &'static str,
    config_file: PathBuf,
    pod: &PodRef,
) -> Result<Output, E2eError> {
    let config = std::fs::read_to_string(&config_file)
        .map_err(|e| E2eError::Io(format!("read {}: {e}", config_file.display())))?;
    let pod = pod.clone();
    tokio::task::spawn_blocking(move || cni(&binary, command, &config, &pod))
        .await
        .map_err(|e| E2eError::Io(e.to_string()))?
}

/// Stdout and stderr of a plugin run, for messages.
pub fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ip -o addr` inside a network namespace.
pub fn addresses_in(netns: &str) -> Result<String, E2eError> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ip", "-o", "addr"])
        .output()
        .map_err(io("ip netns exec"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The interface names in a network namespace (`lo` included).
pub fn interfaces_in(netns: &str) -> Result<Vec<String>, E2eError> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "ip", "-o", "link"])
        .output()
        .map_err(io("ip netns exec"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

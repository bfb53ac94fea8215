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

/// Annotation Multus writes the attachment results to.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Annotation a pod names its extra networks in.
pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

fn io(what: &str) -> impl Fn(std::io::Error) -> E2eError + '_ {
    move |e| E2eError::Io(format!("{what}: {e}"))
}

/// One simulated node's host side: CNI directories in a temp dir, bridges and network
/// namespaces of its own.
pub struct PodHost {
    dir: tempfile::TempDir,
    /// Short suffix that keeps this host's link and namespace names unique.
    tag: String,
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
        let tag = tag[tag.len().saturating_sub(6)..].to_string();
        Ok(PodHost {
            dir,
            tag,
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
        let name = format!("e2e-{}-{pod}", self.tag);
        let added = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(io("ip netns add"))?;
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
            netns,
            container_id: format!("e2e-{name}"),
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

/// One simulated node served by our operator and agent with the chart's identities: the
/// primary a bridge (`podnet`, 198.18.0.0/24), NADs in the test's namespace, and every file
/// written by the agent on this machine's real paths (host root `/`, directories in the
/// [`PodHost`]), where the `multus` binary reads them.
pub struct AgentNode {
    /// Admin, to set the scenario up and check results.
    pub client: Client,
    pub ns: String,
    pub node: String,
    pub host: PodHost,
    pub identities: crate::identities::Identities,
    operator: Option<crate::operator::RunningOperator>,
    agent: Option<crate::agent::RunningAgent>,
    agent_logs: tempfile::TempDir,
}

impl AgentNode {
    /// The namespace, node, identities and host with its primary config; nothing runs yet.
    pub async fn new(cp: &crate::ControlPlane, prefix: &str) -> Result<AgentNode, E2eError> {
        let client = cp.client().await?;
        let ns = crate::unique_name(prefix);
        crate::fixtures::namespace(&client, &ns).await?;
        let node = format!("{ns}-n1");
        crate::fixtures::node(&client, &node, &[("pool", &ns)], &[]).await?;
        let identities = crate::identities::Identities::apply(cp, &ns, "thin").await?;
        let mut host = PodHost::new(&ns)?;
        host.write_primary("198.18.0.0/24")?;
        Ok(AgentNode {
            client,
            ns,
            node,
            host,
            identities,
            operator: None,
            agent: None,
            agent_logs: tempfile::tempdir().map_err(io("log directory"))?,
        })
    }

    /// Creates (server-side applies) a NAD in the test's namespace.
    pub async fn nad(&self, name: &str, annotations: Value, config: &str) -> Result<(), E2eError> {
        let nad = json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": { "name": name, "namespace": self.ns, "annotations": annotations },
            "spec": { "config": config },
        });
        Api::<multus_crds::NetworkAttachmentDefinition>::namespaced(self.client.clone(), &self.ns)
            .patch(
                name,
                &kube::api::PatchParams::apply("e2e").force(),
                &kube::api::Patch::Apply(&nad),
            )
            .await
            .map(|_| ())
            .map_err(|e| E2eError::Kube(format!("apply NAD {name}: {e}")))
    }

    /// Starts the operator, creates the MultusConfig (`extra` merged over a thin spec whose
    /// paths are this host's and whose attachments are the test namespace's NADs), starts
    /// the agent and waits until it applied the bundle.
    pub async fn start(&mut self, cp: &crate::ControlPlane, extra: Value) -> Result<(), E2eError> {
        let operator = crate::operator::RunningOperator::start(
            self.identities.operator_client(cp).await?,
            &self.ns,
            &self.ns,
            std::time::Duration::from_secs(60),
        );
        self.operator = Some(operator);
        let h = &self.host;
        let mut spec = json!({
            "nodeSelector": { "matchLabels": { "pool": self.ns } },
            "primary": { "auto": {} },
            "paths": {
                "cniConfDir": h.path("net.d"),
                "multusConfDir": h.path("multus"),
                "cniBinDir": bin_dir()?.join("cni").display().to_string(),
                "kubeconfigPath": h.path("net.d/multus.d/multus.kubeconfig"),
            },
            "multus": { "multusNamespace": self.ns, "cniVersion": "0.4.0" },
            "attachments": { "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": self.ns } } },
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let config: multus_crds::MultusConfig = serde_json::from_value(json!({
            "apiVersion": "operator.multus.dev/v1alpha1",
            "kind": "MultusConfig",
            "metadata": { "name": self.ns, "labels": { crate::operator::TEST_LABEL: self.ns } },
            "spec": spec,
        }))
        .map_err(|e| E2eError::Kube(e.to_string()))?;
        Api::<multus_crds::MultusConfig>::all(self.client.clone())
            .create(&PostParams::default(), &config)
            .await
            .map_err(|e| E2eError::Kube(format!("create MultusConfig: {e}")))?;
        let options = crate::agent::Launch {
            state_file: Some(h.path("state/owned-files.json")),
            log_dir: Some(self.agent_logs.path().to_path_buf()),
            allowed_dirs: vec![h.path("net.d"), h.path("multus")],
            ..crate::agent::Launch::default()
        };
        let kubeconfig = self.identities.agent_kubeconfig(cp, &self.node).await?;
        let agent = crate::agent::RunningAgent::launch(
            &kubeconfig,
            &self.ns,
            &self.node,
            Path::new("/"),
            &options,
        )
        .await?;
        agent
            .wait_ready(
                "agent applied the bundle",
                std::time::Duration::from_secs(60),
            )
            .await;
        self.agent = Some(agent);
        Ok(())
    }

    /// The agent's Multus config on disk.
    pub fn multus_config(&self) -> PathBuf {
        self.host.root().join("net.d/00-multus.conf")
    }

    /// A pod on this node asking for `networks`, with its network namespace.
    pub async fn pod(&mut self, name: &str, networks: &str) -> Result<PodRef, E2eError> {
        PodRef::create(
            &self.client,
            &mut self.host,
            &self.ns,
            name,
            &self.node,
            networks,
        )
        .await
    }

    /// Runs the thin `multus` binary for `pod` with the agent's config.
    pub async fn multus(&self, command: &'static str, pod: &PodRef) -> Result<Output, E2eError> {
        cni_file(
            crate::binaries::bin("multus")?,
            command,
            self.multus_config(),
            pod,
        )
        .await
    }

    /// Stops the agent (files stay) and the operator.
    pub async fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.terminate().await;
        }
        if let Some(operator) = self.operator.take() {
            operator.stop().await;
        }
    }
}

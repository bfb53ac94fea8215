//! [`AgentNode`]: one simulated node served by our operator and agent, in thin or thick
//! mode, with real CNI calls for pods on it (see [`crate::podnet`]).

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::E2eError;
use crate::binaries::bin_dir;
use crate::error::io;
use crate::pod_node::PodNode;
use crate::podnet::{PodHost, PodRef, cni_file};

/// One simulated node served by our operator and agent with the chart's identities: the
/// primary a bridge (`podnet`, 198.18.0.0/24), NADs in the test's namespace, and every file
/// written by the agent on this machine's real paths (host root `/`, directories in the
/// [`PodHost`]), where the `multus` binary reads them. In thick mode the daemon sees the host
/// paths as they are (`daemonPathPrefix` empty, plugins chrooted into `/`) and its socket
/// is in the host's `run/multus`.
pub type AgentNode = PodNode<OurParts>;

/// What only a node of ours holds.
pub struct OurParts {
    pub identities: crate::identities::Identities,
    /// `thin` or `thick`.
    pub mode: &'static str,
    operator: Option<crate::operator::RunningOperator>,
    agent: Option<crate::agent::RunningAgent>,
    agent_logs: tempfile::TempDir,
}

impl AgentNode {
    /// The namespace, node, identities and host with its primary config; nothing runs yet.
    pub async fn new(cp: &crate::ControlPlane, prefix: &str) -> Result<AgentNode, E2eError> {
        Self::with_mode(cp, prefix, "thin").await
    }

    /// Like [`Self::new`] for `mode` `thin` or `thick` (the chart's identities of that mode).
    pub async fn with_mode(
        cp: &crate::ControlPlane,
        prefix: &str,
        mode: &'static str,
    ) -> Result<AgentNode, E2eError> {
        let (client, ns) = crate::fixtures::test_namespace(cp, prefix).await?;
        let node = format!("{ns}-n1");
        crate::fixtures::node(&client, &node, &[("pool", &ns)], &[]).await?;
        let identities = crate::identities::Identities::apply(cp, &ns, mode).await?;
        let mut host = PodHost::new(&ns)?;
        host.write_primary("198.18.0.0/24")?;
        let ours = OurParts {
            identities,
            mode,
            operator: None,
            agent: None,
            agent_logs: tempfile::tempdir().map_err(io("log directory"))?,
        };
        Ok(PodNode::from_parts(client, ns, node, host, ours))
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
        if self.mode == "thick" {
            spec["mode"] = json!("thick");
            spec["thick"] = json!({
                "daemonPathPrefix": "",
                "socketDir": h.path("run/multus"),
                "chrootDir": "/",
            });
        }
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

    /// The daemon config the agent wrote (thick mode).
    pub fn daemon_config(&self) -> PathBuf {
        self.host.root().join("net.d/multus.d/daemon-config.json")
    }

    /// Starts upstream's multus-daemon (the release `e2e/testenv` builds) with the daemon
    /// config the agent wrote, as the node pod's container (the agent's ServiceAccount, its
    /// token bound to a DaemonSet pod on this node), and waits until its socket serves.
    pub async fn start_daemon(
        &self,
        cp: &crate::ControlPlane,
    ) -> Result<crate::thick::Daemon, E2eError> {
        let token = self.identities.agent_token(&self.node).await?;
        let work = self.agent_logs.path().join("multus-daemon");
        std::fs::create_dir_all(&work).map_err(io("daemon directory"))?;
        let config = self.daemon_config();
        let launch = crate::thick::Launch {
            binary: crate::binaries::bin("multus-daemon")?,
            config: &config,
            socket_dir: self.host.root().join("run/multus"),
            token: &token,
            node: &self.node,
            work: &work,
            hide: Vec::new(),
        };
        let mut daemon = crate::thick::Daemon::start(cp, &launch)?;
        // Start to socket is about a second idle (it lists pods and NADs first).
        daemon
            .wait_serving(std::time::Duration::from_secs(60))
            .await?;
        Ok(daemon)
    }

    /// Runs `multus-shim` for `pod` with the agent's config (thick mode).
    pub async fn shim(&self, command: &'static str, pod: &PodRef) -> Result<Output, E2eError> {
        self.plugin("multus-shim", command, pod).await
    }

    /// Runs the thin `multus` binary for `pod` with the agent's config.
    pub async fn multus(&self, command: &'static str, pod: &PodRef) -> Result<Output, E2eError> {
        self.plugin("multus", command, pod).await
    }

    /// Runs the upstream binary `name` for `pod` with the agent's config.
    async fn plugin(
        &self,
        name: &str,
        command: &'static str,
        pod: &PodRef,
    ) -> Result<Output, E2eError> {
        let binary = crate::binaries::bin(name)?;
        cni_file(binary, command, self.multus_config(), pod).await
    }

    /// ADD, CHECK or DEL through this node's mode: the thin plugin, or the shim.
    pub async fn cni(&self, command: &'static str, pod: &PodRef) -> Result<Output, E2eError> {
        if self.mode == "thick" {
            self.shim(command, pod).await
        } else {
            self.multus(command, pod).await
        }
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

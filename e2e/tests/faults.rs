//! Faults on the node and in the cluster, each against the real control plane with the
//! agent and operator as they ship: a full disk and a read-only directory under the host root
//! (no partial file, `Failed` with the reason, recovery on its own once the fault is gone), a
//! Node deleted while its agent runs, and a MultusConfig deleted while the node's agent is
//! down (the agent cleans up when it returns).

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::feedback;
use multus_e2e::agent::{RunningAgent, snapshot};
use multus_e2e::operator::eventually;
use multus_e2e::scenario::{OneNode, sorted_names};
use multus_e2e::{ControlPlane, fixtures};

/// Our operator and agent on a loaded 2-core machine; the agent's disk retries back off to
/// 30 s, so a recovery takes at most that plus a pass.
const WAIT: Duration = Duration::from_secs(60);
const ATTACHMENTS: &str = "etc/cni/multus/net.d";

/// A mount the test made, undone on drop (also when the test fails).
struct Mounted(PathBuf);

impl Mounted {
    fn run(args: &[&str]) {
        let out = Command::new("mount").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "mount {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A tmpfs of `size` (mount's syntax, for example `16k`) at `dir`.
    fn tmpfs(dir: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let target = dir.display().to_string();
        Self::run(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &target,
        ]);
        Mounted(dir.to_path_buf())
    }

    /// `dir` itself, bound read-only.
    fn read_only(dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let target = dir.display().to_string();
        Self::run(&["--bind", &target, &target]);
        Self::run(&["-o", "remount,bind,ro", &target]);
        Mounted(dir.to_path_buf())
    }

    fn remount(&self, options: &str) {
        Self::run(&[
            "-o",
            &format!("remount,{options}"),
            &self.0.display().to_string(),
        ]);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A scenario whose MultusConfig writes the test namespace's NADs, with one NAD whose file
/// takes `pad` bytes; and the path of its host root.
async fn with_attachment(prefix: &str, pad: usize) -> (OneNode, PathBuf) {
    let cp = ControlPlane::shared();
    // Only this test's NAD: the tests of this binary share the cluster, and NADs of one
    // name in several namespaces clash.
    let mark = multus_e2e::unique_name(prefix);
    let scenario = OneNode::start(
        cp,
        prefix,
        json!({
            "attachments": { "selector": { "matchLabels": { "e2e.multus.dev/fault": mark } } },
            "rollout": { "maxUnavailable": "100%" },
        }),
    )
    .await
    .unwrap();
    let config = json!({ "cniVersion": "0.3.1", "type": "bridge", "bridge": "br-fault",
        "padding": "p".repeat(pad) });
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "big", "namespace": scenario.ns,
            "labels": { "e2e.multus.dev/fault": mark } },
        "spec": { "config": config.to_string() },
    });
    Api::<multus_crds::NetworkAttachmentDefinition>::namespaced(
        scenario.client.clone(),
        &scenario.ns,
    )
    .patch(
        "big",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&nad),
    )
    .await
    .unwrap();
    let root = scenario.root.path().to_path_buf();
    (scenario, root)
}

/// A scenario with a small attachment whose agent runs and has applied its bundle.
async fn applied(prefix: &str) -> (OneNode, RunningAgent, PathBuf) {
    let (scenario, root) = with_attachment(prefix, 16).await;
    let agent = scenario.agent().await.unwrap();
    wait_state(&scenario, "Applied").await;
    (scenario, agent, root)
}

async fn wait_state(scenario: &OneNode, state: &str) -> BTreeMap<String, String> {
    scenario.wait_state(state, WAIT).await
}

#[multus_e2e::test]
async fn a_full_disk_leaves_no_partial_file_reports_failed_and_recovers_when_space_returns() {
    // A 40 KiB attachment into a 16 KiB file system.
    let (scenario, root) = with_attachment("diskfull", 40 * 1024).await;
    let disk = Mounted::tmpfs(&root.join(ATTACHMENTS), "16k");
    let agent = scenario.agent().await.unwrap();
    let annotations = wait_state(&scenario, "Failed").await;
    let message = &annotations[feedback::LAST_ERROR];
    assert!(message.contains("No space left on device"), "{message}");
    assert_eq!(
        sorted_names(&root.join(ATTACHMENTS)),
        Vec::<String>::new(),
        "no partial or temp file"
    );
    assert!(
        !root.join("etc/cni/net.d/00-multus.conf").exists(),
        "the Multus config never points at a missing attachment"
    );

    disk.remount("size=1m");
    wait_state(&scenario, "Applied").await;
    let file = root.join(format!("{ATTACHMENTS}/{}-big.conf", scenario.ns));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["padding"].as_str().map(str::len), Some(40 * 1024));
    assert!(root.join("etc/cni/net.d/00-multus.conf").exists());
    let metrics = agent.metrics().await;
    let retries = multus_e2e::http::metric(
        &metrics,
        "multus_node_agent_passes_total{trigger=\"retry\"}",
    )
    .unwrap_or_default();
    assert!(retries >= 1.0, "{metrics}");
    let host_root = scenario.finish(agent).await;
    drop(disk);
    drop(host_root);
}

#[multus_e2e::test]
async fn a_read_only_directory_reports_failed_and_recovers_when_writable_again() {
    let (scenario, root) = with_attachment("readonly", 16).await;
    let mount = Mounted::read_only(&root.join(ATTACHMENTS));
    let agent = scenario.agent().await.unwrap();
    let annotations = wait_state(&scenario, "Failed").await;
    let message = &annotations[feedback::LAST_ERROR];
    assert!(message.contains("Read-only file system"), "{message}");
    assert!(!root.join("etc/cni/net.d/00-multus.conf").exists());

    mount.remount("bind,rw");
    wait_state(&scenario, "Applied").await;
    assert!(
        root.join(format!("{ATTACHMENTS}/{}-big.conf", scenario.ns))
            .exists()
    );
    let host_root = scenario.finish(agent).await;
    drop(mount);
    drop(host_root);
}

#[multus_e2e::test]
async fn a_node_deleted_while_its_agent_runs_leaves_its_files_and_the_new_nodes_agent_takes_over() {
    let (scenario, agent, root) = applied("nodegone").await;
    let applied = snapshot(&root);

    Api::<Node>::all(scenario.client.clone())
        .delete(&scenario.node, &DeleteParams::default())
        .await
        .unwrap();
    // The operator drops the bundle of a node that is gone.
    eventually("the bundle ConfigMap removed", WAIT, || async {
        match scenario.configmap().await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    // Pods on a node being deleted still run until they are gone: their Multus files stay.
    assert!(
        agent.is_ready().await || agent.pid().is_some(),
        "the agent is up"
    );
    assert_eq!(
        multus_e2e::http::get(&agent.metrics_addr, "/healthz")
            .await
            .map(|(code, _)| code)
            .ok(),
        Some(200)
    );
    let after = snapshot(&root);
    let kept: Vec<&String> = applied
        .keys()
        .filter(|k| k.starts_with("etc/cni"))
        .collect();
    for key in kept {
        assert_eq!(after.get(key), applied.get(key), "{key} changed");
    }

    // The node comes back (re-registered). The old agent's credentials died with the old
    // Node: its pod-bound token carries the node's UID. As on a real cluster, the DaemonSet
    // puts a new pod there, whose agent finds the files it owns and applies the new bundle.
    fixtures::node(
        &scenario.client,
        &scenario.node,
        &[("pool", &scenario.ns)],
        &[],
    )
    .await
    .unwrap();
    assert!(agent.terminate().await.is_some_and(|s| s.success()));
    let kubeconfig = scenario
        .identities
        .agent_kubeconfig(ControlPlane::shared(), &scenario.node)
        .await
        .unwrap();
    let agent = RunningAgent::start_as(&kubeconfig, &scenario.ns, &scenario.node, &root)
        .await
        .unwrap();
    wait_state(&scenario, "Applied").await;
    let renewed = snapshot(&root);
    for key in applied.keys().filter(|k| k.ends_with(".conf")) {
        assert_eq!(renewed.get(key), applied.get(key), "{key}");
    }
    scenario.finish(agent).await;
}

#[multus_e2e::test]
async fn a_multusconfig_deleted_while_the_agent_is_down_is_cleaned_up_when_it_returns() {
    let (scenario, agent, root) = applied("cleanup").await;
    // Down for an upgrade: SIGTERM leaves every file.
    assert!(agent.terminate().await.is_some_and(|s| s.success()));
    assert!(root.join("etc/cni/net.d/00-multus.conf").exists());

    let configs: Api<MultusConfig> = Api::all(scenario.client.clone());
    configs
        .delete(&scenario.ns, &DeleteParams::default())
        .await
        .unwrap();
    // The finalizer holds the MultusConfig while its node has not confirmed removal.
    eventually("the bundle marked for removal", WAIT, || async {
        let cm = scenario.configmap().await.map_err(|e| e.to_string())?;
        let marked = cm
            .and_then(|c| c.metadata.annotations)
            .is_some_and(|a| a.contains_key(multus_crds::bundle::REMOVE_ANNOTATION));
        marked.then_some(()).ok_or_else(|| "not marked".to_string())
    })
    .await;
    assert!(
        configs.get_opt(&scenario.ns).await.unwrap().is_some(),
        "still held for the absent agent"
    );

    let agent = scenario.agent().await.unwrap();
    eventually("the MultusConfig gone", WAIT, || async {
        match configs
            .get_opt(&scenario.ns)
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
    let left: Vec<String> = snapshot(&root)
        .into_keys()
        .filter(|k| k.starts_with("etc/"))
        .collect();
    assert_eq!(
        left,
        vec!["etc/cni/net.d/10-calico.conflist"],
        "only the primary stays"
    );
    scenario.finish(agent).await;
}

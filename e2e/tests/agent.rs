//! The node agent as a real process against the real control plane, with the operator
//! running in the test: files byte-exact, self-delegation regression over 50 restarts,
//! inotify reaction and drift repair, the kubeconfig in every mode (upstream #1295), and
//! removal on unselect versus nothing on SIGTERM.

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multus_crds::MultusConfig;
use multus_crds::bundle::{FileRole, NodeBundle, feedback, node_configmap_name};
use multus_crds::completion::complete_for_manifest;
use multus_e2e::agent::{Launch, RunningAgent, snapshot};
use multus_e2e::operator::{RunningOperator, TEST_LABEL, eventually};
use multus_e2e::scenario::{CALICO, host_root, wait_agent_state};
use multus_e2e::test_env::TestEnv;
use multus_e2e::{ControlPlane, fixtures};

const WAIT: Duration = Duration::from_secs(60);
const POOL: &str = "e2e.multus.dev/pool";
/// The Multus config the agent writes, as a host path.
const MULTUS_CONF: &str = "/etc/cni/net.d/00-multus.conf";
/// The kubeconfig the agent writes for Multus, as a host path.
const MULTUS_KUBECONFIG: &str = "/etc/cni/net.d/multus.d/multus.kubeconfig";
/// A state file the agent must refuse.
const STATE_IN_CNI_DIR: &str = "/etc/cni/net.d/owned-files.json";

/// A test's corner of the cluster with the operator running and its agents' identities.
struct Env {
    base: TestEnv,
    /// Each node's agent kubeconfig (its DaemonSet pod's token), minted once.
    agent_kubeconfigs: std::sync::Mutex<std::collections::BTreeMap<String, PathBuf>>,
    operator: Option<RunningOperator>,
    /// Logs of agents that must not write them under their host root.
    logs: tempfile::TempDir,
}

multus_e2e::deref_to_test_env!(Env);

impl Env {
    async fn new(prefix: &str) -> Env {
        let base = TestEnv::new(prefix).await.unwrap();
        let operator = RunningOperator::start(
            base.identities.operator_client(base.cp).await.unwrap(),
            &base.test,
            &base.test,
            Duration::from_secs(60),
        );
        Env {
            base,
            agent_kubeconfigs: Default::default(),
            operator: Some(operator),
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// The kubeconfig of `node`'s agent: its DaemonSet pod's token.
    async fn agent_kubeconfig(&self, node: &str) -> PathBuf {
        let known = self.agent_kubeconfigs.lock().unwrap().get(node).cloned();
        match known {
            Some(path) => path,
            None => {
                let path = self
                    .identities
                    .agent_kubeconfig(self.cp, node)
                    .await
                    .unwrap();
                self.agent_kubeconfigs
                    .lock()
                    .unwrap()
                    .insert(node.to_string(), path.clone());
                path
            }
        }
    }

    /// Starts `node`'s agent with its own identity.
    async fn agent(&self, node: &str, root: &Path) -> RunningAgent {
        RunningAgent::start_as(&self.agent_kubeconfig(node).await, &self.ns, node, root)
            .await
            .unwrap()
    }

    /// Starts `node`'s agent with its state file inside a CNI directory, where libcni would
    /// load that `*.json` as a network config (the agent must refuse it), and its log
    /// outside the host root.
    async fn agent_with_state_in_cni_dir(&self, node: &str, root: &Path) -> RunningAgent {
        let options = Launch {
            state_file: Some(STATE_IN_CNI_DIR.to_string()),
            log_dir: Some(self.logs.path().to_path_buf()),
            ..Launch::default()
        };
        RunningAgent::launch(
            &self.agent_kubeconfig(node).await,
            &self.ns,
            node,
            root,
            &options,
        )
        .await
        .unwrap()
    }

    async fn node(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.test);
        fixtures::node(&self.client, &name, &[(POOL, &self.test)], &[])
            .await
            .unwrap();
        name
    }

    /// A test's environment with one node (`n1`) and its host root, with or without a
    /// primary CNI config.
    async fn with_node(prefix: &str, primary: bool) -> (Env, String, tempfile::TempDir) {
        let env = Env::new(prefix).await;
        let node = env.node("n1").await;
        (env, node, host_root(primary).unwrap())
    }

    /// Like [`Self::with_node`], the node selected by the MultusConfig `prefix` with `spec`
    /// and its agent started.
    async fn with_agent(
        prefix: &str,
        primary: bool,
        spec: Value,
    ) -> (Env, String, tempfile::TempDir, RunningAgent) {
        let (env, node, root) = Env::with_node(prefix, primary).await;
        env.config(prefix, &node, spec).await;
        let agent = env.agent(&node, root.path()).await;
        (env, node, root, agent)
    }

    async fn config(&self, name: &str, node: &str, spec: Value) {
        let mut full = json!({
            "nodeSelector": { "matchLabels": { "kubernetes.io/hostname": node } },
            "attachments": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": self.ns } } },
            "rollout": { "maxUnavailable": "100%" },
        });
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        let object: MultusConfig = serde_json::from_value(json!({
            "apiVersion": "operator.multus.dev/v1alpha1",
            "kind": "MultusConfig",
            "metadata": { "name": name, "labels": { TEST_LABEL: self.test } },
            "spec": full,
        }))
        .unwrap();
        // Node selection by hostname label: give the node that label.
        let patch = json!({ "metadata": { "labels": { "kubernetes.io/hostname": node } } });
        Api::<Node>::all(self.client.clone())
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        Api::<MultusConfig>::all(self.client.clone())
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }

    async fn nad(&self, name: &str, config: &str) {
        self.base.nad(name, &BTreeMap::new(), config).await.unwrap();
    }

    async fn configmap(&self, node: &str) -> Option<ConfigMap> {
        self.bundle_configmap(node).await.unwrap()
    }

    /// Waits until the agent's feedback annotation `state` has `value`.
    async fn wait_state(&self, node: &str, value: &str) -> ConfigMap {
        wait_agent_state(&self.client, &self.ns, node, value, WAIT).await
    }

    /// Waits until the agent reports `state`; asserts that the error it reports with it
    /// says each of `says`.
    async fn wait_error(&self, node: &str, state: &str, says: &[&str]) {
        let cm = self.wait_state(node, state).await;
        let message = &cm.metadata.annotations.unwrap_or_default()[feedback::LAST_ERROR];
        assert!(says.iter().all(|s| message.contains(s)), "{message}");
    }

    async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
    }

    /// Stops `agents`, whatever their exit status, then the operator.
    async fn stop_with(self, agents: impl IntoIterator<Item = RunningAgent>) {
        for agent in agents {
            agent.terminate().await;
        }
        self.stop().await;
    }

    /// Stops `agent`, which must exit cleanly on SIGTERM, then the operator.
    async fn finish(self, agent: RunningAgent) {
        assert!(agent.terminate().await.is_some_and(|s| s.success()));
        self.stop().await;
    }
}

/// The spec of a MultusConfig that takes the primary CNI config it finds.
fn auto_primary() -> Value {
    json!({ "primary": { "auto": {} } })
}

/// Where `host_path` is under the host root `root`.
fn on_host(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

fn read(root: &Path, host_path: &str) -> Option<String> {
    std::fs::read_to_string(on_host(root, host_path)).ok()
}

/// Waits until the host file `host_path` exists and `holds`; panics naming `what`.
async fn until_file(what: &str, root: &Path, host_path: &str, holds: impl Fn(&str) -> bool) {
    eventually(what, WAIT, || async {
        match read(root, host_path) {
            Some(text) if holds(&text) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn bundle_of(cm: &ConfigMap) -> NodeBundle {
    NodeBundle::from_configmap_data(cm.data.as_ref().unwrap()).unwrap()
}

/// The Multus config the node should have, computed from the ConfigMap and the primary.
fn expected_multus_config(bundle: &NodeBundle, primary_name: &str, primary: &str) -> String {
    let (_, template) = bundle.file(FileRole::MultusConfig).unwrap();
    complete_for_manifest(&bundle.manifest, template, primary_name, primary).unwrap()
}

async fn token_user(cp: &ControlPlane, kubeconfig: &str) -> String {
    let parsed: serde_json::Value = serde_saphyr::from_str(kubeconfig).unwrap();
    let token = parsed["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let client = cp.client_with_token(&token).await.unwrap();
    fixtures::whoami(&client)
        .await
        .unwrap()
        .username
        .unwrap_or_default()
}

const BRIDGE: &str = r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"br-agent"}"#;

#[multus_e2e::test]
async fn the_agent_writes_the_bundle_byte_exact_with_a_working_kubeconfig() {
    let (env, node, root) = Env::with_node("exact", true).await;
    env.nad("backplane", BRIDGE).await;
    let agent = env.agent(&node, root.path()).await;
    env.config("exact", &node, auto_primary()).await;

    let cm = env.wait_state(&node, "Applied").await;
    let bundle = bundle_of(&cm);
    let annotations = cm.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations[feedback::APPLIED_HASH],
        bundle.manifest.bundle_hash
    );
    assert_eq!(annotations[feedback::PRIMARY], "10-calico.conflist");
    assert!(
        !annotations.values().any(|v| v.contains("eyJ")),
        "no token in annotations"
    );

    let multus = read(root.path(), MULTUS_CONF).unwrap();
    assert_eq!(
        multus,
        expected_multus_config(&bundle, "10-calico.conflist", CALICO)
    );
    let attachment = format!("/etc/cni/multus/net.d/{}-backplane.conf", env.ns);
    assert_eq!(
        read(root.path(), &attachment).unwrap(),
        bundle.data[&format!("{}-backplane.conf", env.ns)]
    );
    for path in [MULTUS_CONF, attachment.as_str(), MULTUS_KUBECONFIG] {
        let mode = std::fs::metadata(on_host(root.path(), path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
    let kubeconfig = read(root.path(), MULTUS_KUBECONFIG).unwrap();
    assert_eq!(
        token_user(env.cp, &kubeconfig).await,
        format!("system:serviceaccount:{}:multus", env.ns)
    );
    // The state file is outside every CNI directory.
    assert!(
        root.path()
            .join("var/lib/multus-node-agent/owned-files.json")
            .exists()
    );
    assert!(
        agent
            .metrics()
            .await
            .contains("multus_node_agent_token_expiry_timestamp_seconds")
    );
    env.finish(agent).await;
}

#[multus_e2e::test]
async fn fifty_restarts_leave_every_byte_identical_and_never_delegate_to_ourselves() {
    let (env, node, root, first) = Env::with_agent("restarts", true, auto_primary()).await;
    env.wait_state(&node, "Applied").await;
    first.wait_ready("agent ready", WAIT).await;
    assert!(first.terminate().await.is_some_and(|s| s.success()));
    let before = snapshot(root.path());
    let reported_version = env
        .configmap(&node)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let files: Vec<&String> = before.keys().collect();
    assert_eq!(
        files,
        [
            "etc/cni/net.d/00-multus.conf",
            "etc/cni/net.d/10-calico.conflist",
            "etc/cni/net.d/multus.d/multus.kubeconfig",
            "var/lib/multus-node-agent/owned-files.json",
        ]
    );

    for round in 0..50 {
        let agent = env.agent(&node, root.path()).await;
        agent
            .wait_ready(&format!("agent ready after restart {round}"), WAIT)
            .await;
        let cm = env.configmap(&node).await.unwrap();
        let primary = cm.metadata.annotations.unwrap_or_default()[feedback::PRIMARY].clone();
        assert_eq!(
            primary, "10-calico.conflist",
            "restart {round} chose {primary}"
        );
        assert!(agent.terminate().await.is_some_and(|s| s.success()));
    }
    let after = snapshot(root.path());
    assert_eq!(before, after, "50 restarts changed or created files");
    assert_eq!(
        env.configmap(&node)
            .await
            .unwrap()
            .metadata
            .resource_version,
        reported_version,
        "restarts with nothing changed wrote to the ConfigMap"
    );
    let multus: Value = serde_json::from_slice(&after["etc/cni/net.d/00-multus.conf"]).unwrap();
    assert_eq!(multus["delegates"].as_array().unwrap().len(), 1);
    assert_eq!(
        multus["delegates"][0]["name"], "k8s-pod-network",
        "never nested into itself"
    );
    env.stop().await;
}

/// Replaces a host file in one step (write elsewhere, rename), as an editor or installer
/// would, so that the agent sees exactly one change.
fn replace_file(root: &Path, host_path: &str, text: &str) {
    let staged = root.join("staged-edit");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, on_host(root, host_path)).unwrap();
}

async fn drift_repairs(agent: &RunningAgent) -> f64 {
    let metrics = agent.metrics().await;
    multus_e2e::http::metric(&metrics, "multus_node_agent_drift_repairs_total")
        .unwrap_or_else(|| panic!("no drift repair counter in {metrics}"))
}

#[multus_e2e::test]
async fn a_directory_holding_only_our_files_gets_no_config_and_the_agent_says_it_waits() {
    let (env, node, root) = Env::with_node("waiting", false).await;
    // A stale Multus config of our own name is not a primary.
    std::fs::write(
        root.path().join("etc/cni/net.d/00-multus.conf.cilium_bak"),
        "{}",
    )
    .unwrap();
    env.config("waiting", &node, auto_primary()).await;
    let agent = env.agent(&node, root.path()).await;
    let says = ["waiting for a primary CNI config in /etc/cni/net.d"];
    env.wait_error(&node, "WaitingForPrimary", &says).await;
    assert!(read(root.path(), MULTUS_CONF).is_none());
    assert!(!agent.is_ready().await);

    // The primary appears: the config follows within a second (inotify).
    let written = Instant::now();
    std::fs::write(root.path().join("etc/cni/net.d/10-calico.conflist"), CALICO).unwrap();
    within_a_second("config after the primary appeared", written, || {
        read(root.path(), MULTUS_CONF).is_some()
    })
    .await;

    // An edited primary is re-rendered; that is a new desired content, not a repair.
    replace_file(
        root.path(),
        "etc/cni/net.d/10-calico.conflist",
        &CALICO.replace("k8s-pod-network", "k8s-pod-network-v2"),
    );
    until_file("re-rendered primary", root.path(), MULTUS_CONF, |t| {
        t.contains("k8s-pod-network-v2")
    })
    .await;
    assert_eq!(drift_repairs(&agent).await, 0.0);

    // An owned file edited or deleted by hand is restored, and each repair is counted.
    let good = read(root.path(), MULTUS_CONF).unwrap();
    let restored = |what| until_file(what, root.path(), MULTUS_CONF, |t| t == good);
    let repairs_reach = |n: f64| {
        let agent = &agent;
        move || async move {
            match drift_repairs(agent).await {
                seen if seen == n => Ok(()),
                seen => Err(format!("{seen} repairs counted")),
            }
        }
    };
    replace_file(root.path(), MULTUS_CONF, "{}");
    restored("edited config restored").await;
    eventually("one repair counted", WAIT, repairs_reach(1.0)).await;
    std::fs::remove_file(on_host(root.path(), MULTUS_CONF)).unwrap();
    restored("deleted config restored").await;
    eventually("two repairs counted", WAIT, repairs_reach(2.0)).await;

    // The primary goes away: now the directory holds only our own files. The agent waits
    // again and never takes its own config as the primary.
    std::fs::remove_file(root.path().join("etc/cni/net.d/10-calico.conflist")).unwrap();
    let cm = env.wait_state(&node, "WaitingForPrimary").await;
    assert_eq!(
        cm.metadata.annotations.unwrap_or_default()[feedback::PRIMARY],
        ""
    );
    let kept: Value = serde_json::from_str(&read(root.path(), MULTUS_CONF).unwrap()).unwrap();
    assert_eq!(kept["delegates"].as_array().map(Vec::len), Some(1));
    assert_eq!(kept["delegates"][0]["name"], "k8s-pod-network-v2");
    env.finish(agent).await;
}

#[multus_e2e::test]
async fn the_kubeconfig_is_written_in_every_mode_and_for_every_primary_source() {
    // Regression for upstream #1295: 4.0.x wrote the kubeconfig only for auto mode.
    let env = Env::new("modes").await;
    env.nad(
        "pod-network",
        r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"cni0"}"#,
    )
    .await;
    let primaries = [
        ("auto", json!({ "auto": {} })),
        ("file", json!({ "file": "10-calico.conflist" })),
        (
            "nad",
            json!({ "networkAttachment": format!("{}/pod-network", env.ns) }),
        ),
    ];
    let mut running = Vec::new();
    for mode in ["thin", "thick"] {
        for (source, primary) in &primaries {
            let node = env.node(&format!("{mode}-{source}")).await;
            let root = host_root(true).unwrap();
            env.config(
                &format!("{mode}-{source}"),
                &node,
                json!({ "mode": mode, "primary": primary }),
            )
            .await;
            let agent = env.agent(&node, root.path()).await;
            running.push((mode, *source, node, root, agent));
        }
    }
    for (mode, source, node, root, _) in &running {
        env.wait_state(node, "Applied").await;
        let kubeconfig = read(root.path(), MULTUS_KUBECONFIG)
            .unwrap_or_else(|| panic!("{mode}/{source}: no kubeconfig"));
        assert_eq!(
            token_user(env.cp, &kubeconfig).await,
            format!("system:serviceaccount:{}:multus", env.ns),
            "{mode}/{source}"
        );
        let multus: Value = serde_json::from_str(&read(root.path(), MULTUS_CONF).unwrap()).unwrap();
        let expected_type = if *mode == "thin" {
            "multus"
        } else {
            "multus-shim"
        };
        assert_eq!(multus["type"], expected_type, "{mode}/{source}");
        if *mode == "thick" {
            assert!(
                read(root.path(), "/etc/cni/net.d/multus.d/daemon-config.json").is_some(),
                "{mode}/{source}"
            );
        }
    }
    // The host roots go after their agents have stopped: a running agent would write
    // into a root while it is being removed.
    let (roots, agents): (Vec<_>, Vec<_>) = running
        .into_iter()
        .map(|(.., root, agent)| (root, agent))
        .unzip();
    env.stop_with(agents).await;
    drop(roots);
}

#[multus_e2e::test]
async fn sigterm_removes_nothing_and_unselecting_removes_exactly_the_owned_files() {
    let (env, node, root) = Env::with_node("unselect", true).await;
    env.nad("backplane", BRIDGE).await;
    // A foreign file in each directory the agent writes to.
    std::fs::create_dir_all(root.path().join("etc/cni/multus/net.d")).unwrap();
    std::fs::write(
        root.path().join("etc/cni/multus/net.d/zz-foreign.conf"),
        BRIDGE,
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("etc/cni/net.d/multus.d")).unwrap();
    std::fs::write(root.path().join("etc/cni/net.d/multus.d/notes.txt"), "keep").unwrap();
    env.config("unselect", &node, auto_primary()).await;

    let agent = env.agent(&node, root.path()).await;
    env.wait_state(&node, "Applied").await;
    let applied = snapshot(root.path());
    assert!(agent.terminate().await.is_some_and(|s| s.success()));
    assert_eq!(
        snapshot(root.path()),
        applied,
        "SIGTERM removed or changed files"
    );

    let agent = env.agent(&node, root.path()).await;
    // Record removals as the kernel reports them, across the three directories.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && matches!(e.kind, notify::EventKind::Remove(_))
        {
            for path in e.paths {
                let _ = tx.send(
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
    })
    .unwrap();
    for dir in [
        "etc/cni/net.d",
        "etc/cni/multus/net.d",
        "etc/cni/net.d/multus.d",
    ] {
        notify::Watcher::watch(
            &mut watcher,
            &root.path().join(dir),
            notify::RecursiveMode::NonRecursive,
        )
        .unwrap();
    }
    let patch = json!({ "metadata": { "labels": { "kubernetes.io/hostname": "elsewhere" } } });
    Api::<Node>::all(env.client.clone())
        .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(
        "ConfigMap deleted after the agent confirmed removal",
        WAIT,
        || async {
            match env.configmap(&node).await {
                None => Ok(()),
                Some(cm) => Err(format!("{:?}", cm.metadata.annotations)),
            }
        },
    )
    .await;
    let left: Vec<String> = snapshot(root.path()).into_keys().collect();
    assert_eq!(
        left,
        vec![
            "etc/cni/multus/net.d/zz-foreign.conf",
            "etc/cni/net.d/10-calico.conflist",
            "etc/cni/net.d/multus.d/notes.txt",
            "var/lib/multus-node-agent/owned-files.json",
        ]
    );
    drop(watcher);
    let removed: Vec<String> = rx
        .try_iter()
        .filter(|n| !n.starts_with(".multus-agent-"))
        .collect();
    assert_eq!(
        removed,
        vec![
            "00-multus.conf".to_string(),
            format!("{}-backplane.conf", env.ns),
            "multus.kubeconfig".to_string(),
        ],
        "removal order"
    );
    let state: Value = serde_json::from_str(
        &read(root.path(), "/var/lib/multus-node-agent/owned-files.json").unwrap(),
    )
    .unwrap();
    assert_eq!(state["files"], json!([]));
    env.stop_with([agent]).await;
}

#[multus_e2e::test]
async fn a_state_file_inside_a_cni_directory_is_refused_and_nothing_is_written() {
    let (env, node, root) = Env::with_node("statefile", true).await;
    env.config("statefile", &node, auto_primary()).await;
    let agent = env.agent_with_state_in_cni_dir(&node, root.path()).await;
    let says = ["the state file /etc/cni/net.d/owned-files.json is inside"];
    env.wait_error(&node, "Failed", &says).await;
    let files: Vec<String> = std::fs::read_dir(root.path().join("etc/cni/net.d"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["10-calico.conflist"], "nothing was written");
    env.finish(agent).await;
}

#[multus_e2e::test]
async fn another_service_account_in_the_spec_gets_a_new_token_at_once() {
    let (env, node, root, agent) = Env::with_agent("account", true, auto_primary()).await;
    let user_of_file = || async {
        match read(root.path(), MULTUS_KUBECONFIG) {
            Some(text) => Ok(token_user(env.cp, &text).await),
            None => Err("no kubeconfig yet".to_string()),
        }
    };
    let first = eventually("a kubeconfig", WAIT, user_of_file).await;
    assert_eq!(first, format!("system:serviceaccount:{}:multus", env.ns));

    // The token lives an hour; the new account must not wait for its refresh point. The
    // chart lets agents mint tokens for its own Multus account only, so the request is
    // denied at first: the agent says so and keeps the valid token in place.
    let patch = json!({ "spec": { "kubeconfig": {
        "serviceAccount": { "namespace": env.ns, "name": "multus-v2" } } } });
    Api::<MultusConfig>::all(env.client.clone())
        .patch("account", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_error(&node, "Failed", &["token"]).await;
    assert_eq!(user_of_file().await, Ok(first.clone()));

    // The cluster operator points the chart at the new account (what `helm upgrade --set
    // multus.serviceAccount.name=multus-v2` applies): the agent takes the new token.
    env.identities
        .upgrade(env.cp, &["--set", "multus.serviceAccount.name=multus-v2"])
        .await
        .unwrap();
    let wanted = format!("system:serviceaccount:{}:multus-v2", env.ns);
    eventually("a token for the new account", WAIT, || async {
        match user_of_file().await {
            Ok(user) if user == wanted => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    env.finish(agent).await;
}

#[multus_e2e::test]
async fn a_bundle_of_a_newer_format_is_refused_and_the_files_stay_as_they_are() {
    let (mut env, node, root) = Env::with_node("format", true).await;
    env.nad("net", BRIDGE).await;
    env.config("format", &node, auto_primary()).await;
    let agent = env.agent(&node, root.path()).await;
    env.wait_state(&node, "Applied").await;
    // Stand-in for a newer operator: nothing else writes the ConfigMap meanwhile.
    if let Some(op) = env.operator.take() {
        op.stop().await;
    }
    let files = snapshot(root.path());
    let cm = env.configmap(&node).await.unwrap();
    let manifest = &cm.data.as_ref().unwrap()[multus_crds::bundle::MANIFEST_KEY];
    let mut newer: Value = serde_json::from_str(manifest).unwrap();
    newer["formatVersion"] = json!(multus_crds::bundle::FORMAT_VERSION + 1);
    newer["somethingNew"] = json!({ "the agent": "does not know this" });
    newer["files"] = json!([]);
    let patch = json!({ "data": { multus_crds::bundle::MANIFEST_KEY: newer.to_string() } });
    Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns)
        .patch(
            &node_configmap_name(&node),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();

    env.wait_error(&node, "Failed", &["upgrade the agent"])
        .await;
    // Nothing was removed or rewritten (the state file aside, which is not a host config).
    let after = snapshot(root.path());
    let configs = |s: &std::collections::BTreeMap<String, Vec<u8>>| {
        s.iter()
            .filter(|(p, _)| p.starts_with("etc/"))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(configs(&after), configs(&files));
    env.finish(agent).await;
}

/// Polls `done` every 10 ms for at most a second after `since`; panics naming `what`.
async fn within_a_second(what: &str, since: Instant, done: impl Fn() -> bool) {
    let deadline = since + Duration::from_secs(1);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{what}: {:?}", since.elapsed());
}

#[multus_e2e::test]
async fn a_readiness_file_in_a_new_directory_and_a_drift_take_effect_within_a_second() {
    // The primary's own plugin says when it is ready, in a directory it creates itself.
    let spec = json!({
        "primary": { "auto": {} },
        "multus": { "readinessIndicatorFile": "/run/calico/ready" },
    });
    let (env, node, root, agent) = Env::with_agent("prompt", true, spec).await;
    env.wait_error(&node, "WaitingForPrimary", &["/run/calico/ready"])
        .await;
    assert!(!root.path().join("run").exists());

    let made = Instant::now();
    std::fs::create_dir_all(root.path().join("run/calico")).unwrap();
    std::fs::write(root.path().join("run/calico/ready"), "").unwrap();
    within_a_second("config after the readiness file appeared", made, || {
        read(root.path(), MULTUS_CONF).is_some()
    })
    .await;

    let good = read(root.path(), MULTUS_CONF).unwrap();
    let edited = Instant::now();
    replace_file(root.path(), MULTUS_CONF, "{}");
    within_a_second("edited config restored", edited, || {
        read(root.path(), MULTUS_CONF).as_deref() == Some(good.as_str())
    })
    .await;
    let deleted = Instant::now();
    std::fs::remove_file(on_host(root.path(), MULTUS_CONF)).unwrap();
    within_a_second("deleted config restored", deleted, || {
        read(root.path(), MULTUS_CONF).as_deref() == Some(good.as_str())
    })
    .await;
    assert_eq!(drift_repairs(&agent).await, 2.0);
    env.finish(agent).await;
}

async fn passes(agent: &RunningAgent) -> f64 {
    let metrics = agent.metrics().await;
    multus_e2e::http::metric(&metrics, "multus_node_agent_passes_total")
        .unwrap_or_else(|| panic!("no pass counter in {metrics}"))
}

/// Waits until the pass counter has stood still for a second (the echoes of the last
/// change are done), and returns it.
async fn settled_passes(agent: &RunningAgent) -> f64 {
    let deadline = Instant::now() + WAIT;
    let mut last = passes(agent).await;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "pass counter still moving: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = passes(agent).await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// The measurement window of the idle checks: the agent must not run a single pass in it.
const IDLE: Duration = Duration::from_secs(10);

async fn assert_idle(agent: &RunningAgent, state: &str) {
    let before = settled_passes(agent).await;
    // Not a synchronisation sleep: this is the window in which nothing may happen.
    tokio::time::sleep(IDLE).await;
    let after = passes(agent).await;
    assert_eq!(
        after,
        before,
        "{} passes in {IDLE:?} while {state}:\n{}",
        after - before,
        agent.metrics().await
    );
}

#[multus_e2e::test]
async fn an_idle_agent_runs_no_passes_in_any_resting_state_and_an_edit_costs_two() {
    let (env, node, root, agent) = Env::with_agent("idle", false, auto_primary()).await;

    // Resting state 1: waiting for the primary. Reading its directories must not wake it.
    env.wait_state(&node, "WaitingForPrimary").await;
    assert_idle(&agent, "waiting for the primary").await;

    // Resting state 2: applied.
    std::fs::write(root.path().join("etc/cni/net.d/10-calico.conflist"), CALICO).unwrap();
    env.wait_state(&node, "Applied").await;
    assert_idle(&agent, "applied").await;

    // One external edit of an owned file: one pass repairs it, and one more sees the
    // repair's own rename and finds nothing to do.
    let good = read(root.path(), MULTUS_CONF).unwrap();
    let before = settled_passes(&agent).await;
    replace_file(root.path(), MULTUS_CONF, "{}");
    until_file("edited config restored", root.path(), MULTUS_CONF, |t| {
        t == good
    })
    .await;
    let after = settled_passes(&agent).await;
    assert!(
        (1.0..=2.0).contains(&(after - before)),
        "{} passes for one edit:\n{}",
        after - before,
        agent.metrics().await
    );
    assert_eq!(drift_repairs(&agent).await, 1.0);
    assert!(agent.terminate().await.is_some_and(|s| s.success()));

    // Resting state 3: a refused bundle (the state file inside a CNI directory).
    let refused = env.agent_with_state_in_cni_dir(&node, root.path()).await;
    env.wait_state(&node, "Failed").await;
    assert_idle(&refused, "refusing its bundle").await;
    env.finish(refused).await;
}

#[multus_e2e::test]
async fn a_bundle_naming_a_directory_outside_the_allowed_ones_is_refused_and_nothing_is_written() {
    // Whoever can write the MultusConfig (or the ConfigMap) must not steer a root agent
    // into other host directories: the agent runs with the default --allowed-dir set.
    let spec = json!({
        "primary": { "auto": {} },
        "paths": {
            "cniConfDir": "/etc/systemd/system",
            "kubeconfigPath": "/etc/systemd/system/multus.d/multus.kubeconfig",
        },
    });
    let (env, node, root, agent) = Env::with_agent("bounds", true, spec).await;
    let says = [
        "/etc/systemd/system",
        "outside the directories this agent may write",
    ];
    env.wait_error(&node, "Failed", &says).await;
    assert!(
        !root.path().join("etc/systemd").exists(),
        "something was created under /etc/systemd"
    );
    let files: Vec<String> = snapshot(root.path()).into_keys().collect();
    assert_eq!(
        files,
        vec!["etc/cni/net.d/10-calico.conflist"],
        "nothing was written"
    );
    assert!(!agent.is_ready().await);
    env.finish(agent).await;
}

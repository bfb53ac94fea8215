//! The Helm chart (`charts/multus-operator`): it lints, its values schema refuses bad values
//! by name, the API server accepts everything it renders, and the trust boundary its RBAC and
//! admission policies draw holds against the real API server, with the chart's own objects.
//!
//! Expectation files in `tests/expected/` (the permissions of every chart ServiceAccount) are
//! rewritten with `UPDATE_EXPECTED=1 cargo test -p multus-e2e --test chart`.

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use multus_crds::bundle::{CONFIGMAP_PREFIX, NODE_ANNOTATION, feedback};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

use multus_e2e::chart::{
    BOUNDARY_KINDS, CHART, Helm, documents, fullname, kind_of, kubectl_with_input, only_kinds,
    text, wait_for_rbac,
};
use multus_e2e::fixtures::{self, BoundTo};
use multus_e2e::operator::eventually;
use multus_e2e::process::expect_success;
use multus_e2e::{ControlPlane, unique_name};

const EXPECTED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/expected");
/// How long a condition (a policy or an RBAC rule being loaded) may take.
const WAIT: Duration = Duration::from_secs(60);
/// The name of the Multus ServiceAccount with the chart's default values.
const MULTUS_SA: &str = "multus";
/// The field manager the node agent writes its reports with.
const AGENT_FIELD_MANAGER: &str = "multus-node-agent";

/// The policies' messages (templates/admission-policies.yaml).
const TOKEN_DENIED: &str = "agents may request Multus tokens bound only to their own Node";
const OTHER_BUNDLE_DENIED: &str = "agents may change only their own node's bundle ConfigMap";
const DATA_DENIED: &str = "agents may not change a bundle's data, binaryData or immutable fields";

// ---------------------------------------------------------------------------------------
// helm and kubectl

// ---------------------------------------------------------------------------------------
// lint, schema, server-side validation

#[multus_e2e::test]
fn helm_lint_strict_passes_for_thin_thick_and_two_replicas() {
    let helm = Helm::new().expect("helm");
    for values in [&[][..], &["--set", "mode=thick"], &["--set", "replicas=2"]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(values);
        let out = helm.run(&args).expect("run helm");
        let stdout = expect_success(&out, &format!("helm {args:?}"));
        assert!(
            stdout.lines().any(|l| l.contains("0 chart(s) failed")),
            "helm {args:?} did not report 0 failed charts:\n{stdout}"
        );
    }
}

#[multus_e2e::test]
fn bad_values_are_refused_by_the_schema_with_readable_messages() {
    let helm = Helm::new().expect("helm");
    for (value, field) in [
        ("replicas=-1", "/replicas"),
        ("mode=bogus", "/mode"),
        ("paths.cniConfDir=relative/path", "/paths/cniConfDir"),
    ] {
        let out = helm
            .run(&["template", "schema", CHART, "--set", value])
            .expect("run helm");
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "--set {value} was accepted; rendered:\n{}",
            text(&out.stdout)
        );
        assert!(
            stderr.contains("don't meet the specifications of the schema"),
            "--set {value}: not refused by the schema:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("'{field}'")),
            "--set {value}: the message does not name {field}:\n{stderr}"
        );
    }
}

#[multus_e2e::test]
fn the_rendered_chart_is_accepted_by_the_api_server_in_both_modes() {
    let cp = ControlPlane::shared();
    let helm = Helm::new().expect("helm");
    for mode in ["thin", "thick"] {
        let ns = unique_name(&format!("chart-dry-{mode}"));
        let release = unique_name("dry");
        let created = cp
            .kubectl(&["create", "namespace", &ns])
            .expect("run kubectl");
        expect_success(&created, "kubectl create namespace");
        // With the CRDs too: crds/ is only rendered on request.
        let rendered = helm
            .template(
                &release,
                &ns,
                &["--include-crds", "--set", &format!("mode={mode}")],
            )
            .expect("helm template");
        let objects = documents(&rendered).expect("documents").len();
        let out = kubectl_with_input(cp, &["apply", "--dry-run=server", "-f", "-"], &rendered)
            .expect("run kubectl");
        let stdout = expect_success(
            &out,
            &format!("{mode}: server-side dry run of the rendered chart"),
        );
        // One line per object: none was skipped.
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            objects,
            "{mode}: not every rendered object was checked:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The trust boundary

/// One release's identities, RBAC and admission policies applied for real in their own
/// namespace, two simulated Nodes, the agent's Pod on node A and a client holding that Pod's
/// token (minted as kubelet does), and the two nodes' bundle ConfigMaps.
struct Boundary {
    ns: String,
    node_a: String,
    node_b: String,
    admin: Client,
    /// Authenticates as the node agent of node A, with its pod-bound token.
    agent: Client,
    _cleanup: Cleanup,
}

/// Deletes what a test made outside its namespace (and the namespace), even when it fails.
struct Cleanup {
    release: String,
    ns: String,
    nodes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cp = ControlPlane::shared();
        let selector = format!("app.kubernetes.io/instance={}", self.release);
        let kinds = "validatingadmissionpolicybindings,validatingadmissionpolicies,\
                     clusterrolebindings,clusterroles";
        let _ = cp.kubectl(&["delete", kinds, "-l", &selector, "--wait=false"]);
        for node in &self.nodes {
            let _ = cp.kubectl(&["delete", "node", node, "--wait=false"]);
        }
        let _ = cp.kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

/// Applies the chart's ServiceAccounts, RBAC and admission policies of a new release in a
/// new namespace; returns the namespace, release and applied documents.
fn apply_boundary(
    cp: &ControlPlane,
    prefix: &str,
    mode: &str,
) -> (Cleanup, Vec<serde_json::Value>) {
    let ns = unique_name(prefix);
    let release = unique_name("rel");
    let created = cp
        .kubectl(&["create", "namespace", &ns])
        .expect("run kubectl");
    expect_success(&created, "kubectl create namespace");
    let cleanup = Cleanup {
        release: release.clone(),
        ns: ns.clone(),
        nodes: Vec::new(),
    };
    let rendered = Helm::new()
        .and_then(|h| h.template(&release, &ns, &["--set", &format!("mode={mode}")]))
        .expect("helm template");
    let (stream, docs) = only_kinds(&rendered, BOUNDARY_KINDS).expect("documents");
    let applied = kubectl_with_input(cp, &["apply", "-f", "-"], &stream).expect("run kubectl");
    expect_success(&applied, "applying the chart's boundary objects");
    (cleanup, docs)
}

impl Boundary {
    async fn new(prefix: &str) -> Boundary {
        let cp = ControlPlane::shared();
        let admin = cp.client().await.expect("admin client");
        let (mut cleanup, _) = apply_boundary(cp, prefix, "thin");
        let ns = cleanup.ns.clone();
        let agent_sa = format!("{}-agent", fullname(&cleanup.release));

        let node_a = unique_name("node-a");
        let node_b = unique_name("node-b");
        for node in [&node_a, &node_b] {
            fixtures::node(&admin, node, &[], &[])
                .await
                .expect("create node");
            cleanup.nodes.push(node.clone());
        }

        // The node pod as the DaemonSet would create it on node A (it never runs here).
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "agent", "namespace": ns },
            "spec": {
                "nodeName": node_a,
                "serviceAccountName": agent_sa,
                "containers": [{ "name": "agent", "image": "multus-node-agent" }],
            },
        }))
        .expect("pod");
        let pod = Api::<Pod>::namespaced(admin.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await
            .expect("create the agent pod");
        let uid = pod.metadata.uid.expect("pod uid");
        // What kubelet mounts into the pod: a token of its account bound to the pod.
        let minted = fixtures::token(
            &admin,
            &ns,
            &agent_sa,
            BoundTo::Pod {
                name: "agent",
                uid: &uid,
            },
            3600,
        )
        .await
        .expect("agent token");
        let token = minted
            .status
            .and_then(|s| s.token)
            .expect("agent token issued");
        let agent = cp.client_with_token(&token).await.expect("agent client");

        // The bundles, as the operator writes them.
        let configmaps = Api::<ConfigMap>::namespaced(admin.clone(), &ns);
        for node in [&node_a, &node_b] {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("{CONFIGMAP_PREFIX}{node}"),
                    "annotations": { NODE_ANNOTATION: node },
                },
                "data": { "00-multus.conf": "{\"cniVersion\":\"1.0.0\"}" },
            }))
            .expect("configmap");
            configmaps
                .create(&PostParams::default(), &cm)
                .await
                .expect("create bundle configmap");
        }
        Boundary {
            ns,
            node_a,
            node_b,
            admin,
            agent,
            _cleanup: cleanup,
        }
    }

    fn bundle(node: &str) -> String {
        format!("{CONFIGMAP_PREFIX}{node}")
    }

    /// A reference to a Node, its uid read with `client`'s own rights.
    async fn node_ref(client: &Client, node: &str) -> Result<BoundObjectReference, kube::Error> {
        let found = Api::<Node>::all(client.clone()).get(node).await?;
        Ok(BoundObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid: found.metadata.uid,
        })
    }

    /// A TokenRequest for the Multus ServiceAccount, sent with the agent's credentials.
    async fn agent_requests_multus_token(
        &self,
        bound: Option<BoundObjectReference>,
    ) -> Result<TokenRequest, kube::Error> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(3600),
                bound_object_ref: bound,
            }),
            ..TokenRequest::default()
        };
        Api::<ServiceAccount>::namespaced(self.agent.clone(), &self.ns)
            .create_token_request(MULTUS_SA, &PostParams::default(), &request)
            .await
    }

    /// The agent's report patch (server-side apply, as the agent sends it) on `node`'s
    /// bundle, optionally also carrying `data`.
    async fn agent_patches_bundle(
        &self,
        node: &str,
        state: &str,
        data: Option<serde_json::Value>,
    ) -> Result<ConfigMap, kube::Error> {
        let name = Self::bundle(node);
        let mut patch = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name, "annotations": { feedback::STATE: state } },
        });
        if let Some(data) = data {
            patch["data"] = data;
        }
        Api::<ConfigMap>::namespaced(self.agent.clone(), &self.ns)
            .patch(
                &name,
                &PatchParams::apply(AGENT_FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
    }

    async fn bundle_as_admin(&self, node: &str) -> ConfigMap {
        Api::<ConfigMap>::namespaced(self.admin.clone(), &self.ns)
            .get(&Self::bundle(node))
            .await
            .expect("read bundle")
    }

    /// Waits until the bundle policy is loaded: the agent's report on node B's bundle is
    /// denied with the policy's message. Returns that denial.
    async fn wait_for_bundle_policy(&self) -> kube::core::Status {
        eventually(
            "the agent's patch of another node's bundle to be denied",
            WAIT,
            || async {
                denied_with(
                    self.agent_patches_bundle(&self.node_b, "Failed", None)
                        .await,
                    OTHER_BUNDLE_DENIED,
                )
            },
        )
        .await
    }
}

/// `Ok(status)` when `result` is a 403 whose message carries `message`, else why not.
fn denied_with<T>(
    result: Result<T, kube::Error>,
    message: &str,
) -> Result<kube::core::Status, String> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 && status.message.contains(message) => {
            Ok(*status)
        }
        Err(kube::Error::Api(status)) => Err(format!(
            "denied, but not with {message:?}: {} {}",
            status.code, status.message
        )),
        Err(other) => Err(format!("failed otherwise: {other}")),
        Ok(_) => Err("allowed".to_string()),
    }
}

fn assert_denied<T>(what: &str, result: Result<T, kube::Error>, message: &str) {
    if let Err(why) = denied_with(result, message) {
        panic!("{what}: expected a denial with {message:?}; {why}");
    }
}

#[multus_e2e::test]
async fn an_agent_may_request_a_multus_token_bound_to_its_own_node_only() {
    let cp = ControlPlane::shared();
    let b = Boundary::new("chart-tokens").await;
    let node_b_ref = Boundary::node_ref(&b.admin, &b.node_b)
        .await
        .expect("node B");
    let denial = eventually(
        "a Multus token bound to another node to be denied",
        WAIT,
        || async {
            denied_with(
                b.agent_requests_multus_token(Some(node_b_ref.clone()))
                    .await,
                TOKEN_DENIED,
            )
        },
    )
    .await;
    assert_eq!(denial.reason, "Forbidden", "{denial:?}");

    // Its own node, the way the agent does it: it reads its Node's uid with its own
    // credentials, then binds the token to it.
    let own = match Boundary::node_ref(&b.agent, &b.node_a).await {
        Ok(own) => own,
        Err(e) => panic!("the agent cannot read its own Node (it needs the uid): {e}"),
    };
    let minted = match b.agent_requests_multus_token(Some(own)).await {
        Ok(minted) => minted,
        Err(e) => panic!("a Multus token bound to the agent's own node was refused: {e}"),
    };
    let token = minted.status.and_then(|s| s.token).unwrap_or_default();
    assert!(!token.is_empty(), "no token issued");
    // The token names node A: what the Multus pods/status policy keys on.
    let multus = cp.client_with_token(&token).await.expect("multus client");
    let user = match fixtures::whoami(&multus).await {
        Ok(user) => user,
        Err(e) => panic!("the minted token does not authenticate: {e}"),
    };
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{}:{MULTUS_SA}", b.ns).as_str())
    );
    assert_eq!(
        user.extra
            .unwrap_or_default()
            .get("authentication.kubernetes.io/node-name"),
        Some(&vec![b.node_a.clone()])
    );
}

#[multus_e2e::test]
async fn an_agent_may_not_request_a_multus_token_bound_to_nothing_or_to_a_pod() {
    let b = Boundary::new("chart-unbound").await;
    eventually("an unbound Multus token to be denied", WAIT, || async {
        denied_with(b.agent_requests_multus_token(None).await, TOKEN_DENIED)
    })
    .await;

    // A Pod of the Multus account on the agent's own node: a valid binding as far as the
    // TokenRequest API goes, still not a Node.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "multus-on-a", "namespace": b.ns },
        "spec": {
            "nodeName": b.node_a,
            "serviceAccountName": MULTUS_SA,
            "automountServiceAccountToken": false,
            "containers": [{ "name": "multus", "image": "multus" }],
        },
    }))
    .expect("pod");
    let pod = Api::<Pod>::namespaced(b.admin.clone(), &b.ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create a pod of the multus account");
    let pod_ref = BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("multus-on-a".into()),
        uid: pod.metadata.uid,
    };
    assert_denied(
        "a Multus token bound to a Pod on the agent's node",
        b.agent_requests_multus_token(Some(pod_ref)).await,
        TOKEN_DENIED,
    );
}

#[multus_e2e::test]
async fn an_agent_may_not_change_another_nodes_configmap_annotations() {
    let b = Boundary::new("chart-othercm").await;
    let denial = b.wait_for_bundle_policy().await;
    assert_eq!(denial.reason, "Forbidden", "{denial:?}");
    assert_denied(
        "the agent's report on node B's bundle",
        b.agent_patches_bundle(&b.node_b, "Applied", None).await,
        OTHER_BUNDLE_DENIED,
    );
    let other = b.bundle_as_admin(&b.node_b).await;
    assert_ne!(
        other
            .metadata
            .annotations
            .unwrap_or_default()
            .get(feedback::STATE),
        Some(&"Applied".to_string()),
        "node B's bundle carries the denied report"
    );

    // Its own node's bundle: the same patch is allowed.
    if let Err(e) = b.agent_patches_bundle(&b.node_a, "Applied", None).await {
        panic!("the agent's report on its own bundle was refused: {e}");
    }
    let own = b.bundle_as_admin(&b.node_a).await;
    assert_eq!(
        own.metadata
            .annotations
            .unwrap_or_default()
            .get(feedback::STATE),
        Some(&"Applied".to_string())
    );
}

#[multus_e2e::test]
async fn an_agent_may_not_change_the_data_of_any_configmap_even_its_own() {
    let b = Boundary::new("chart-data").await;
    b.wait_for_bundle_policy().await;
    let before = b.bundle_as_admin(&b.node_a).await.data;
    // The agent's feedback patch, with a changed Multus config in it.
    let tamper = |node| {
        let data = json!({ "00-multus.conf": "{\"tampered\":true}" });
        b.agent_patches_bundle(node, "Applied", Some(data))
    };
    assert_denied(
        "a data change on the agent's own bundle",
        tamper(&b.node_a).await,
        DATA_DENIED,
    );
    // A merge patch of the data alone is refused the same way.
    let merge = Api::<ConfigMap>::namespaced(b.agent.clone(), &b.ns)
        .patch(
            &Boundary::bundle(&b.node_a),
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "extra.conf": "{}" } })),
        )
        .await;
    assert_denied(
        "a merge patch adding a key to its own bundle",
        merge,
        DATA_DENIED,
    );
    assert_eq!(b.bundle_as_admin(&b.node_a).await.data, before);

    // Another node's data: refused too (it is not the agent's bundle at all).
    assert_denied(
        "a data change on node B's bundle",
        tamper(&b.node_b).await,
        "agents may",
    );
}

// ---------------------------------------------------------------------------------------
// Permissions of every chart ServiceAccount

/// `kubectl auth can-i --list` for `user` in `ns`, with the namespace and release replaced by
/// placeholders, columns separated by one space, header first and the rules sorted.
fn permissions(cp: &ControlPlane, user: &str, ns: &str, release: &str) -> String {
    let out = cp
        .kubectl(&["auth", "can-i", "--list", "--as", user, "-n", ns])
        .expect("run kubectl");
    let listed = expect_success(&out, &format!("kubectl auth can-i --list --as {user}"));
    let normalised: Vec<String> = listed
        .lines()
        .map(|l| {
            l.replace(&fullname(release), "<fullname>")
                .replace(release, "<release>")
                .replace(ns, "<ns>")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect();
    let (header, rules) = normalised.split_first().expect("a header line");
    let mut rules = rules.to_vec();
    rules.sort();
    let mut result = vec![header.clone()];
    result.extend(rules);
    result.join("\n") + "\n"
}

/// `permissions` without the rules `baseline` has too (the header stays).
fn beyond(permissions: &str, baseline: &str) -> String {
    let generic: std::collections::BTreeSet<&str> = baseline.lines().skip(1).collect();
    let mut lines = permissions.lines();
    let header = lines.next().unwrap_or_default();
    std::iter::once(header)
        .chain(lines.filter(|l| !generic.contains(l)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Compares `actual` with the expectation file `name` (or rewrites it with UPDATE_EXPECTED);
/// a difference is added to `mismatches`.
fn check_expected(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = Path::new(EXPECTED_DIR).join(name);
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::create_dir_all(EXPECTED_DIR).expect("create the expectation directory");
        std::fs::write(&path, actual).expect("write an expectation file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}); run with UPDATE_EXPECTED=1",
            path.display()
        )
    });
    if actual != expected {
        mismatches.push(format!(
            "{}:\n--- expected\n{expected}--- actual\n{actual}",
            path.display()
        ));
    }
}

#[multus_e2e::test]
async fn each_chart_service_account_has_exactly_the_expected_permissions() {
    let cp = ControlPlane::shared();
    let admin = cp.client().await.expect("admin client");
    let mut mismatches = Vec::new();
    // The RBAC differs by mode: in thick mode multus-daemon runs in the node pod as the
    // agent's account, which then holds the Multus rules instead of the Multus account.
    for (mode, prefix) in [("thin", "permissions"), ("thick", "permissions-thick")] {
        let (cleanup, docs) = apply_boundary(cp, &format!("chart-rbac-{mode}"), mode);
        let (ns, release) = (cleanup.ns.as_str(), cleanup.release.as_str());
        wait_for_rbac(&admin, ns, &docs).await.expect("RBAC loaded");
        // What every ServiceAccount of the namespace may do without the chart (discovery,
        // self reviews, ...): one file, so that each account's file shows only what the chart
        // grants it, and a chart grant to a group shows up here.
        let baseline = permissions(
            cp,
            &format!("system:serviceaccount:{ns}:default"),
            ns,
            release,
        );
        check_expected("permissions-baseline.txt", &baseline, &mut mismatches);
        let full = fullname(release);
        let accounts = [
            ("operator", format!("{full}-operator")),
            ("agent", format!("{full}-agent")),
            ("multus", MULTUS_SA.to_string()),
            ("uninstall", format!("{full}-uninstall")),
            ("crds", format!("{full}-crds")),
        ];
        let rendered_accounts = docs
            .iter()
            .filter(|d| kind_of(d) == "ServiceAccount")
            .count();
        assert_eq!(
            rendered_accounts,
            accounts.len(),
            "{mode}: the chart's ServiceAccounts changed; list every one here"
        );
        for (role, account) in &accounts {
            let user = format!("system:serviceaccount:{ns}:{account}");
            let granted = beyond(&permissions(cp, &user, ns, release), &baseline);
            check_expected(&format!("{prefix}-{role}.txt"), &granted, &mut mismatches);
        }
    }
    assert!(
        mismatches.is_empty(),
        "permissions differ from the expectation files (if the change is intended, rerun with \
         UPDATE_EXPECTED=1 and review the diff):\n{}",
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// helm install, upgrade and uninstall against the real API server

/// `kubectl get <what> -o jsonpath=<path>` as admin; None when it fails (not found).
fn kubectl_get(cp: &ControlPlane, ns: &str, what: &str, path: &str) -> Option<String> {
    let out = cp
        .kubectl(&["get", what, "-n", ns, "-o", &format!("jsonpath={path}")])
        .expect("run kubectl");
    out.status.success().then(|| text(&out.stdout))
}

#[multus_e2e::test]
fn helm_installs_upgrades_and_uninstalls_the_release_against_the_api_server() {
    let cp = ControlPlane::shared();
    let helm = Helm::new().expect("helm");
    let ns = unique_name("chart-life");
    let release = unique_name("life");
    let deployment = format!("deployment/{}-operator", fullname(&release));
    let pdb = format!("poddisruptionbudget/{}-operator", fullname(&release));
    let helm_ok = |args: &[&str]| {
        let out = helm.run_with(args, Some(&cp.kubeconfig)).expect("run helm");
        expect_success(&out, &format!("helm {args:?}"))
    };
    // The shared control plane already has both CRDs (the harness installs them), as a
    // cluster with Multus does: the NAD CRD stays out of the release. No kubelet runs the
    // pods and no Job controller runs hooks here, so the uninstall hook is switched off;
    // with it off, uninstalling keeps the node files, and the chart renders no Job at all.
    let common = [
        "--namespace",
        ns.as_str(),
        "--create-namespace",
        "--set",
        "networkAttachmentDefinitionCrd.install=false",
        "--set",
        "uninstall.removeNodeFiles=false",
        // The pre-upgrade CRD Job would wait for a Job controller too; its program is
        // tested on its own (the_pre_upgrade_hook_updates_the_multusconfig_crd_...).
        "--set",
        "crds.updateOnUpgrade=false",
    ];
    let mut install = vec!["install", release.as_str(), CHART];
    install.extend_from_slice(&common);
    let notes = helm_ok(&install);
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(notes.contains("leaves every file on the nodes"), "{notes}");
    assert_eq!(
        kubectl_get(cp, &ns, &deployment, "{.spec.replicas}").as_deref(),
        Some("1")
    );
    assert_eq!(kubectl_get(cp, &ns, &pdb, "{.metadata.name}"), None);
    let jobs = kubectl_get(cp, &ns, "jobs", "{.items[*].metadata.name}");
    assert_eq!(jobs.as_deref(), Some(""), "no uninstall Job: {jobs:?}");

    // Upgrade with a changed value: two replicas elect a leader and get a disruption budget.
    let mut upgrade = vec!["upgrade", release.as_str(), CHART];
    upgrade.extend_from_slice(&common);
    upgrade.extend_from_slice(&["--set", "replicas=2"]);
    helm_ok(&upgrade);
    assert_eq!(
        kubectl_get(cp, &ns, &deployment, "{.spec.replicas}").as_deref(),
        Some("2")
    );
    let args = kubectl_get(
        cp,
        &ns,
        &deployment,
        "{.spec.template.spec.containers[0].args}",
    )
    .unwrap_or_default();
    assert!(args.contains("--leader-elect"), "{args}");
    assert!(kubectl_get(cp, &ns, &pdb, "{.metadata.name}").is_some());

    helm_ok(&[
        "uninstall",
        release.as_str(),
        "--namespace",
        ns.as_str(),
        "--wait",
    ]);
    assert_eq!(kubectl_get(cp, &ns, &deployment, "{.metadata.name}"), None);
    let daemonsets = kubectl_get(cp, &ns, "daemonsets", "{.items[*].metadata.name}");
    assert_eq!(daemonsets.as_deref(), Some(""));
    // The CRD stays: deleting it would delete every MultusConfig with it.
    let crd = cp
        .kubectl(&["get", "crd", "multusconfigs.operator.multus.dev"])
        .expect("run kubectl");
    expect_success(&crd, "the CRD after uninstall");
    let _ = cp.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

// ---------------------------------------------------------------------------------------
// The pre-upgrade hook's program: the CRD updated on upgrade

#[multus_e2e::test]
async fn the_pre_upgrade_hook_updates_the_multusconfig_crd_with_its_own_identity_only() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let cp = ControlPlane::shared();
    let (admin, ns) = fixtures::test_namespace(cp, "chart-crds")
        .await
        .expect("admin client and namespace");
    let identities = multus_e2e::identities::Identities::apply(cp, &ns, "thin")
        .await
        .expect("identities");
    let kubeconfig = identities
        .crds_kubeconfig(cp)
        .await
        .expect("hook kubeconfig");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let name = "multusconfigs.operator.multus.dev";
    let description = |crd: &CustomResourceDefinition| {
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.description.clone())
            .unwrap_or_default()
    };
    // The cluster holds the CRD of an older chart: Helm installed crds/ once and never
    // touches it again. (Only the description differs, so other tests are unaffected.)
    let mut stale = crds.get(name).await.expect("read CRD");
    if let Some(schema) = stale.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
    {
        schema.description = Some("left by an older chart".into());
    }
    crds.replace(name, &PostParams::default(), &stale)
        .await
        .expect("make the CRD stale");
    assert_eq!(
        description(&crds.get(name).await.expect("read CRD")),
        "left by an older chart"
    );

    let binary = multus_e2e::binaries_local::workspace_bin("multus-operator").expect("binary");
    let out = tokio::process::Command::new(binary)
        .args(["crds", "--apply"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .expect("run multus-operator crds --apply");
    let stdout = expect_success(&out, "multus-operator crds --apply");
    assert!(stdout.contains(&format!("{name}: applied")));
    let live = crds.get(name).await.expect("read CRD");
    assert_eq!(
        description(&live),
        description(&multus_crds::MultusConfig::crd()),
        "the CRD is the chart's again"
    );
    assert_eq!(
        serde_json::to_value(&live.spec.versions).expect("json"),
        serde_json::to_value(&multus_crds::MultusConfig::crd().spec.versions).expect("json"),
    );

    // The same identity may not change any other CRD.
    let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("hook config");
    let hook = Client::try_from(config).expect("hook client");
    let other: Api<CustomResourceDefinition> = Api::all(hook);
    let denied = other
        .patch(
            "network-attachment-definitions.k8s.cni.cncf.io",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
        )
        .await
        .expect_err("patching another CRD is forbidden");
    assert!(denied.to_string().contains("forbidden"), "{denied}");
    let _ = cp.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

// ---------------------------------------------------------------------------------------
// README's values table

/// Dotted paths of the schema's leaves (properties without properties of their own).
fn schema_leaves(node: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match node["properties"].as_object() {
        Some(properties) => {
            for (key, child) in properties {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                schema_leaves(child, &path, out);
            }
        }
        None => out.push(prefix.to_string()),
    }
}

#[multus_e2e::test]
fn the_readme_values_table_has_every_schema_value_with_its_default() {
    let read = |path: &str| std::fs::read_to_string(path).expect("read file");
    let schema: serde_json::Value =
        serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).expect("schema");
    let values: serde_json::Value =
        serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values");
    let readme = read(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let section = readme
        .split("### Chart values")
        .nth(1)
        .expect("README has a Chart values section");
    let rows: Vec<(String, String)> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('`').collect();
            (cells[1].to_string(), cells[3].to_string())
        })
        .collect();
    let mut leaves = Vec::new();
    schema_leaves(&schema, "", &mut leaves);
    leaves.retain(|l| l != "global");
    let listed: Vec<&String> = rows.iter().map(|(k, _)| k).collect();
    let missing: Vec<&String> = leaves.iter().filter(|l| !listed.contains(l)).collect();
    let unknown: Vec<&&String> = listed.iter().filter(|k| !leaves.contains(k)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README's values table and values.schema.json differ: missing {missing:?}, not in the schema {unknown:?}"
    );
    for (key, default) in &rows {
        let actual = key.split('.').fold(&values, |node, part| &node[part]);
        let shown: serde_json::Value = serde_json::from_str(default)
            .unwrap_or_else(|e| panic!("default of {key} is not JSON ({default}): {e}"));
        assert_eq!(
            &shown, actual,
            "README's default of {key} differs from values.yaml"
        );
    }
}

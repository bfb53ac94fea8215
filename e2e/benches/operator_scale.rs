//! The operator at scale, against the real control plane: NODES simulated Nodes (no agents)
//! and NADS NetworkAttachmentDefinitions, one MultusConfig selecting every node. Measures the
//! setup itself, the initial rollout, a full resync after a restart (and that it writes
//! nothing), peak memory, and API writes per changed node for a NAD edit and a node label
//! change, counted from the API server's audit log. Prints the figures; asserts nothing.
//!
//! `cargo bench -p multus-e2e --bench operator_scale`. Sizes: NODES (5000), NADS (500),
//! NAD_NAMESPACES (10, the NADs spread over them), FILE_NADS (how many NADs the MultusConfig
//! writes to every node as files; default a tenth of NADS, the others are inline in
//! `spec.config`, which Multus reads from the API).

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

use multus_crds::bundle::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, node_configmap_name};
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};
use multus_e2e::audit::{AuditLog, describe_writes};
use multus_e2e::bench::env_or;
use multus_e2e::bench::{machine, row};
use multus_e2e::bench_cluster::BenchCluster;
use multus_e2e::binaries_local::workspace_release_bin;
use multus_e2e::fixtures;
use multus_e2e::operator_process::{OperatorProcess, Options, POLL};
use multus_e2e::scale::shapes::{
    UPLINK, bundle_bytes_with_all_as_files, multus_config, nad, nad_object, node_name,
};
use multus_e2e::scale::{ConfigMapVersions, bounded, changed, until};

const NS: &str = "bench";
const PARALLEL: usize = 32;
/// Long enough for 5,000 nodes on two cores; a bench that stalls fails instead of hanging.
const LONG: Duration = Duration::from_secs(3600);
/// No reconcile started for this long (five debounce periods) counts as settled.
const QUIET: Duration = Duration::from_millis(2500);

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Waits until the operator has started a reconcile after `before` reconciles, then until it
/// settles. Returns the time from `since` to the last change of its counters.
async fn after_change(op: &OperatorProcess, before: f64, since: Instant) -> Duration {
    until("a reconcile after the change", LONG, POLL, || async {
        op.progress().await.filter(|p| p.started > before)
    })
    .await
    .expect("reconcile");
    let (_, at) = op.settle(QUIET, LONG).await.expect("settle");
    at.saturating_duration_since(since)
}

#[tokio::main]
async fn main() {
    // Built (when needed) before the clock starts: the run time below is the benchmark's own.
    tokio::task::spawn_blocking(|| workspace_release_bin("multus-operator"))
        .await
        .expect("join")
        .expect("operator binary");
    let run = Instant::now();
    let nodes = env_or("NODES", 5000usize);
    let nads = env_or("NADS", 500usize);
    let file_nads = env_or("FILE_NADS", nads / 10).min(nads);
    let namespaces = env_or("NAD_NAMESPACES", 10usize).max(1);
    println!(
        "operator at scale: {nodes} simulated nodes (no agents), {nads} NADs in {namespaces} namespaces, {file_nads} of them written to every node; {}",
        machine()
    );
    let per_node_all = bundle_bytes_with_all_as_files(nads, namespaces);
    row(
        &format!("bundle of one node with all {nads} NADs as files (rendered in-process)"),
        &format!(
            "{:.1} KiB; x {nodes} nodes = {} (etcd's default quota: 2 GiB)",
            per_node_all as f64 / 1024.0,
            mib(per_node_all * nodes)
        ),
        None,
        None,
    );

    let cluster = BenchCluster::start(NS).await.expect("control plane");
    let (cp, client, identities) = (&cluster.cp, &cluster.admin, &cluster.identities);
    let kubeconfig = identities
        .operator_kubeconfig(cp)
        .await
        .expect("kubeconfig");
    // Its log on this process's stderr; no agent runs here to mint tokens for the Multus
    // account, so that stays the binary's default.
    let launch = Options {
        kubeconfig: &kubeconfig,
        namespace: NS,
        multus_account: None,
        log: None,
    };
    let operator_client = identities.operator_client(cp).await.expect("client");
    let user = fixtures::whoami(&operator_client)
        .await
        .expect("whoami")
        .username
        .expect("username");

    // Setup, timed so a reader knows what a run costs.
    for k in 0..namespaces {
        fixtures::namespace(client, &format!("scale-nads-{k}"))
            .await
            .expect("NAD namespace");
    }
    let began = Instant::now();
    bounded(nads, PARALLEL, |i| {
        let client = client.clone();
        async move {
            let object = nad_object(i, file_nads, namespaces, &format!("br-{i}"));
            let ns = format!("scale-nads-{}", i % namespaces);
            Api::<NetworkAttachmentDefinition>::namespaced(client, &ns)
                .patch(
                    &format!("net-{i:04}"),
                    &PatchParams::apply("scale-bench"),
                    &Patch::Apply(&object),
                )
                .await
                .map(|_| ())
                .map_err(|e| multus_e2e::E2eError::Kube(format!("create NAD {i}: {e}")))
        }
    })
    .await
    .expect("NADs");
    let nads_took = began.elapsed();
    let began = Instant::now();
    bounded(nodes, PARALLEL, |i| {
        let client = client.clone();
        async move {
            fixtures::node(
                &client,
                &node_name(i),
                &[("pool", "scale"), (UPLINK, "eth0")],
                &[],
            )
            .await
            .map(|_| ())
        }
    })
    .await
    .expect("Nodes");
    let nodes_took = began.elapsed();
    row(
        &format!("setup: create {nodes} Nodes / {nads} NADs, {PARALLEL} at a time"),
        &format!(
            "{:.1} s / {:.1} s",
            nodes_took.as_secs_f64(),
            nads_took.as_secs_f64()
        ),
        None,
        None,
    );

    let versions = ConfigMapVersions::watch(
        client.clone(),
        NS,
        &format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"),
    );
    let audit_path = cluster.audit_log();
    let op = OperatorProcess::start_ready(&launch, LONG)
        .await
        .expect("operator ready");
    let (_, at) = op.settle(QUIET, LONG).await.expect("settle");
    row(
        &format!(
            "operator start -> ready, caches of {nodes} Nodes and {nads} NADs, no MultusConfig: time / RSS"
        ),
        &format!(
            "{:.2} s / {:.1} MiB",
            at.saturating_duration_since(op.started).as_secs_f64(),
            op.rss_mib()
        ),
        None,
        None,
    );

    // Initial rollout.
    let mut audit = AuditLog::from_end(&audit_path);
    let created = Instant::now();
    Api::<MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &multus_config())
        .await
        .expect("create MultusConfig");
    versions
        .wait_for("every bundle", LONG, |m| m.len() >= nodes)
        .await
        .expect("initial rollout");
    let initial = created.elapsed();
    op.settle(QUIET, LONG).await.expect("settle");
    let writes = audit.writes_since(&user).expect("audit");
    row(
        &format!("initial rollout: MultusConfig created -> all {nodes} bundles written"),
        &format!(
            "{:.2} s; operator writes {}",
            initial.as_secs_f64(),
            describe_writes(&writes)
        ),
        None,
        None,
    );
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .get(&node_configmap_name(&node_name(1)))
        .await
        .expect("a bundle ConfigMap");
    let data: usize = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let object = serde_json::to_vec(&cm).map(|v| v.len()).unwrap_or(0);
    row(
        &format!("bundle ConfigMap per node with {file_nads} NADs as files: data / object"),
        &format!(
            "{:.1} KiB / {:.1} KiB; x {nodes} nodes = {}",
            data as f64 / 1024.0,
            object as f64 / 1024.0,
            mib(object * nodes)
        ),
        None,
        None,
    );

    // One NAD edited: every node carries it, so every bundle changes.
    if file_nads >= 2 {
        let before = versions.now();
        let reconciles = op.progress().await.expect("metrics").started;
        let edited = nad(1, file_nads, namespaces, "br-edited");
        let ns = edited.metadata.namespace.clone().unwrap_or_default();
        let patch = json!({ "metadata": { "annotations": edited.metadata.annotations } });
        let at = Instant::now();
        Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), &ns)
            .patch("net-0001", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("edit NAD");
        versions
            .wait_for("every bundle to change", LONG, |m| {
                changed(&before, m) >= nodes
            })
            .await
            .expect("edit rollout");
        let rolled = at.elapsed();
        after_change(&op, reconciles, at).await;
        let changed_nodes = changed(&before, &versions.now());
        let writes = audit.writes_since(&user).expect("audit");
        row(
            "NAD edit: operator API writes per changed node (goal 1)",
            &format!(
                "{:.2}: writes {} for {changed_nodes} changed bundles, all written in {:.2} s",
                writes.len() as f64 / changed_nodes.max(1) as f64,
                describe_writes(&writes),
                rolled.as_secs_f64()
            ),
            None,
            None,
        );
    }
    // An inline NAD (not written to nodes) edited: nothing to write.
    if file_nads < nads {
        let i = nads - 1;
        let before = versions.now();
        let reconciles = op.progress().await.expect("metrics").started;
        let edited = nad(i, file_nads, namespaces, "br-edited");
        let ns = edited.metadata.namespace.clone().unwrap_or_default();
        let patch = json!({ "spec": edited.spec });
        let at = Instant::now();
        Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), &ns)
            .patch(
                &format!("net-{i:04}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("edit inline NAD");
        let took = after_change(&op, reconciles, at).await;
        let writes = audit.writes_since(&user).expect("audit");
        row(
            "inline NAD edit (not written to nodes): operator API writes",
            &format!(
                "{}; {} bundles changed; reconciled in {:.2} s",
                describe_writes(&writes),
                changed(&before, &versions.now()),
                took.as_secs_f64()
            ),
            None,
            None,
        );
    }
    // A label that NAD 0's placeholder reads, changed on one node.
    if file_nads >= 1 {
        let before = versions.now();
        let reconciles = op.progress().await.expect("metrics").started;
        let at = Instant::now();
        Api::<Node>::all(client.clone())
            .patch(
                &node_name(0),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "metadata": { "labels": { UPLINK: "eth1" } } })),
            )
            .await
            .expect("relabel node");
        let took = after_change(&op, reconciles, at).await;
        let writes = audit.writes_since(&user).expect("audit");
        let own = node_configmap_name(&node_name(0));
        let elsewhere = writes.iter().filter(|w| w.name != own).count();
        row(
            "label change on one node: operator API writes (goal: that node's only)",
            &format!(
                "{}, {elsewhere} for other objects; {} bundles changed; reconciled in {:.2} s",
                describe_writes(&writes),
                changed(&before, &versions.now()),
                took.as_secs_f64()
            ),
            None,
            None,
        );
    }
    let peak_first = op.peak_rss_mib();
    op.stop().await;

    // Full resync: a new operator finds everything in place.
    let mut audit = AuditLog::from_end(&audit_path);
    let op = OperatorProcess::start(&launch).await.expect("operator");
    let ready = until("the restarted operator to be ready", LONG, POLL, || async {
        op.ready().await.then(|| op.started.elapsed())
    })
    .await
    .expect("ready");
    let reconciled = until("a full reconcile", LONG, POLL, || async {
        op.progress()
            .await
            .filter(|p| p.succeeded >= 1.0)
            .map(|_| op.started.elapsed())
    })
    .await
    .expect("reconciled");
    let (progress, at) = op.settle(QUIET, LONG).await.expect("settle");
    let writes = audit.writes_since(&user).expect("audit");
    row(
        &format!(
            "full resync after a restart, {nodes} nodes x {file_nads} NADs as files: start -> ready / -> reconciled (goal <= 10 s)"
        ),
        &format!(
            "{:.2} s / {:.2} s; settled after {:.2} s, {} reconciles of {:.2} s each; writes {}",
            ready.as_secs_f64(),
            reconciled.as_secs_f64(),
            at.saturating_duration_since(op.started).as_secs_f64(),
            progress.started,
            progress.busy / progress.started.max(1.0),
            describe_writes(&writes)
        ),
        None,
        None,
    );
    let peak_resync = op.peak_rss_mib();
    row(
        "operator peak RSS (VmHWM): rollout and edits / resync (goal <= 150 MiB)",
        &format!("{peak_first:.1} MiB / {peak_resync:.1} MiB"),
        None,
        None,
    );
    op.stop().await;
    let db = std::fs::metadata(cp.dir.join("etcd/member/snap/db")).map_or(0, |m| m.len());
    row(
        "etcd database file after the run",
        &mib(db as usize),
        None,
        None,
    );
    println!("whole run: {:.1} s", run.elapsed().as_secs_f64());
    drop(versions);
    cluster.stop().await;
}

//! Operator convergence over many simulated nodes, against the real control plane:
//! time until every node has its bundle, time from a NAD edit until every bundle carries it,
//! operator memory, and API writes per node. Prints the figures; asserts nothing about them.
//!
//! `cargo bench -p multus-e2e --bench convergence` (NODES=200 by default).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

use multus_crds::NetworkAttachmentDefinition;
use multus_e2e::operator_process::{OperatorProcess, Options};
use multus_e2e::process::status_kib;
use multus_e2e::{ControlPlane, bench, fixtures, http};

const POLL: Duration = Duration::from_millis(250);

fn metric(text: &str, name: &str) -> f64 {
    http::metric(text, name).unwrap_or(0.0)
}

/// Polls until every bundle ConfigMap satisfies `done`; returns the elapsed time.
async fn until_all(
    cms: &Api<ConfigMap>,
    nodes: usize,
    done: impl Fn(&ConfigMap) -> bool,
) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    loop {
        let list = cms
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=multus-operator"))
            .await
            .expect("list ConfigMaps");
        if list.items.iter().filter(|cm| done(cm)).count() == nodes {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within 10 minutes"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Creates or edits the benchmark's one NAD, `net`, a bridge on `bridge`.
async fn apply_nad(nads: &Api<NetworkAttachmentDefinition>, bridge: &str) {
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "net" },
        "spec": { "config": format!(r#"{{"cniVersion":"0.3.1","type":"bridge","bridge":"{bridge}"}}"#) },
    });
    nads.patch("net", &PatchParams::apply("bench"), &Patch::Apply(&nad))
        .await
        .expect("apply the NAD");
}

#[tokio::main]
async fn main() {
    let nodes: usize = bench::env_or("NODES", 200);
    let cp = ControlPlane::own(ControlPlane::start).await;
    let client = cp.client().await.unwrap();
    let ns = "bench";
    fixtures::namespace(&client, ns).await.unwrap();
    // The operator runs with the chart's identity.
    let identities = multus_e2e::identities::Identities::apply(&cp, ns, "thin")
        .await
        .unwrap();
    let operator_kubeconfig = identities.operator_kubeconfig(&cp).await.unwrap();
    for i in 0..nodes {
        fixtures::node(
            &client,
            &format!("bench-node-{i:04}"),
            &[("pool", "bench")],
            &[],
        )
        .await
        .unwrap();
    }
    let nads: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), ns);
    apply_nad(&nads, "br-one").await;

    let options = Options {
        kubeconfig: operator_kubeconfig.as_ref(),
        namespace: ns,
        multus_account: None,
        log: None,
    };
    let operator = OperatorProcess::start_ready(&options, Duration::from_secs(120))
        .await
        .expect("operator ready");
    let pid = operator.pid;
    let idle_rss = status_kib(pid, "VmRSS:");

    let config = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": "bench" },
        "spec": {
            "nodeSelector": { "matchLabels": { "pool": "bench" } },
            "primary": { "file": "10-calico.conflist" },
            "attachments": {},
            "rollout": { "maxUnavailable": "100%" },
        },
    }))
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Api::<multus_crds::MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let has = |bridge: &'static str| {
        move |cm: &ConfigMap| {
            cm.data
                .as_ref()
                .and_then(|d| d.get("bench-net.conf"))
                .is_some_and(|t| t.contains(bridge))
        }
    };
    let initial = until_all(&cms, nodes, has("br-one")).await;
    let writes_initial = metric(
        &http::get(&operator.addr, "/metrics").await.unwrap().1,
        "multus_operator_api_writes_total",
    );

    apply_nad(&nads, "br-two").await;
    let edit = until_all(&cms, nodes, has("br-two")).await;
    let metrics = http::get(&operator.addr, "/metrics").await.unwrap().1;
    let writes_total = metric(&metrics, "multus_operator_api_writes_total");
    let reconciles = metric(&metrics, "multus_operator_reconciles_total");
    let rss = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");

    println!(
        "operator convergence, {nodes} simulated nodes, one MultusConfig, one NAD (release build, maxUnavailable 100%, polled every {} ms)",
        POLL.as_millis()
    );
    println!(
        "  all {nodes} bundles written after creating the MultusConfig: {:>8.2} s",
        initial.as_secs_f64()
    );
    println!(
        "  NAD edit until all {nodes} bundles carry it:              {:>8.2} s",
        edit.as_secs_f64()
    );
    println!(
        "  operator RSS idle (caches synced, no work):           {:>8.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  operator RSS after the edit:                           {:>8.1} MiB",
        rss as f64 / 1024.0
    );
    println!(
        "  operator peak RSS:                                     {:>8.1} MiB",
        peak as f64 / 1024.0
    );
    println!(
        "  API writes for the initial rollout:                    {:>8.0} ({:.2} per node)",
        writes_initial,
        writes_initial / nodes as f64
    );
    println!(
        "  API writes for the NAD edit:                           {:>8.0} ({:.2} per node)",
        writes_total - writes_initial,
        (writes_total - writes_initial) / nodes as f64
    );
    println!(
        "  reconciles in total:                                   {:>8.0}",
        reconciles
    );
    drop(operator);
}

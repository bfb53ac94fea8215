//! Upstream Multus failures (MULTUS-FACTS "The five upstream failures"), each shown on the
//! upstream release that had it and next to our operator and agent on the same control
//! plane, through real Multus: two simulated nodes per test, one prepared by the upstream
//! release as its DaemonSet runs it ([`UpstreamNode`]), one by our agent ([`AgentNode`]),
//! then ADD, CHECK and DEL for a pod on each (a Pod object, a fresh network namespace).
//!
//! What upstream printed is echoed with `eprintln!` (run with `--nocapture` to see it) and
//! recorded in README.md, "How it is tested".

use serde_json::{Value, json};
use std::time::Duration;

use multus_crds::nad::NODE_CONFIG_ANNOTATION as NODE_CONFIG;
use multus_e2e::ControlPlane;
use multus_e2e::podnet::{AgentNode, PodRef, addresses_in, interfaces_in, printed};
use multus_e2e::process::expect_success;
use multus_e2e::thick::Daemon;
use multus_e2e::upstream::Entrypoint;
use multus_e2e::upstream_node::UpstreamNode;

/// Deadline for an upstream entrypoint or daemon to write its files (tens of milliseconds
/// idle; the 47 MB binary copy and a loaded 2-core machine make it seconds).
const WAIT: Duration = Duration::from_secs(60);

/// ADD, CHECK and DEL through `node`'s mode for `pod`; returns the addresses after ADD.
/// DEL must leave only `lo`.
async fn add_check_del(node: &AgentNode, pod: &PodRef) -> String {
    let added = node.cni("ADD", pod).await.unwrap();
    expect_success(&added, &format!("{} ADD", node.mode));
    let addresses = addresses_in(&pod.netns).unwrap();
    let checked = node.cni("CHECK", pod).await.unwrap();
    expect_success(&checked, &format!("{} CHECK", node.mode));
    let deleted = node.cni("DEL", pod).await.unwrap();
    expect_success(&deleted, &format!("{} DEL", node.mode));
    assert_eq!(interfaces_in(&pod.netns).unwrap(), vec!["lo".to_string()]);
    addresses
}

/// A pod `client` asking for `network` through our `node`, as [`add_check_del`]: after ADD
/// it has an address on the primary (198.18.0.x) and one starting with `subnet`. The thick
/// `daemon`'s log is shown when not.
async fn pod_on_both_networks(
    node: &mut AgentNode,
    network: &str,
    subnet: &str,
    daemon: Option<&Daemon>,
) {
    let pod = node.pod("client", network).await.unwrap();
    let addresses = add_check_del(node, &pod).await;
    assert!(
        addresses.contains("198.18.0.") && addresses.contains(subnet),
        "{addresses}{}",
        daemon
            .map(|d| format!("\ndaemon log:\n{}", d.log()))
            .unwrap_or_default()
    );
}

/// Our node in `mode` with `nad` (an inline NAD named `extra`) and a fixed primary file.
async fn ours_with_fixed_primary(cp: &ControlPlane, mode: &'static str, subnet: &str) -> AgentNode {
    let mut node = AgentNode::with_mode(cp, "kubecfg", mode).await.unwrap();
    let extra = node.host.bridge_network(1, subnet, false);
    node.nad("extra", json!({}), &extra.to_string())
        .await
        .unwrap();
    node.start(cp, json!({ "primary": { "file": "10-bridge.conflist" } }))
        .await
        .unwrap();
    node
}

#[multus_e2e::test]
async fn with_a_fixed_config_file_upstream_v4_0_2_writes_no_kubeconfig_and_add_fails_ours_works_thin_and_thick()
 {
    let cp = ControlPlane::shared();
    let ours = ours_with_fixed_primary(cp, "thin", "198.18.10.0/24").await;
    assert!(
        ours.host
            .root()
            .join("net.d/multus.d/multus.kubeconfig")
            .exists(),
        "our agent writes the kubeconfig for a fixed primary"
    );

    // Upstream v4.0.2's thin DaemonSet, switched to its ConfigMap's file as its manifest
    // says (`--multus-conf-file=/tmp/multus-conf/70-multus.conf`). The ConfigMap's config
    // with this node's bridge in place of flannel and its kubeconfig path on this host root.
    let mut upstream = UpstreamNode::new(cp, &ours.ns, "198.18.12.0/24")
        .await
        .unwrap();
    let kubeconfig = upstream.path("etc/cni/net.d/multus.d/multus.kubeconfig");
    let primary = upstream.json("etc/cni/net.d/10-bridge.conflist").unwrap();
    let fixed = json!({
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": { "portMappings": true },
        "delegates": [primary],
        "kubeconfig": kubeconfig.display().to_string(),
    });
    let mounted = upstream.work.path().join("multus-conf");
    std::fs::create_dir_all(&mounted).unwrap();
    let conf_file = mounted.join("70-multus.conf");
    std::fs::write(&conf_file, fixed.to_string()).unwrap();
    let conf_arg = conf_file.display().to_string();
    let which = Entrypoint {
        release: Some("v4.0.2"),
        conf_file: &conf_arg,
        log: "thin_entrypoint-fixed.log",
    };
    let log = upstream
        .run_entrypoint(cp, &which, "is copied.", WAIT)
        .await
        .unwrap();
    eprintln!("upstream v4.0.2 thin_entrypoint printed:\n{log}");
    assert!(!log.contains("kubeconfig"), "{log}");
    assert!(!kubeconfig.exists(), "v4.0.2 wrote a kubeconfig after all");
    assert!(upstream.path("etc/cni/net.d/70-multus.conf").exists());

    // A pod asking for a network needs its annotations from the API server: upstream's
    // node cannot read them.
    let pod = upstream.pod("upstream-client", "extra").await.unwrap();
    let multus = upstream.path("opt/cni/bin/multus");
    let failed = upstream
        .cni(&multus, "ADD", "etc/cni/net.d/70-multus.conf", &pod)
        .await
        .unwrap();
    let said = printed(&failed);
    eprintln!("upstream v4.0.2 multus ADD printed:\n{said}");
    assert!(!failed.status.success(), "{said}");
    assert!(said.contains("multus.kubeconfig"), "{said}");

    // Ours, thin: the same pod shape gets both networks.
    let mut ours = ours;
    pod_on_both_networks(&mut ours, "extra", "198.18.10.", None).await;
    ours.stop().await;

    // Ours, thick: the kubeconfig is written all the same, and the daemon serves the pod.
    let mut thick = ours_with_fixed_primary(cp, "thick", "198.18.11.0/24").await;
    assert!(
        thick
            .host
            .root()
            .join("net.d/multus.d/multus.kubeconfig")
            .exists()
    );
    let daemon = thick.start_daemon(cp).await.unwrap();
    pod_on_both_networks(&mut thick, "extra", "198.18.11.", Some(&daemon)).await;
    daemon.stop().await;
    thick.stop().await;
}

#[multus_e2e::test]
async fn a_file_backed_network_resolves_through_our_thick_daemon_and_upstream_v4_1_0_finds_no_networks()
 {
    let cp = ControlPlane::shared();
    let mut ours = AgentNode::with_mode(cp, "confdir", "thick").await.unwrap();
    let storage = ours.host.bridge_network(1, "198.18.20.0/24", false);
    ours.nad("storage", json!({ NODE_CONFIG: storage.to_string() }), "")
        .await
        .unwrap();
    ours.start(cp, json!({})).await.unwrap();
    let written = ours
        .host
        .root()
        .join(format!("multus/{}-storage.conf", ours.ns));
    let file: Value = serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
    assert_eq!(file["name"], "storage");

    // Ours: multus-shim v4.3.0 -> multus-daemon v4.3.0 with the daemon config the agent
    // wrote; the file-backed network comes from the file the agent wrote.
    let daemon = ours.start_daemon(cp).await.unwrap();
    pod_on_both_networks(&mut ours, "storage", "198.18.20.", Some(&daemon)).await;
    assert_eq!(ours.host.leases("storage"), Vec::<String>::new());

    // Upstream v4.1.0's thick DaemonSet: the same network file where upstream documents
    // it, the host's /etc/cni/multus/net.d, which its daemon container does not mount.
    let mut upstream = UpstreamNode::new(cp, &ours.ns, "198.18.21.0/24")
        .await
        .unwrap();
    std::fs::write(
        upstream.path("etc/cni/multus/net.d/storage.conf"),
        file.to_string(),
    )
    .unwrap();
    let up_daemon = upstream.start_thick(cp, "v4.1.0").await.unwrap();
    let shim_conf = "etc/cni/net.d/00-multus.conf";
    let generated = upstream.json(shim_conf).unwrap();
    eprintln!("upstream v4.1.0 multus-daemon generated {shim_conf}: {generated}");
    assert!(generated.get("confDir").is_none(), "{generated}");
    let shim = multus_e2e::upstream::release_bin("v4.1.0", "multus-shim").unwrap();

    // The daemon works: a pod without extra networks comes up.
    let plain = upstream.pod("upstream-plain", "").await.unwrap();
    let added = upstream.cni(&shim, "ADD", shim_conf, &plain).await.unwrap();
    assert!(
        added.status.success(),
        "{}\n{}",
        printed(&added),
        up_daemon.log()
    );
    let deleted = upstream.cni(&shim, "DEL", shim_conf, &plain).await.unwrap();
    expect_success(&deleted, "upstream multus-shim DEL");

    // The file-backed network is not found.
    let pod = upstream.pod("upstream-client", "storage").await.unwrap();
    let failed = upstream.cni(&shim, "ADD", shim_conf, &pod).await.unwrap();
    let said = printed(&failed);
    eprintln!("upstream v4.1.0 multus-shim ADD printed:\n{said}");
    assert!(!failed.status.success(), "{said}");
    assert!(
        said.contains("No networks found in /etc/cni/multus/net.d"),
        "{said}"
    );
    up_daemon.stop().await;
    daemon.stop().await;
    ours.stop().await;
}

/// How many Multus plugins are nested in a thin config: 1 for a sound one.
fn multus_depth(config: &Value) -> usize {
    let mut depth = 0;
    let mut current = Some(config);
    while let Some(c) = current {
        if c["type"] != "multus" {
            break;
        }
        depth += 1;
        current = c["delegates"].get(0);
    }
    depth
}

#[multus_e2e::test]
async fn upstream_v4_0_2_restarted_five_times_nests_its_config_while_ours_adds_exactly_one_eth0() {
    let cp = ControlPlane::shared();
    let mut ours = AgentNode::new(cp, "selfdeleg").await.unwrap();
    ours.start(cp, json!({})).await.unwrap();

    // Upstream v4.0.2's thin DaemonSet (auto mode), its container restarted five times.
    let upstream = UpstreamNode::new(cp, &ours.ns, "198.18.30.0/24")
        .await
        .unwrap();
    let conf = "etc/cni/net.d/00-multus.conf";
    let mut sizes = Vec::new();
    let mut depths = Vec::new();
    for start in 1..=5 {
        let log = format!("thin_entrypoint-{start}.log");
        let which = Entrypoint {
            release: Some("v4.0.2"),
            conf_file: "auto",
            log: &log,
        };
        upstream
            .run_entrypoint(cp, &which, "multus config file is created.", WAIT)
            .await
            .unwrap();
        sizes.push(std::fs::metadata(upstream.path(conf)).unwrap().len());
        depths.push(multus_depth(&upstream.json(conf).unwrap()));
    }
    eprintln!(
        "upstream v4.0.2 00-multus.conf after starts 1..5: {sizes:?} bytes, Multus nested {depths:?} deep"
    );
    assert!(sizes.windows(2).all(|w| w[1] > w[0]), "{sizes:?}");
    assert_eq!(depths, vec![1, 2, 3, 4, 5]);

    // Ours: restarts are byte-identical (e2e/tests/agent.rs,
    // fifty_restarts_leave_every_byte_identical_and_never_delegate_to_ourselves); here the
    // agent's config embeds the bridge once and ADD gives one eth0 and nothing more.
    let config: Value =
        serde_json::from_slice(&std::fs::read(ours.multus_config()).unwrap()).unwrap();
    assert_eq!(multus_depth(&config), 1, "{config}");
    assert_eq!(config["delegates"][0]["name"], "podnet", "{config}");
    let pod = ours.pod("client", "").await.unwrap();
    let added = ours.multus("ADD", &pod).await.unwrap();
    expect_success(&added, "multus ADD");
    assert_eq!(
        interfaces_in(&pod.netns).unwrap(),
        vec!["lo".to_string(), "eth0".to_string()]
    );
    let status = pod.network_status(&ours.client).await.unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    let deleted = ours.multus("DEL", &pod).await.unwrap();
    expect_success(&deleted, "multus DEL");
    ours.stop().await;
}

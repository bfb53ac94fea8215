//! The Helm chart on a real node (upstream kubelet, containerd, runc): `helm install` with
//! the test images makes the operator and the node pod Ready as real containers, the agent
//! writes the node's files, and real pods get the secondary networks of their annotation
//! through the upstream Multus binaries, in thin and thick mode. Agent restarts, upgrades and
//! kubelet restarts leave running pods alone; `helm uninstall` leaves the primary only.
//!
//! One node serves the whole binary and the tests take it in turn: each changes its CNI
//! files.

#[path = "real_node_chart/pods.rs"]
mod pods;
#[path = "real_node_chart/support.rs"]
mod support;

use serde_json::Value;
use std::time::{Duration, Instant};

use multus_e2e::ControlPlane;
use multus_e2e::node::RealNode;
use pods::{Networks, address_on, create_pod, interfaces, listing, ping, run_pod, wait_running};
use support::{CONVERGE, Env, Release, env, kubectl, start_node, wait_for};

/// The name of the node's primary network (`e2e/src/node/config.rs`).
const PRIMARY: &str = "multus-e2e-bridge";

/// The pod asks for both networks; it has eth0 on the node subnet and net1, net2 on theirs,
/// and its network-status names all three.
fn assert_three_networks(env: &Env, nets: &Networks, pod: &str, status: &[Value]) {
    let found = interfaces(env.cp, &nets.ns, pod);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["eth0", "net1", "net2"], "{pod}: {found:?}");
    let node_prefix = env.node.pod_subnet.trim_end_matches("0/24");
    assert!(
        address_on(&found, "eth0").starts_with(node_prefix),
        "{found:?}"
    );
    assert!(
        address_on(&found, "net1").starts_with(&nets.nets[0].2),
        "{found:?}"
    );
    assert!(
        address_on(&found, "net2").starts_with(&nets.nets[1].2),
        "{found:?}"
    );
    let listed: Vec<&str> = status.iter().filter_map(|s| s["name"].as_str()).collect();
    let (a, b) = (
        format!("{}/{}", nets.ns, nets.nets[0].0),
        format!("{}/{}", nets.ns, nets.nets[1].0),
    );
    assert_eq!(
        listed,
        [PRIMARY, &a, &b],
        "network-status of {pod}: {status:?}"
    );
}

/// Starts pod `name` asking for both networks and checks it has them.
fn pod_with_both(env: &Env, nets: &Networks, name: &str) -> Vec<(String, String)> {
    let networks = format!("{},{}", nets.nets[0].0, nets.nets[1].0);
    let status = run_pod(env.cp, &env.node, &nets.ns, name, &networks);
    assert_three_networks(env, nets, name, &status);
    interfaces(env.cp, &nets.ns, name)
}

/// Both pods reach each other on both secondary networks.
fn assert_reachable(cp: &ControlPlane, nets: &Networks, pods: [(&str, &[(String, String)]); 2]) {
    for (from, to) in [(pods[0], pods[1]), (pods[1], pods[0])] {
        for interface in ["net1", "net2"] {
            ping(cp, &nets.ns, from.0, &address_on(to.1, interface));
        }
    }
}

/// The node files of a release in `mode`, and the mode's Multus binary.
fn assert_node_files(node: &RealNode, mode: &str) {
    for path in [
        "/etc/cni/net.d/00-multus.conf",
        "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "/var/lib/multus-node-agent/owned-files.json",
    ] {
        let file = node.host_path(path).unwrap();
        assert!(file.is_file(), "{} is missing", file.display());
    }
    let conf: Value = serde_json::from_str(
        &std::fs::read_to_string(node.host_path("/etc/cni/net.d/00-multus.conf").unwrap()).unwrap(),
    )
    .unwrap();
    let (binary, kind) = match mode {
        "thick" => ("multus-shim", "multus-shim"),
        _ => ("multus", "multus"),
    };
    assert_eq!(conf["type"], kind, "00-multus.conf: {conf}");
    let bin = node.host_path(&format!("/opt/cni/bin/{binary}")).unwrap();
    assert!(bin.is_file(), "{} is missing", bin.display());
    if mode == "thick" {
        // The shim's socket, served by multus-daemon, where the config says.
        let dir = conf["daemonSocketDir"].as_str().unwrap();
        let socket = node.host_path(&format!("{dir}/multus.sock"));
        // /run/multus is the machine's own (every node of this machine shares it).
        let socket = socket.unwrap_or_else(|_| format!("{dir}/multus.sock").into());
        // The daemon container has no readiness probe: it is Ready before it listens.
        wait_for("multus-daemon's socket", CONVERGE, || {
            socket
                .exists()
                .then_some(())
                .ok_or_else(|| format!("{} is missing", socket.display()))
        });
    }
}

/// `kubectl get mcfg` prints the release's MultusConfig with 1/1 nodes.
fn assert_one_of_one(release: &Release) {
    let table = kubectl(release.cp, &["get", "mcfg", &release.name]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().any(|w| w == "1/1")),
        "kubectl get mcfg:\n{table}"
    );
}

/// Every container of the release's pods is ready: the operator, the agent and, in thick
/// mode, multus-daemon.
fn assert_containers_ready(release: &Release, expected: &[&str]) {
    let shown = kubectl(
        release.cp,
        &[
            "get",
            "pods",
            "-n",
            &release.ns,
            "-o",
            "jsonpath={range .items[*].status.containerStatuses[*]}{.name}={.ready} {end}",
        ],
    );
    let mut found: Vec<&str> = shown.split_whitespace().collect();
    found.sort();
    let mut expected: Vec<String> = expected.iter().map(|c| format!("{c}=true")).collect();
    expected.sort();
    assert_eq!(found, expected, "containers of {}", release.ns);
}

/// A release in `mode` on the shared node: everything Ready, the node's files written, and
/// two pods with both secondary networks that reach each other on both.
fn install_and_attach(mode: &'static str, containers: &[&str], sets: &[&str]) {
    let mut guard = env();
    let env = guard.as_mut().unwrap();
    let (release, took) = Release::install(env.cp, &env.node, mode, sets);
    env.cold_install.get_or_insert(took);
    assert_containers_ready(&release, containers);
    assert_node_files(&env.node, mode);
    assert_one_of_one(&release);

    let nets = Networks::create(&release, &env.node);
    let a = pod_with_both(env, &nets, "a");
    let b = pod_with_both(env, &nets, "b");
    assert_reachable(env.cp, &nets, [("a", &a), ("b", &b)]);
    eprintln!("{mode}: helm install to Ready {:.1}s", took.as_secs_f64());
}

#[multus_e2e::test]
fn helm_install_thin_makes_everything_ready_and_pods_get_two_networks_that_reach_each_other() {
    install_and_attach("thin", &["operator", "agent"], &[]);
}

#[multus_e2e::test]
fn helm_install_thick_runs_multus_daemon_and_pods_get_two_networks_that_reach_each_other() {
    install_and_attach("thick", &["operator", "agent", "multus-daemon"], &[]);
}

#[multus_e2e::test]
fn a_thick_socket_dir_outside_run_is_mounted_through_its_parent_and_works() {
    // Under the node's own /etc/cni, so nothing lands on the machine's directories.
    install_and_attach(
        "thick",
        &["operator", "agent", "multus-daemon"],
        &["thick.socketDir=/etc/cni/multus-socket"],
    );
}

/// Pods that ran before a disruption still have their interfaces and addresses, were not
/// restarted, and still reach each other.
fn assert_untouched(env: &Env, nets: &Networks, pods: &[(&str, &[(String, String)])]) {
    for (pod, before) in pods {
        assert_eq!(&interfaces(env.cp, &nets.ns, pod), before, "{pod} changed");
        let restarts = kubectl(
            env.cp,
            &[
                "get",
                "pod",
                "-n",
                &nets.ns,
                pod,
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        );
        assert_eq!(restarts, "0", "{pod} restarted");
    }
    assert_reachable(env.cp, nets, [pods[0], pods[1]]);
}

#[multus_e2e::test]
fn agent_deletion_upgrade_and_kubelet_restart_leave_pods_alone_and_uninstall_leaves_the_primary() {
    let mut guard = env();
    let env = guard.as_mut().unwrap();
    let (mut release, took) = Release::install(env.cp, &env.node, "thin", &[]);
    env.cold_install.get_or_insert(took);
    let nets = Networks::create(&release, &env.node);
    let both = format!("{},{}", nets.nets[0].0, nets.nets[1].0);
    let a = pod_with_both(env, &nets, "a");
    let b = pod_with_both(env, &nets, "b");
    let running = [("a", &a[..]), ("b", &b[..])];

    // 1. The agent pod is deleted; a pod created meanwhile gets its networks from the files
    // already on the node, and the DaemonSet's new agent takes over without changing them.
    let conf = env.node.host_path("/etc/cni/net.d/00-multus.conf").unwrap();
    let written = std::fs::read(&conf).unwrap();
    let agent = release.node_pod();
    kubectl(
        env.cp,
        &["delete", "pod", "-n", &release.ns, &agent, "--wait=false"],
    );
    create_pod(env.cp, &env.node, &nets.ns, "during-agent-restart", &both);
    let status = wait_running(env.cp, &nets.ns, "during-agent-restart");
    assert_three_networks(env, &nets, "during-agent-restart", &status);
    wait_for("a new agent pod", CONVERGE, || {
        let now = release.node_pod();
        if !now.is_empty() && now != agent {
            Ok(())
        } else {
            Err(now)
        }
    });
    release.wait_rolled_out();
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        written,
        "00-multus.conf changed"
    );
    assert_untouched(env, &nets, &running);

    // 2. helm upgrade with a changed value (a new node pod template): the pre-upgrade CRD
    // Job runs, the DaemonSet rolls; a pod created during the upgrade starts.
    let upgrade = std::thread::scope(|scope| {
        let upgrading = scope.spawn(|| {
            let began = Instant::now();
            release.helm(&[
                "upgrade",
                &release.name,
                multus_e2e::chart::CHART,
                "--namespace",
                &release.ns,
                "--reuse-values",
                "--set",
                "agent.logLevel=debug",
                "--wait",
                "--timeout",
                support::HELM_TIMEOUT,
            ]);
            began.elapsed()
        });
        create_pod(env.cp, &env.node, &nets.ns, "during-upgrade", &both);
        let status = wait_running(env.cp, &nets.ns, "during-upgrade");
        assert_three_networks(env, &nets, "during-upgrade", &status);
        upgrading.join().expect("helm upgrade")
    });
    release.wait_rolled_out();
    release.wait_ready();
    let logged = kubectl(
        env.cp,
        &[
            "get",
            "ds",
            "-n",
            &release.ns,
            "-o",
            "jsonpath={.items[0].spec.template.spec.containers[0].env[?(@.name==\"RUST_LOG\")].value}",
        ],
    );
    assert_eq!(logged, "debug", "the upgrade did not reach the DaemonSet");
    // The pre-upgrade Job applied the chart's MultusConfig CRD (and was deleted on success).
    let managers = kubectl(
        env.cp,
        &[
            "get",
            "crd",
            "multusconfigs.operator.multus.dev",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
    );
    assert!(
        managers
            .split_whitespace()
            .any(|m| m == "multus-operator-crds"),
        "the CRD Job did not apply the CRD; field managers: {managers}"
    );
    let revision = release.helm(&["history", &release.name, "-n", &release.ns, "-o", "json"]);
    assert!(revision.contains("\"status\":\"deployed\""), "{revision}");
    assert_untouched(env, &nets, &running);

    // 3. The kubelet restarts: running pods stay, new ones start.
    let began = Instant::now();
    env.node.restart_kubelet().expect("kubelet restart");
    let restart = began.elapsed();
    let status = run_pod(env.cp, &env.node, &nets.ns, "after-kubelet-restart", &both);
    assert_three_networks(env, &nets, "after-kubelet-restart", &status);
    assert_untouched(env, &nets, &running);

    // 4. helm uninstall: only the primary config is left in the CNI conf dir, and a pod
    // created afterwards gets the primary network only, whatever its annotation asks.
    release.uninstall();
    let left: Vec<String> = listing(&env.node, "/etc/cni/net.d")
        .into_iter()
        .filter(|name| {
            !env.node
                .host_path(&format!("/etc/cni/net.d/{name}"))
                .unwrap()
                .is_dir()
        })
        .collect();
    assert_eq!(left, ["10-bridge.conflist"], "files left in /etc/cni/net.d");
    let subdirs = listing(&env.node, "/etc/cni/net.d/multus.d");
    assert!(subdirs.is_empty(), "left in multus.d: {subdirs:?}");
    let status = run_pod(env.cp, &env.node, &nets.ns, "after-uninstall", &both);
    assert!(
        status.is_empty(),
        "network-status without Multus: {status:?}"
    );
    let found = interfaces(env.cp, &nets.ns, "after-uninstall");
    assert_eq!(
        found.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["eth0"],
        "{found:?}"
    );
    eprintln!(
        "disruptions: upgrade {:.1}s, kubelet restart {:.1}s",
        upgrade.as_secs_f64(),
        restart.as_secs_f64()
    );
}

#[multus_e2e::test]
fn cold_and_warm_start_of_the_node_and_the_chart_are_printed() {
    let mut guard = env();
    let env = guard.as_mut().unwrap();
    // The first node of this process (images imported) and its first install, unless an
    // earlier test of this binary did that already.
    let cold_node = env.node.startup;
    let cold_install = *env.cold_install.get_or_insert_with(|| {
        let (mut release, took) = Release::install(env.cp, &env.node, "thin", &[]);
        release.uninstall();
        took
    });
    // Warm: a new node with the same archives, the binaries and images in the page cache.
    let began = Instant::now();
    env.node.stop();
    env.node = start_node(env.cp, &env.images);
    let warm_node = began.elapsed();
    let (mut release, warm_install) = Release::install(env.cp, &env.node, "thin", &[]);
    assert_node_files(&env.node, "thin");
    release.uninstall();
    let secs = Duration::as_secs_f64;
    eprintln!(
        "start times: images {:.1}s; cold: node {:.1}s, helm install to Ready {:.1}s; \
         warm: node {:.1}s (stop and start), helm install to Ready {:.1}s",
        secs(&env.image_build),
        secs(&cold_node),
        secs(&cold_install),
        secs(&warm_node),
        secs(&warm_install)
    );
}

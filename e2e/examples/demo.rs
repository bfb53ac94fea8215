//! The whole product on one machine: a local control plane, the operator, and a node agent
//! for one simulated node whose host root is a temp directory. Applies the manifests in
//! `examples/demo/`, waits for the MultusConfig to be Ready, and shows what the node got.
//!
//! `cargo run -p multus-e2e --example demo` (add `-- --exit` to stop once it has shown
//! everything; otherwise Enter stops it and everything it started).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use multus_e2e::agent::{RunningAgent, snapshot};
use multus_e2e::binaries_local::workspace_bin;
use multus_e2e::identities::Identities;
use multus_e2e::scenario::CALICO;
use multus_e2e::{ControlPlane, E2eError, fixtures};

const NAMESPACE: &str = "multus-system";
const NODE: &str = "demo-node";
const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo");

fn main() {
    let exit_at_once = std::env::args().any(|a| a == "--exit");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start a runtime: {e}")),
    };
    println!("starting a local control plane (etcd, kube-apiserver, kube-controller-manager)...");
    let cp = match ControlPlane::start() {
        Ok(cp) => cp,
        Err(e) => fail(&e.to_string()),
    };
    let work = match tempfile::Builder::new().prefix("multus-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => fail(&format!("cannot create a work directory: {e}")),
    };
    let shown = runtime.block_on(demo(&cp, work.path()));
    let running = match shown {
        Ok(running) => running,
        Err(e) => fail(&e),
    };
    if !exit_at_once {
        println!("\nEverything keeps running. Try:");
        println!("  export KUBECONFIG={}", cp.kubeconfig.display());
        println!("  kubectl get mcfg default -o yaml");
        println!(
            "  rm {}/host/etc/cni/net.d/00-multus.conf   # the agent restores it",
            work.path().display()
        );
        println!("Press Enter to stop.");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    drop(running);
    drop(cp);
}

fn fail(message: &str) -> ! {
    eprintln!("demo failed: {message}");
    std::process::exit(1);
}

/// What must keep running until the demo ends (dropping it stops the processes).
struct Running {
    _operator: tokio::process::Child,
    _agent: RunningAgent,
    _identities: Identities,
}

async fn demo(cp: &ControlPlane, work: &Path) -> Result<Running, String> {
    let text = |e: E2eError| e.to_string();
    let client = cp.client().await.map_err(text)?;
    fixtures::namespace(&client, NAMESPACE)
        .await
        .map_err(text)?;
    fixtures::node(&client, NODE, &[("net.example.com/uplink", "eth1")], &[])
        .await
        .map_err(text)?;
    // The chart's ServiceAccounts, RBAC and admission policies: the operator and the agent
    // run with the identities a Helm install gives them, never as admin.
    let identities = Identities::apply(cp, NAMESPACE, "thin")
        .await
        .map_err(text)?;
    println!(
        "the chart's identities and admission policies applied (release {})",
        identities.release
    );
    println!(
        "node {NODE}: a Node object plus a host root at {}/host",
        work.display()
    );
    let host = work.join("host");
    let net_d = host.join("etc/cni/net.d");
    std::fs::create_dir_all(&net_d).map_err(|e| e.to_string())?;
    // The primary CNI (Calico here) installed its config before us, as on a real node.
    std::fs::write(net_d.join("10-calico.conflist"), CALICO).map_err(|e| e.to_string())?;

    let operator_kubeconfig = identities.operator_kubeconfig(cp).await.map_err(text)?;
    let operator = start_operator(&operator_kubeconfig, work).await?;
    let agent_kubeconfig = identities.agent_kubeconfig(cp, NODE).await.map_err(text)?;
    let agent = RunningAgent::start_as(&agent_kubeconfig, NAMESPACE, NODE, &host)
        .await
        .map_err(text)?;
    println!(
        "operator and node agent running (logs in {})",
        work.display()
    );

    for file in ["networks.yaml", "multusconfig.yaml"] {
        let path = Path::new(MANIFESTS).join(file);
        let shown = kubectl(cp, &["apply", "-f", &path.display().to_string()])?;
        print!("{shown}");
    }
    println!("waiting for the MultusConfig to be Ready...");
    let started = Instant::now();
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Ready",
            "mcfg/default",
            "--timeout=90s",
        ],
    )?;
    println!("ready after {:.1} s\n", started.elapsed().as_secs_f64());
    print!("{}", kubectl(cp, &["get", "mcfg"])?);

    println!("\nfiles on {NODE}:");
    for relative in snapshot(&host).into_keys().filter(|p| p != "agent.log") {
        let mode = std::fs::metadata(host.join(&relative))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or_default();
        println!("  /{relative}  ({mode:o})");
    }
    let multus =
        std::fs::read_to_string(net_d.join("00-multus.conf")).map_err(|e| e.to_string())?;
    println!("\n/etc/cni/net.d/00-multus.conf:\n{multus}");
    let report = kubectl(
        cp,
        &[
            "get",
            "configmap",
            "-n",
            NAMESPACE,
            &format!("multus-node-{NODE}"),
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    )?;
    println!("\nthe agent's report on its ConfigMap:\n{report}");
    Ok(Running {
        _operator: operator,
        _agent: agent,
        _identities: identities,
    })
}

/// Starts the operator process authenticating with `kubeconfig`.
async fn start_operator(kubeconfig: &Path, work: &Path) -> Result<tokio::process::Child, String> {
    let binary = tokio::task::spawn_blocking(|| workspace_bin("multus-operator"))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(work.join("operator.log")).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    tokio::process::Command::new(binary)
        .args(["run", "--namespace", NAMESPACE])
        .args(["--multus-service-account", "multus-system/multus"])
        .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the operator: {e}"))
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<String, String> {
    let out = cp.kubectl(args).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

//! The operator as a real process (`multus-operator run`): health and metrics endpoints,
//! the leader Lease, and a clean stop on SIGTERM. Plus Lease takeover between replicas.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;

use multus_e2e::binaries_local::workspace_bin;
use multus_e2e::operator::{TEST_LABEL, eventually};
use multus_e2e::{ControlPlane, fixtures, http, unique_name};
use multus_operator::lease::LeaseLock;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_serves_health_and_metrics_holds_its_lease_and_stops_on_sigterm() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = unique_name("process");
    fixtures::namespace(&client, &ns).await.unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let binary = tokio::task::spawn_blocking(|| workspace_bin("multus-operator"))
        .await
        .unwrap()
        .unwrap();
    // Logs go to a file, not a pipe: a pipe nobody reads fills up and blocks the process.
    let logs = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "run",
            "--namespace",
            &ns,
            "--metrics-bind-address",
            &addr,
            "--leader-elect",
            "--lease-name",
            "multus-operator",
            "--identity",
            "replica-a",
            "--multusconfig-selector",
            &format!("{TEST_LABEL}={ns}"),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &cp.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::from(logs.reopen().unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    eventually("/readyz answers 200", WAIT, || async {
        match http::get(&addr, "/readyz").await {
            Ok((200, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(http::get(&addr, "/healthz").await.unwrap().0, 200);
    let (code, metrics) = http::get(&addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("multus_operator_reconciles_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("multus_operator_reconcile_duration_seconds"),
        "{metrics}"
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = leases
        .get("multus-operator")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-a"));

    let pid = child.id().map(|p| p as i32).expect("running");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let stderr = std::fs::read_to_string(logs.path()).unwrap();
    let status = match waited {
        Ok(status) => status.unwrap(),
        Err(_) => panic!("still running 20 s after SIGTERM; logs:\n{stderr}"),
    };
    assert!(status.success(), "exit {status}; logs:\n{stderr}");
    // Structured JSON logs, one object per line, with the shutdown recorded.
    assert!(
        stderr
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('{')),
        "{stderr}"
    );
    assert!(stderr.contains("signal received"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_the_lease_only_after_the_leader_stops_renewing() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = unique_name("lease");
    fixtures::namespace(&client, &ns).await.unwrap();
    let duration = Duration::from_secs(3);
    let a = LeaseLock::new(client.clone(), &ns, "leader", "a", duration);
    let b = LeaseLock::new(client.clone(), &ns, "leader", "b", duration);
    a.acquire().await;
    let holding = tokio::spawn(async move { a.hold().await });

    // While a renews, b waits: two full lease durations pass without b getting it.
    let waited = tokio::time::timeout(duration * 2, b.acquire()).await;
    assert!(
        waited.is_err(),
        "standby took a lease that was being renewed"
    );

    holding.abort();
    tokio::time::timeout(duration * 4, b.acquire())
        .await
        .expect("standby takes over after the lease expires");
    let lease = Api::<Lease>::namespaced(client, &ns)
        .get("leader")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

//! The operator as a real process (`multus-operator run`): health and metrics endpoints,
//! the leader Lease, and a clean stop on SIGTERM. Plus Lease takeover between replicas.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;

use multus_e2e::http;
use multus_e2e::operator::eventually;
use multus_e2e::replica::Replica;
use multus_e2e::test_env::TestEnv;
use multus_operator::lease::LeaseLock;

const WAIT: Duration = Duration::from_secs(60);
const LEASE_NAME: &[&str] = &["--lease-name", "multus-operator"];

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("multus-operator")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
}

#[multus_e2e::test]
async fn the_operator_process_serves_health_and_metrics_holds_its_lease_and_stops_on_sigterm() {
    let env = TestEnv::new("process").await.unwrap();
    let kubeconfig = env.identities.operator_kubeconfig(env.cp).await.unwrap();
    let a = Replica::start(&kubeconfig, &env.ns, "replica-a", LEASE_NAME)
        .await
        .unwrap();
    let mut child = a.child;
    let (addr, logs) = (a.addr, a.logs);
    // Ready as the leader with synced caches.
    eventually("/readyz answers 200 ready", WAIT, || async {
        match http::get(&addr, "/readyz").await {
            Ok((200, body)) if body == "ready" => Ok(body),
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

    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-a"));

    // A second replica waits as a healthy standby: ready, so that a rolling update of a
    // two-replica Deployment can proceed, but not leading.
    let b = Replica::start(&kubeconfig, &env.ns, "replica-b", LEASE_NAME)
        .await
        .unwrap();
    b.wait_readyz(200, "standby", WAIT).await;
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-a"));

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
    assert!(stderr.contains("released leadership"), "{stderr}");

    // The lease was released on the way out: right after the exit it is free or already the
    // standby's, where an unreleased lease would name replica-a for another 15 s.
    let holder = lease_holder(&leases).await;
    assert!(
        matches!(holder.as_deref(), None | Some("" | "replica-b")),
        "{holder:?}"
    );
    b.wait_readyz(200, "ready", WAIT).await;
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-b"));
}

#[multus_e2e::test]
async fn a_standby_replica_takes_the_lease_only_after_the_leader_stops_renewing() {
    // The Lease as the chart's operator account may hold it.
    let env = TestEnv::new("lease").await.unwrap();
    let operator = env.identities.operator_client(env.cp).await.unwrap();
    let duration = Duration::from_secs(3);
    let a = LeaseLock::new(operator.clone(), &env.ns, "leader", "a", duration);
    let b = LeaseLock::new(operator, &env.ns, "leader", "b", duration);
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
    let lease = Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .get("leader")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

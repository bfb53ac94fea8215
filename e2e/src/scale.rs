//! What the operator scale benchmark (`e2e/benches/operator_scale.rs`) runs on: sizes from
//! the environment, objects created with bounded parallelism, the bundle ConfigMaps followed
//! by their metadata, and the operator as a release process with its counters. The
//! scenario's objects are in [`shapes`], the operator's writes counted from the audit log in
//! [`audit`].

pub mod audit;
pub mod shapes;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binaries_local::workspace_release_bin;
use crate::process::status_kib;
use crate::{E2eError, http};

/// A size from the environment variable `name`, or `default` when unset or not a number.
pub fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `make(i)` for every `i` in `0..count`, at most `parallel` at a time; stops at the
/// first error.
pub async fn bounded<F, Fut>(count: usize, parallel: usize, make: F) -> Result<(), E2eError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E2eError>>,
{
    stream::iter((0..count).map(make))
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Waits until `check` returns `Some`, polling every `every`, for at most `timeout`.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, E2eError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(E2eError::Io(format!(
                "timed out waiting for {what} ({timeout:?})"
            )));
        }
        tokio::time::sleep(every).await;
    }
}

/// The resourceVersion of every ConfigMap in a namespace matching a label selector, kept
/// current by a metadata-only watch (the bundles' data never crosses the wire).
pub struct ConfigMapVersions {
    rx: tokio::sync::watch::Receiver<BTreeMap<String, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConfigMapVersions {
    /// Starts the watch.
    pub fn watch(client: Client, namespace: &str, labels: &str) -> ConfigMapVersions {
        let api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, namespace);
        let (tx, rx) = tokio::sync::watch::channel(BTreeMap::new());
        let events = watcher(api, watcher::Config::default().labels(labels)).default_backoff();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                        tx.send_modify(|map| {
                            map.insert(m.name_any(), m.resource_version().unwrap_or_default());
                        });
                    }
                    Ok(watcher::Event::Delete(m)) => {
                        tx.send_modify(|map| {
                            map.remove(&m.name_any());
                        });
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                    Err(e) => eprintln!("ConfigMap watch failed, retrying: {e}"),
                }
            }
        });
        ConfigMapVersions { rx, task }
    }

    /// The versions seen so far.
    pub fn now(&self) -> BTreeMap<String, String> {
        self.rx.borrow().clone()
    }

    /// Waits (at most `timeout`) until `done` holds for the versions.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&BTreeMap<String, String>) -> bool,
    ) -> Result<(), E2eError> {
        let mut rx = self.rx.clone();
        match tokio::time::timeout(timeout, rx.wait_for(done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(E2eError::Kube(format!("{what}: the watch stopped"))),
            Err(_) => Err(E2eError::Io(format!(
                "timed out waiting for {what} ({timeout:?})"
            ))),
        }
    }
}

impl Drop for ConfigMapVersions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many ConfigMaps in `now` are absent from `before` or have another version.
pub fn changed(before: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> usize {
    now.iter()
        .filter(|(name, version)| before.get(*name) != Some(*version))
        .count()
}

/// The operator's release binary running as a process with a given kubeconfig, its admin
/// endpoints on a free loopback port. Killed on drop.
pub struct OperatorProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: String,
    pub started: Instant,
}

/// What the operator's metrics say about its reconciles and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub started: f64,
    pub succeeded: f64,
    pub failed: f64,
    pub writes: f64,
    /// Seconds spent in reconciles, summed.
    pub busy: f64,
}

impl Progress {
    /// No reconcile running (every one started has finished, well or not).
    pub fn idle(&self) -> bool {
        self.started == self.succeeded + self.failed
    }
}

impl OperatorProcess {
    /// Starts `multus-operator run` for `namespace`.
    pub fn start(kubeconfig: &Path, namespace: &str) -> Result<OperatorProcess, E2eError> {
        let binary = workspace_release_bin("multus-operator")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| E2eError::Io(format!("free port: {e}")))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let child = tokio::process::Command::new(binary)
            .args(["run", "--namespace", namespace, "--metrics-bind-address"])
            .arg(&addr)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| E2eError::Io(format!("start the operator: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| E2eError::Io("the operator exited at once".into()))?;
        Ok(OperatorProcess {
            child,
            pid,
            addr,
            started,
        })
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        matches!(http::get(&self.addr, "/readyz").await, Ok((200, _)))
    }

    /// Its reconcile and write counters; `None` while `/metrics` does not answer.
    pub async fn progress(&self) -> Option<Progress> {
        let (code, text) = http::get(&self.addr, "/metrics").await.ok()?;
        (code == 200).then(|| {
            let m = |name| http::metric(&text, name).unwrap_or(0.0);
            Progress {
                started: m("multus_operator_reconciles_total"),
                succeeded: m("multus_operator_reconciles_succeeded_total"),
                failed: m("multus_operator_reconcile_failures_total"),
                writes: m("multus_operator_api_writes_total"),
                busy: m("multus_operator_reconcile_duration_seconds_sum"),
            }
        })
    }

    /// Waits until no reconcile has started for `quiet` and none is running; returns the
    /// counters then and when the last reconcile finished (as seen by polling).
    pub async fn settle(
        &self,
        quiet: Duration,
        timeout: Duration,
    ) -> Result<(Progress, Instant), E2eError> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(Progress, Instant)> = None;
        loop {
            if let Some(now) = self.progress().await {
                let changed_at = match last {
                    Some((p, at)) if p == now => at,
                    _ => Instant::now(),
                };
                last = Some((now, changed_at));
                if now.idle() && changed_at.elapsed() >= quiet {
                    return Ok((now, changed_at));
                }
            }
            if Instant::now() >= deadline {
                return Err(E2eError::Io(format!(
                    "timed out waiting for the operator to settle ({timeout:?})"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM:") as f64 / 1024.0
    }

    /// Resident memory now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmRSS:") as f64 / 1024.0
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// How often the benchmark polls the operator's endpoints.
pub const POLL: Duration = Duration::from_millis(100);

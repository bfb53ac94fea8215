//! What the operator scale benchmark (`e2e/benches/operator_scale.rs`) runs on: sizes from
//! the environment, objects created with bounded parallelism, and the bundle ConfigMaps
//! followed by their metadata. The scenario's objects are in [`shapes`]; the operator runs
//! as [`crate::operator_process::OperatorProcess`], its writes counted by [`crate::audit`].

pub mod shapes;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::E2eError;

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

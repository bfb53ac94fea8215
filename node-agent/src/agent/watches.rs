//! What wakes the agent loop from outside: the watch of this node's bundle ConfigMap (a
//! task), and inotify on the directories the last pass cared about, including directories
//! that do not exist yet (watched through their nearest existing ancestor).

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use notify::Watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use multus_crds::bundle::{REMOVE_ANNOTATION, node_configmap_name};

use crate::wake::Interest;

/// What woke the loop.
#[derive(Debug)]
pub(super) enum Wake {
    Bundle(Option<Arc<ConfigMap>>),
    Disk,
}

/// Whether the operator asks this node to remove its files.
pub(super) fn marked_for_removal(cm: &ConfigMap) -> bool {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REMOVE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The bundle ConfigMap as last seen, and whether a new sighting changes what a pass does.
#[derive(Default)]
pub(super) struct SeenBundle {
    /// Whether the watch has reported at all (present or absent).
    pub known: bool,
    pub cm: Option<Arc<ConfigMap>>,
}

impl SeenBundle {
    /// Records `cm`; true when a pass should follow: the first sighting, or a change in
    /// what a pass reads (data and the removal mark). The agent's own feedback annotations
    /// are left out, so that its report does not wake it.
    pub fn update(&mut self, cm: Option<Arc<ConfigMap>>) -> bool {
        fn key(cm: Option<&ConfigMap>) -> Option<(BTreeMap<String, String>, bool)> {
            cm.map(|cm| (cm.data.clone().unwrap_or_default(), marked_for_removal(cm)))
        }
        let changed = !self.known || key(cm.as_deref()) != key(self.cm.as_deref());
        self.cm = cm;
        self.known = true;
        changed
    }
}

/// Watches `node`'s bundle ConfigMap in `namespace` and sends what it sees to `tx` until
/// the receiver goes; watch errors are logged and retried with back-off.
pub(super) fn spawn_bundle_watch(
    client: Client,
    namespace: &str,
    node: &str,
    tx: mpsc::Sender<Wake>,
) -> JoinHandle<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", node_configmap_name(node)));
    tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let wake = match event {
                Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                    Wake::Bundle(Some(Arc::new(cm)))
                }
                Ok(watcher::Event::Delete(_)) => Wake::Bundle(None),
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "watch of the bundle ConfigMap failed; retrying");
                    continue;
                }
            };
            if tx.send(wake).await.is_err() {
                return;
            }
        }
    })
}

/// inotify on the directories the agent writes into and reads. Only events that can change
/// what a pass would do wake it (see [`Interest::wakes`]).
pub(super) struct DiskWatch {
    watcher: Option<notify::RecommendedWatcher>,
    interest: Arc<Mutex<Interest>>,
    tx: mpsc::Sender<Wake>,
    watched: BTreeSet<PathBuf>,
    /// Directories of interest that did not exist at the last pass.
    missing: BTreeSet<PathBuf>,
}

impl DiskWatch {
    /// A watcher that sends [`Wake::Disk`] to `tx`; without inotify (no watcher could be
    /// made) the agent still runs on its periodic passes.
    pub fn new(tx: mpsc::Sender<Wake>) -> DiskWatch {
        let interest = Arc::new(Mutex::new(Interest::default()));
        let (event_tx, event_interest) = (tx.clone(), interest.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let rescan = event.need_rescan();
            let wakes = event_interest
                .lock()
                .map(|i| i.wakes(&event.kind, &event.paths, rescan))
                .unwrap_or(true);
            if wakes {
                let _ = event_tx.try_send(Wake::Disk);
            }
        })
        .ok();
        DiskWatch {
            watcher,
            interest,
            tx,
            watched: BTreeSet::new(),
            missing: BTreeSet::new(),
        }
    }

    /// Watches what the last pass cared about from now on. A directory that appeared since
    /// the last pass may have received files before its watch: one more pass looks.
    pub fn follow(&mut self, cares: Interest) {
        if let Some(w) = self.watcher.as_mut() {
            let mut appeared = false;
            for dir in cares.watch_dirs() {
                let Some(point) = Interest::watch_point(&dir, Path::exists) else {
                    continue;
                };
                if !self.watched.contains(&point)
                    && w.watch(&point, notify::RecursiveMode::NonRecursive).is_ok()
                {
                    self.watched.insert(point.clone());
                }
                if point == dir {
                    appeared |= self.missing.remove(&dir);
                } else {
                    self.missing.insert(dir);
                }
            }
            if appeared {
                let _ = self.tx.try_send(Wake::Disk);
            }
        }
        if let Ok(mut i) = self.interest.lock() {
            *i = cares;
        }
    }
}

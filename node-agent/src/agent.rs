//! The agent loop: watch this node's bundle ConfigMap, the CNI directories (inotify) and the
//! token clock; on any of them, plan and apply, then report on the ConfigMap.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use notify::Watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use multus_crds::bundle::{
    AgentState, BundleManifest, KubeconfigSettings, NodeBundle, REMOVE_ANNOTATION,
    node_configmap_name,
};

use crate::apply::HostFiles;
use crate::bounds::AllowedDirs;
use crate::fsops;
use crate::hostpath::HostRoot;
use crate::metrics::Metrics;
use crate::plan::{self, NodeView, Upstream};
use crate::probe;
use crate::report::{Reporter, now_secs};
use crate::rotation::{Rotation, TokenSource};
use crate::state::OwnedFiles;
use crate::token;
use crate::wake::{Interest, Trigger};

pub use crate::report::FIELD_MANAGER;
/// How often the agent re-checks the disk even without events.
const RESYNC: Duration = Duration::from_secs(60);

/// Agent settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: String,
    /// Namespace of the bundle ConfigMaps.
    pub namespace: String,
    pub host_root: PathBuf,
    /// Host path of the owned-files record.
    pub state_path: String,
    /// Kubeconfig for the agent's own client; in-cluster config when absent.
    pub kubeconfig: Option<PathBuf>,
    /// The directories a bundle may make this agent write (the trust boundary).
    pub allowed: AllowedDirs,
    /// Whether files left by upstream's Multus DaemonSet are taken over.
    pub upstream: Upstream,
    /// Host directory of the backups of taken-over files (outside every allowed directory).
    pub backup_dir: String,
}

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Path(#[from] crate::hostpath::PathError),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// What woke the loop.
#[derive(Debug)]
enum Wake {
    Bundle(Option<Arc<ConfigMap>>),
    Disk,
}

/// What of a bundle ConfigMap a pass depends on: its data and the removal mark. The
/// agent's own feedback annotations are left out, so that its report does not wake it.
fn bundle_key(cm: Option<&ConfigMap>) -> Option<(BTreeMap<String, String>, bool)> {
    cm.map(|cm| (cm.data.clone().unwrap_or_default(), marked_for_removal(cm)))
}

/// Whether the operator asks this node to remove its files.
fn marked_for_removal(cm: &ConfigMap) -> bool {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REMOVE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

struct Agent {
    settings: Settings,
    root: HostRoot,
    client: Client,
    kube_config: Config,
    state_file: PathBuf,
    owned: OwnedFiles,
    rotation: Rotation,
    /// The kubeconfig settings of the last pass that got as far as the token; the loop
    /// wakes for token work only then (a refused bundle waits for a change instead).
    token_settings: Option<KubeconfigSettings>,
    /// Directories already swept for stale temp files in this run.
    swept: Vec<PathBuf>,
    reporter: Reporter,
    /// sha256 per host path of what this run last wrote (see [`HostFiles`]).
    last_written: BTreeMap<String, String>,
    /// Consecutive passes that failed on the disk; each is retried after a back-off.
    disk_failures: u32,
    /// The backup directory, resolved, when taking over upstream's files.
    backup_dir: Option<PathBuf>,
    metrics: Metrics,
}

/// Runs the agent until `shutdown` completes. Files are left in place on shutdown.
pub async fn run(
    settings: Settings,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let kube_config = token::load_config(settings.kubeconfig.as_deref())
        .await
        .map_err(AgentError::Client)?;
    let client = Client::try_from(kube_config.clone()).map_err(AgentError::Client)?;
    let root = HostRoot::new(&settings.host_root);
    let state_file = root.resolve(&settings.state_path)?;
    let owned = OwnedFiles::load(&state_file)?;
    let backup_dir = match settings.upstream {
        Upstream::TakeOver => Some(root.resolve(&settings.backup_dir)?),
        Upstream::Refuse => None,
    };
    let mut agent = Agent {
        root,
        client: client.clone(),
        kube_config,
        state_file,
        owned,
        rotation: Rotation::default(),
        token_settings: None,
        swept: Vec::new(),
        reporter: Reporter::new(client.clone(), &settings.namespace),
        last_written: BTreeMap::new(),
        disk_failures: 0,
        backup_dir,
        metrics,
        settings,
    };

    let (tx, mut rx) = mpsc::channel::<Wake>(64);
    let cm_name = node_configmap_name(&agent.settings.node);
    let api: Api<ConfigMap> = Api::namespaced(client, &agent.settings.namespace);
    let cm_tx = tx.clone();
    let watch = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={cm_name}"));
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
            if cm_tx.send(wake).await.is_err() {
                return;
            }
        }
    });

    // inotify on the directories the agent writes into and reads. Only events that can
    // change what a pass would do wake it (see `wake`); a burst is coalesced below.
    let interest = Arc::new(Mutex::new(Interest::default()));
    let disk_tx = tx.clone();
    let disk_interest = interest.clone();
    let mut fs_watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let rescan = event.need_rescan();
            let wakes = disk_interest
                .lock()
                .map(|i| i.wakes(&event.kind, &event.paths, rescan))
                .unwrap_or(true);
            if wakes {
                let _ = disk_tx.try_send(Wake::Disk);
            }
        })
        .ok();
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    // Directories of interest that did not exist at the last pass.
    let mut missing: BTreeSet<PathBuf> = BTreeSet::new();

    let mut bundle_cm: Option<Arc<ConfigMap>> = None;
    let mut have_bundle = false;
    tokio::pin!(shutdown);
    loop {
        let next_token = agent.seconds_until_token_work();
        let (mut wait, mut timer) = match next_token {
            Some(s) if s < RESYNC.as_secs() => (Duration::from_secs(s.max(1)), Trigger::Token),
            _ => (RESYNC, Trigger::Resync),
        };
        if let Some(retry) = disk_retry(agent.disk_failures)
            && retry < wait
        {
            (wait, timer) = (retry, Trigger::Retry);
        }
        // The periodic check of the token in use is no pass: it only starts one when the
        // token stopped authenticating.
        let mut token_check = false;
        if let Some(s) = agent.seconds_until_token_check()
            && Duration::from_secs(s.max(1)) < wait
        {
            wait = Duration::from_secs(s.max(1));
            token_check = true;
        }
        let mut trigger = None;
        tokio::select! {
            () = &mut shutdown => break,
            wake = rx.recv() => match wake {
                Some(Wake::Bundle(cm)) => {
                    if !have_bundle || bundle_key(cm.as_deref()) != bundle_key(bundle_cm.as_deref()) {
                        trigger = Some(Trigger::Bundle);
                    }
                    bundle_cm = cm;
                    have_bundle = true;
                }
                Some(Wake::Disk) => trigger = Some(Trigger::Disk),
                None => break,
            },
            () = tokio::time::sleep(wait) => {
                if !token_check {
                    trigger = Some(timer);
                } else if agent.check_token().await {
                    trigger = Some(Trigger::Token);
                }
            }
        }
        // Coalesce a burst of events into one pass.
        while let Ok(more) = rx.try_recv() {
            match more {
                Wake::Bundle(cm) => {
                    if !have_bundle || bundle_key(cm.as_deref()) != bundle_key(bundle_cm.as_deref())
                    {
                        trigger.get_or_insert(Trigger::Bundle);
                    }
                    bundle_cm = cm;
                    have_bundle = true;
                }
                Wake::Disk => {
                    trigger.get_or_insert(Trigger::Disk);
                }
            }
        }
        let Some(trigger) = trigger else {
            // Only the agent's own report changed on the ConfigMap: nothing to do.
            continue;
        };
        if !have_bundle {
            continue;
        }
        agent.metrics.pass(trigger);
        // A pass waiting on an unresponsive API server must not hold up SIGTERM; every
        // write is atomic, so a pass cut short leaves old or new files, never a mix.
        let cares = tokio::select! {
            () = &mut shutdown => break,
            cares = agent.reconcile(bundle_cm.as_deref()) => cares,
        };
        if let Some(w) = fs_watcher.as_mut() {
            let mut appeared = false;
            for dir in cares.watch_dirs() {
                // A directory that does not exist yet (the readiness file's, say) is
                // watched through its nearest existing ancestor until it appears.
                let Some(point) = Interest::watch_point(&dir, Path::exists) else {
                    continue;
                };
                if !watched.contains(&point)
                    && w.watch(&point, notify::RecursiveMode::NonRecursive).is_ok()
                {
                    watched.insert(point.clone());
                }
                if point == dir {
                    appeared |= missing.remove(&dir);
                } else {
                    missing.insert(dir);
                }
            }
            // Files may have landed in a directory between its creation and its watch:
            // one more pass looks.
            if appeared {
                let _ = tx.try_send(Wake::Disk);
            }
        }
        if let Ok(mut i) = interest.lock() {
            *i = cares;
        }
    }
    watch.abort();
    tracing::info!("stopping; files stay in place");
    Ok(())
}

/// Back-off after `failures` consecutive disk failures: 1 s doubling to 30 s; none without.
fn disk_retry(failures: u32) -> Option<Duration> {
    (failures > 0).then(|| Duration::from_secs((1u64 << (failures - 1).min(5)).min(30)))
}

impl Agent {
    /// Seconds until the token needs attention, when a bundle wants a kubeconfig.
    fn seconds_until_token_work(&self) -> Option<u64> {
        let now = now_secs();
        let due = self.rotation.due_at(self.token_settings.as_ref()?, now);
        Some(u64::try_from(due - now).unwrap_or(0))
    }

    /// Seconds until the token in use is next checked (off the pass loop).
    fn seconds_until_token_check(&self) -> Option<u64> {
        let now = now_secs();
        let at = self
            .rotation
            .recheck_at(self.token_settings.as_ref()?, now)?;
        Some(u64::try_from(at - now).unwrap_or(0))
    }

    /// Checks that the token in use still authenticates; true when it was dropped and a
    /// pass must write a new one.
    async fn check_token(&mut self) -> bool {
        let Some(settings) = self.token_settings.clone() else {
            return false;
        };
        let source = TokenSource {
            client: &self.client,
            kube_config: &self.kube_config,
            node: &self.settings.node,
        };
        self.rotation.recheck(&source, &settings, now_secs()).await
    }

    /// One pass; returns the paths whose changes should start the next one.
    async fn reconcile(&mut self, cm: Option<&ConfigMap>) -> Interest {
        self.token_settings = None;
        let Some(cm) = cm else {
            tracing::info!("no bundle ConfigMap for this node; leaving files as they are");
            return Interest::default();
        };
        let data = cm.data.clone().unwrap_or_default();
        let bundle = match NodeBundle::from_configmap_data(&data) {
            Ok(b) => b,
            Err(e) => {
                self.refuse(cm, &e.to_string()).await;
                return Interest::default();
            }
        };
        // The boundary comes first: nothing outside it is created, read or written.
        if let Err(e) = self.settings.allowed.check_manifest(&bundle.manifest) {
            self.refuse(cm, &e.to_string()).await;
            return Interest::default();
        }
        let dirs = probe::target_dirs(&self.root, &bundle.manifest);
        // Only an interrupted write leaves a temp file, and interruption means a restart:
        // each directory is swept once per run, not on every pass.
        for dir in &dirs {
            if !self.swept.contains(dir) {
                let _ = fsops::remove_stale_temps(dir);
                self.swept.push(dir.clone());
            }
        }
        // libcni loads every *.json of the conf dir: the record of owned files must live
        // outside every directory the bundle writes to.
        if let Some(dir) = dirs.iter().find(|d| self.state_file.starts_with(d)) {
            let message = format!(
                "the state file {} is inside {}, a directory the bundle writes to; set --state-file outside every CNI directory",
                self.settings.state_path,
                dir.display()
            );
            self.refuse(cm, &message).await;
            return Interest::default();
        }
        let plan = if marked_for_removal(cm) {
            plan::plan_removal(Some(&bundle), &self.owned)
        } else {
            let kubeconfig = self.kubeconfig_text(&bundle.manifest).await;
            let view = NodeView {
                primary: probe::primary_view(&self.root, &self.owned, &bundle.manifest.primary),
                readiness_ok: probe::readiness_ok(&self.root, &bundle.manifest),
                kubeconfig,
                existing: probe::existing_paths(&self.root, &bundle.manifest),
                upstream: probe::upstream_files(&self.root, &bundle.manifest, &self.owned),
            };
            plan::plan_apply(&bundle, &view, &self.owned, self.settings.upstream)
        };
        if let Err(e) = self.settings.allowed.check_plan(&plan) {
            self.refuse(cm, &e.to_string()).await;
            return Interest::default();
        }
        let mut host = HostFiles {
            root: &self.root,
            owned: &mut self.owned,
            state_file: &self.state_file,
            last_written: &mut self.last_written,
            backup_dir: self.backup_dir.as_deref(),
        };
        let (state, message) = match host.execute(&plan, &self.metrics) {
            Err(e) => {
                self.disk_failures = self.disk_failures.saturating_add(1);
                tracing::warn!(error = %e, failures = self.disk_failures, "a file operation failed; retrying");
                (AgentState::Failed, e.to_string())
            }
            Ok(()) => {
                self.disk_failures = 0;
                (plan.state, plan.message.clone().unwrap_or_default())
            }
        };
        let token_error = self.token_problem(&bundle.manifest);
        let message = match (message.is_empty(), token_error) {
            (true, Some(t)) => t,
            (_, _) => message,
        };
        let applied = (state == AgentState::Applied).then(|| bundle.manifest.bundle_hash.clone());
        self.metrics
            .applied
            .store(applied.is_some(), std::sync::atomic::Ordering::SeqCst);
        let token_expiry = self.rotation.expiry();
        self.reporter
            .report(
                cm,
                state,
                applied.as_deref(),
                plan.primary.as_deref(),
                token_expiry,
                &message,
            )
            .await;
        Interest {
            dirs: dirs.into_iter().collect(),
            files: probe::files_of_interest(&self.root, &bundle.manifest),
        }
    }

    /// Reports a bundle this agent will not apply; files on disk stay as they are.
    async fn refuse(&mut self, cm: &ConfigMap, message: &str) {
        let expiry = self.rotation.expiry();
        self.reporter
            .report(cm, AgentState::Failed, None, None, expiry, message)
            .await;
    }

    /// The kubeconfig text with a valid token, requesting a new token when due.
    async fn kubeconfig_text(&mut self, manifest: &BundleManifest) -> Option<String> {
        let settings = manifest.kubeconfig.as_ref()?;
        self.token_settings = Some(settings.clone());
        let source = TokenSource {
            client: &self.client,
            kube_config: &self.kube_config,
            node: &self.settings.node,
        };
        if self.rotation.wants_adoption() {
            // Only a kubeconfig this agent wrote is a candidate.
            let existing = self
                .owned
                .owns(&settings.path)
                .then(|| self.root.resolve(&settings.path).ok())
                .flatten()
                .and_then(|path| std::fs::read_to_string(path).ok());
            self.rotation
                .adopt(&source, settings, existing, &self.metrics)
                .await;
        }
        self.rotation
            .kubeconfig(&source, settings, now_secs(), &self.metrics)
            .await
    }

    fn token_problem(&self, manifest: &BundleManifest) -> Option<String> {
        manifest.kubeconfig.as_ref()?;
        self.rotation
            .failing()
            .then(|| "the last token request failed; retrying".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_failures_are_retried_after_a_back_off_doubling_to_thirty_seconds() {
        let seconds: Vec<Option<u64>> =
            (0..9).map(|n| disk_retry(n).map(|d| d.as_secs())).collect();
        assert_eq!(
            seconds,
            vec![
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(30),
                Some(30),
                Some(30)
            ]
        );
    }
}

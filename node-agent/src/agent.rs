//! The agent loop: watch this node's bundle ConfigMap, the CNI directories (inotify) and the
//! token clock; on any of them, plan and apply, then report on the ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::mpsc;

use multus_crds::bundle::{AgentState, BundleManifest, KubeconfigSettings, NodeBundle};

use crate::bounds::AllowedDirs;
use crate::fsops;
use crate::host_files::HostFiles;
use crate::hostpath::HostRoot;
use crate::metrics::Metrics;
use crate::owned_files::OwnedFiles;
use crate::plan::{self, NodeView, Upstream};
use crate::probe;
use crate::report::{Report, Reporter};
use crate::rotation::{Rotation, TokenSource};
use crate::token;
use crate::wake::{Interest, Trigger};

mod timer;
mod watches;

use timer::{OnTimer, now_secs};
use watches::{DiskWatch, SeenBundle, Wake, marked_for_removal};

pub use crate::report::FIELD_MANAGER;
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
    State(#[from] crate::owned_files::StateError),
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
    let watch = watches::spawn_bundle_watch(
        client,
        &agent.settings.namespace,
        &agent.settings.node,
        tx.clone(),
    );
    let mut disk = DiskWatch::new(tx);
    let mut bundle = SeenBundle::default();
    tokio::pin!(shutdown);
    loop {
        let (wait, on_timer) = timer::next(
            agent.seconds_until_token_work(),
            agent.disk_failures,
            agent.seconds_until_token_check(),
        );
        let mut trigger = None;
        tokio::select! {
            () = &mut shutdown => break,
            wake = rx.recv() => match wake {
                Some(wake) => trigger = agent_trigger(&mut bundle, wake),
                None => break,
            },
            () = tokio::time::sleep(wait) => match on_timer {
                OnTimer::Pass(t) => trigger = Some(t),
                // The periodic check of the token in use is no pass: it only starts one
                // when the token stopped authenticating.
                OnTimer::CheckToken => {
                    if agent.check_token().await {
                        trigger = Some(Trigger::Token);
                    }
                }
            },
        }
        // Coalesce a burst of events into one pass.
        while let Ok(more) = rx.try_recv() {
            if let Some(t) = agent_trigger(&mut bundle, more) {
                trigger.get_or_insert(t);
            }
        }
        // No trigger: only the agent's own report changed on the ConfigMap.
        let Some(trigger) = trigger.filter(|_| bundle.known) else {
            continue;
        };
        agent.metrics.pass(trigger);
        // A pass waiting on an unresponsive API server must not hold up SIGTERM; every
        // write is atomic, so a pass cut short leaves old or new files, never a mix.
        let cares = tokio::select! {
            () = &mut shutdown => break,
            cares = agent.reconcile(bundle.cm.as_deref()) => cares,
        };
        disk.follow(cares);
    }
    watch.abort();
    tracing::info!("stopping; files stay in place");
    Ok(())
}

/// The trigger of a pass for `wake`: a disk event always, a bundle sighting when it changes
/// what a pass reads.
fn agent_trigger(bundle: &mut SeenBundle, wake: Wake) -> Option<Trigger> {
    match wake {
        Wake::Bundle(cm) => bundle.update(cm).then_some(Trigger::Bundle),
        Wake::Disk => Some(Trigger::Disk),
    }
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
        let report = Report {
            state,
            applied: applied.as_deref(),
            primary: plan.primary.as_deref(),
            token_expiry,
            error: &message,
        };
        self.reporter.report(cm, &report, now_secs()).await;
        Interest {
            dirs: dirs.into_iter().collect(),
            files: probe::files_of_interest(&self.root, &bundle.manifest),
        }
    }

    /// Reports a bundle this agent will not apply; files on disk stay as they are.
    async fn refuse(&mut self, cm: &ConfigMap, message: &str) {
        let expiry = self.rotation.expiry();
        let report = Report {
            state: AgentState::Failed,
            applied: None,
            primary: None,
            token_expiry: expiry,
            error: message,
        };
        self.reporter.report(cm, &report, now_secs()).await;
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

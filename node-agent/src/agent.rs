//! The agent loop: watch this node's bundle ConfigMap, the CNI directories (inotify) and the
//! token clock; on any of them, plan and apply, then report on the ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Client, Config};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use multus_crds::bundle::{AgentState, BundleManifest, KubeconfigSettings};

use crate::bounds::AllowedDirs;
use crate::metrics::Metrics;
use crate::plan::Upstream;
use crate::report::{Report, Reporter};
use crate::rotation::{Rotation, TokenSource};
use crate::token;
use crate::wake::{Interest, Trigger};

mod pass;
mod timer;
mod watches;

use pass::{Host, off_runtime};
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
    /// A host path from the command line that cannot be resolved under the host root.
    #[error("cannot resolve {flag}: {source}")]
    HostPath {
        flag: &'static str,
        #[source]
        source: crate::hostpath::PathError,
    },
    #[error(transparent)]
    State(#[from] crate::owned_files::StateError),
}

struct Agent {
    settings: Arc<Settings>,
    /// The host side, borrowed by each disk step of a pass on the blocking pool.
    host: Arc<Mutex<Host>>,
    client: Client,
    kube_config: Config,
    rotation: Rotation,
    /// The kubeconfig settings of the last pass that got as far as the token; the loop
    /// wakes for token work only then (a refused bundle waits for a change instead).
    token_settings: Option<KubeconfigSettings>,
    reporter: Reporter,
    /// Consecutive passes that failed on the disk; each is retried after a back-off.
    disk_failures: u32,
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
    if let Some(proxy) = &kube_config.proxy_url {
        // Only the host: the URL may carry credentials.
        let proxy_host = proxy.host().unwrap_or_default();
        tracing::warn!(
            proxy_host,
            "the kubeconfig's proxy-url is not used: the agent connects to the API server directly"
        );
    }
    let client = crate::api_client::client(&kube_config).map_err(AgentError::Client)?;
    let settings = Arc::new(settings);
    let loading = settings.clone();
    let Some(host) = off_runtime(move || Host::load(&loading)).await else {
        return Ok(());
    };
    let mut agent = Agent {
        host: Arc::new(Mutex::new(host?)),
        client: client.clone(),
        kube_config,
        rotation: Rotation::default(),
        token_settings: None,
        reporter: Reporter::new(client.clone(), &settings.namespace),
        disk_failures: 0,
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
        // write is atomic, so a pass cut short leaves old or new files, never a mix. A disk
        // step under way runs on until the runtime's one-second shutdown grace ends, and is
        // then cut off with the process: atomic writes make that safe too.
        let cares = tokio::select! {
            () = &mut shutdown => break,
            cares = agent.reconcile(bundle.cm.as_deref()) => cares,
        };
        // Adding inotify watches waits on notify's own thread: off the runtime too.
        let Some(following) = off_runtime(move || {
            disk.follow(cares);
            disk
        })
        .await
        else {
            break;
        };
        disk = following;
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

    /// One pass; returns the paths whose changes should start the next one. Its disk
    /// steps run on the blocking pool (see [`pass`]); the token and the report in between
    /// are the only network waits.
    async fn reconcile(&mut self, cm: Option<&ConfigMap>) -> Interest {
        self.token_settings = None;
        let Some(cm) = cm else {
            tracing::info!("no bundle ConfigMap for this node; leaving files as they are");
            return Interest::default();
        };
        let removal = marked_for_removal(cm);
        let read_kubeconfig = !removal && self.rotation.wants_adoption();
        let data = cm.data.clone().unwrap_or_default();
        let (host, settings) = (self.host.clone(), self.settings.clone());
        let prepared =
            off_runtime(move || Host::lock(&host).prepare(&data, &settings, read_kubeconfig)).await;
        let mut prepared = match prepared {
            None => return Interest::default(),
            Some(Err(refusal)) => {
                self.refuse(cm, &refusal.to_string()).await;
                return Interest::default();
            }
            Some(Ok(prepared)) => prepared,
        };
        let kubeconfig = if removal {
            None
        } else {
            let on_disk = prepared.kubeconfig_on_disk.take();
            self.kubeconfig_text(&prepared.bundle.manifest, on_disk)
                .await
        };
        let (host, settings, metrics) = (
            self.host.clone(),
            self.settings.clone(),
            self.metrics.clone(),
        );
        let applied = off_runtime(move || {
            let applied =
                Host::lock(&host).apply(&prepared, removal, kubeconfig, &settings, &metrics);
            (prepared, applied)
        })
        .await;
        let (prepared, applied) = match applied {
            None => return Interest::default(),
            Some((_, Err(refusal))) => {
                self.refuse(cm, &refusal.to_string()).await;
                return Interest::default();
            }
            Some((prepared, Ok(applied))) => (prepared, applied),
        };
        let manifest = &prepared.bundle.manifest;
        if applied.disk_error {
            self.disk_failures = self.disk_failures.saturating_add(1);
            tracing::warn!(error = %applied.message, failures = self.disk_failures, "a file operation failed; retrying");
        } else {
            self.disk_failures = 0;
        }
        let state = applied.state;
        let token_error = self.token_problem(manifest);
        let message = match (applied.message.is_empty(), token_error) {
            (true, Some(t)) => t,
            (_, _) => applied.message,
        };
        let applied_hash = (state == AgentState::Applied).then(|| manifest.bundle_hash.clone());
        self.metrics
            .applied
            .store(applied_hash.is_some(), std::sync::atomic::Ordering::SeqCst);
        let token_expiry = self.rotation.expiry();
        let report = Report {
            state,
            applied: applied_hash.as_deref(),
            primary: applied.primary.as_deref(),
            token_expiry,
            error: &message,
        };
        self.reporter.report(cm, &report, now_secs()).await;
        applied.interest
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
    /// `on_disk` is the kubeconfig an earlier run wrote, offered for adoption.
    async fn kubeconfig_text(
        &mut self,
        manifest: &BundleManifest,
        on_disk: Option<String>,
    ) -> Option<String> {
        let settings = manifest.kubeconfig.as_ref()?;
        self.token_settings = Some(settings.clone());
        let source = TokenSource {
            client: &self.client,
            kube_config: &self.kube_config,
            node: &self.settings.node,
        };
        if self.rotation.wants_adoption() {
            self.rotation
                .adopt(&source, settings, on_disk, &self.metrics)
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

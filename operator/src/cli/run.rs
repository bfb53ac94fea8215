//! `multus-operator run`: the controller, its admin endpoints and leader election.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use multus_crds::multus_config::ServiceAccountRef;
use multus_process::Shutdown;
// Re-exported: in-process tests start the operator's pieces with the binary's logging.
pub use multus_process::{LogFormat, init_logging};

use super::{CliError, parse_service_account};
use crate::admin::{self, Readiness};
use crate::controller::{self, Settings};
use crate::lease::fence::WriteFenceLayer;
use crate::lease::{LeaderGuard, LeaseLock};
use crate::metrics::Metrics;
use crate::render::RenderDefaults;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Namespace holding the node ConfigMaps (and the leader Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "multus-system")]
    pub namespace: String,
    /// ServiceAccount (`<namespace>/<name>`) for the host kubeconfig when a MultusConfig names
    /// none.
    #[arg(long = "multus-service-account", default_value = "kube-system/multus", value_parser = parse_service_account)]
    pub multus_service_account: ServiceAccountRef,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long = "metrics-bind-address", default_value = "0.0.0.0:8080")]
    pub metrics_bind_address: SocketAddr,
    /// Take a Lease before writing anything; needed when more than one replica runs.
    #[arg(long = "leader-elect")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long = "lease-name", default_value = "multus-operator")]
    pub lease_name: String,
    /// Seconds a Lease lasts without renewal. The leader renews every quarter of it and stops
    /// writing two thirds of it after its last successful renewal; a standby takes over only
    /// after seeing the Lease unchanged for all of it.
    #[arg(long = "lease-duration-seconds", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a removal waits for an agent's confirmation before giving the node up
    /// (offline or gone nodes).
    #[arg(long = "cleanup-timeout-seconds", default_value_t = 300)]
    pub cleanup_timeout_seconds: u64,
    /// Changes closer together than this many milliseconds are handled in one reconcile.
    #[arg(long = "debounce-ms", default_value_t = 500)]
    pub debounce_ms: u64,
    /// Manage only MultusConfigs matching this label selector (for example to run a canary
    /// operator next to the main one). Empty: all.
    #[arg(long = "multusconfig-selector")]
    pub multusconfig_selector: Option<String>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl RunArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            namespace: self.namespace.clone(),
            defaults: RenderDefaults {
                service_account: self.multus_service_account.clone(),
            },
            cleanup_timeout: Duration::from_secs(self.cleanup_timeout_seconds),
            debounce: Duration::from_millis(self.debounce_ms),
            config_selector: self.multusconfig_selector.clone().filter(|s| !s.is_empty()),
        }
    }
}

/// How long a stopping operator waits for reconciles in flight before it exits anyway. A
/// reconcile cut short is repeated by the next leader: every step is idempotent.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: RunArgs) -> Result<(), CliError> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let result = runtime.block_on(serve(args));
    // Tasks still running (watches, the lease renewal, idle connections) are dropped; the
    // process never waits on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(args: RunArgs) -> Result<(), CliError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| CliError::Client(kube::Error::InferConfig(e)))?;
    // The Lease is renewed through a plain client; everything the controller writes goes
    // through a client fenced by the lease guard.
    let client = kube::Client::try_from(config.clone()).map_err(CliError::Client)?;
    let lock = args.leader_elect.then(|| {
        Arc::new(LeaseLock::new(
            client,
            &args.namespace,
            &args.lease_name,
            &args.identity.clone().unwrap_or_else(hostname),
            Duration::from_secs(args.lease_duration_seconds),
        ))
    });
    let guard = lock
        .as_ref()
        .map_or_else(LeaderGuard::always, |l| l.guard());
    let fenced = kube::client::ClientBuilder::try_from(config)
        .map_err(CliError::Client)?
        .with_layer(&WriteFenceLayer(guard.clone()))
        .build();
    let metrics = Metrics::default();
    let ready = Readiness::with_leader(guard.clone());
    let stop = Shutdown::on_signal(|| tracing::info!("signal received; shutting down"));
    let bound = multus_process::serve_admin(
        args.metrics_bind_address,
        admin::router(metrics.clone(), ready.clone()),
        stop.wait(),
    )
    .await?;
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");

    let Some(lock) = lock else {
        run_controller(&args, fenced, &metrics, &ready, guard, stop).await;
        tracing::info!("stopped");
        return Ok(());
    };
    ready.set_standby();
    // One term of leadership per turn: wait for the Lease, lead until the process stops
    // (release the Lease and exit) or the Lease is lost or lapses (step down: the guard has
    // already fenced every write; wait as a standby again).
    loop {
        tokio::select! {
            () = lock.acquire() => {}
            () = stop.wait() => return Ok(()),
        }
        ready.set_syncing();
        let (lease_lost, term_lost) = Shutdown::channel();
        let holder = lock.clone();
        let renewing = tokio::spawn(async move {
            let why = holder.hold().await;
            lease_lost.trigger();
            why
        });
        // The term ends when the process stops or the Lease is lost, whichever comes first.
        let (end_term, term_over) = Shutdown::channel();
        let forward = {
            let (process, lease) = (stop.wait(), term_lost.wait());
            tokio::spawn(async move {
                tokio::select! {
                    () = process => {}
                    () = lease => {}
                }
                end_term.trigger();
            })
        };
        run_controller(
            &args,
            fenced.clone(),
            &metrics,
            &ready,
            guard.clone(),
            term_over,
        )
        .await;
        forward.abort();
        if stop.is_requested() {
            renewing.abort();
            // Nothing is written any more: hand over to a standby at once.
            let _ = tokio::time::timeout(Duration::from_secs(2), lock.release()).await;
            tracing::info!("stopped");
            return Ok(());
        }
        match renewing.await {
            Ok(why) => {
                tracing::error!(error = %why, "leadership lost; stepped down, waiting for the lease again")
            }
            Err(e) => tracing::error!(error = %e, "lease renewal task failed; stepped down"),
        }
        // A lapsed Lease still naming us is handed over at once (conditional on its version).
        let _ = tokio::time::timeout(Duration::from_secs(2), lock.release()).await;
        metrics.step_downs.inc();
        ready.set_stepped_down();
    }
}

/// Runs the controller until `stop` is requested, then waits up to [`SHUTDOWN_GRACE`] for
/// reconciles in flight.
async fn run_controller(
    args: &RunArgs,
    client: kube::Client,
    metrics: &Metrics,
    ready: &Readiness,
    leader: LeaderGuard,
    stop: Shutdown,
) {
    let controller = controller::run(
        client,
        args.settings(),
        metrics.clone(),
        ready.clone(),
        leader,
        stop.wait(),
    );
    let grace_over = async {
        stop.wait().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller => {}
        () = grace_over => tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "reconciles still running at the end of the shutdown grace period; stopping without them"
        ),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "multus-operator".into())
}

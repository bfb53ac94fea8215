//! `multus-operator run`: the controller, its admin endpoints and leader election.

use clap::ValueEnum;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use multus_crds::multus_config::ServiceAccountRef;

use super::{CliError, parse_service_account};
use crate::admin::{self, Readiness};
use crate::controller::{self, Settings};
use crate::lease::LeaseLock;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Initializes logging once; later calls are ignored.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    let client = kube::Client::try_default()
        .await
        .map_err(CliError::Client)?;
    let metrics = Metrics::default();
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let bound = admin::serve(
        args.metrics_bind_address,
        metrics.clone(),
        ready.clone(),
        stopped(stop_rx.clone()),
    )
    .await
    .map_err(|source| CliError::Listen {
        addr: args.metrics_bind_address,
        source,
    })?;
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");

    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        let _ = signal_tx.send(true);
    });

    let mut leadership = None;
    if args.leader_elect {
        let identity = args.identity.clone().unwrap_or_else(hostname);
        let lock = Arc::new(LeaseLock::new(
            client.clone(),
            &args.namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(15),
        ));
        ready.set_standby();
        tokio::select! {
            () = lock.acquire() => {}
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
        ready.set_syncing();
        let lost_tx = stop_tx.clone();
        let holder = lock.clone();
        let renewing = tokio::spawn(async move {
            let why = holder.hold().await;
            tracing::error!(error = %why, "leadership lost; stopping");
            let _ = lost_tx.send(true);
            why
        });
        leadership = Some((lock, renewing));
    }

    let controller = controller::run(
        client,
        args.settings(),
        metrics,
        ready,
        stopped(stop_rx.clone()),
    );
    let grace_over = async {
        stopped(stop_rx).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = controller => {}
        () = grace_over => tracing::warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "reconciles still running at the end of the shutdown grace period; stopping without them"
        ),
    }
    if let Some((lock, mut renewing)) = leadership {
        // A lost lease ends the renewal task right after it asked for the stop; a renewal
        // still running means the stop came from a signal.
        match tokio::time::timeout(Duration::from_millis(200), &mut renewing).await {
            Ok(Ok(why)) => return Err(why.into()),
            _ => {
                renewing.abort();
                // Nothing is written any more: hand over to a standby at once.
                let _ = tokio::time::timeout(Duration::from_secs(2), lock.release()).await;
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "multus-operator".into())
}

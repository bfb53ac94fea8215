//! Command line of the node agent.

use clap::{Parser, Subcommand};
use multus_process::Shutdown;
use std::path::PathBuf;

// Re-exported: callers building [`RunArgs`] by hand name the format through this crate.
pub use multus_process::LogFormat;

/// multus-node-agent: writes this node's Multus files from its bundle ConfigMap.
#[derive(Debug, Parser)]
#[command(name = "multus-node-agent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent for one node: watch its bundle ConfigMap and keep the host files in
    /// line with it. SIGTERM stops the agent and leaves every file in place.
    Run(Box<RunArgs>),
    /// Check a bundle ConfigMap offline (YAML, as `kubectl get cm multus-node-<node> -o yaml`
    /// prints it): format version, content hashes and every CNI config. Exits non-zero when
    /// the agent would refuse the bundle.
    Check {
        /// The ConfigMap YAML file; `-` reads stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// This node's name (the Downward API's spec.nodeName in the DaemonSet).
    #[arg(long = "node-name", env = "NODE_NAME")]
    pub node_name: String,
    /// Namespace of the bundle ConfigMaps (the operator's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "multus-system")]
    pub namespace: String,
    /// Where the host's root is mounted; every host path is resolved under it.
    #[arg(long = "host-root", default_value = "/host")]
    pub host_root: PathBuf,
    /// Host path of the record of owned files (outside every CNI directory).
    #[arg(long = "state-file", default_value = crate::owned_files::DEFAULT_STATE_PATH)]
    pub state_file: String,
    /// Kubeconfig for the agent itself; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// A host directory bundles may make the agent write below (repeat for each). A bundle
    /// naming any other directory is refused. The chart sets these from its paths values.
    #[arg(long = "allowed-dir", default_values_t = crate::bounds::DEFAULT_ALLOWED_DIRS.map(String::from))]
    pub allowed_dirs: Vec<String>,
    /// Take over the `00-multus*` configs and the `multus.d/multus.kubeconfig` that
    /// upstream's Multus DaemonSet left in the Multus config's directory: each is copied to
    /// --backup-dir, then replaced (or removed once this agent's Multus config is in place).
    /// Without it such files are left alone and the bundle is reported Failed.
    #[arg(long = "take-over-upstream")]
    pub take_over_upstream: bool,
    /// Host directory for the backups of taken-over files, outside every --allowed-dir.
    #[arg(long = "backup-dir", default_value = DEFAULT_BACKUP_DIR)]
    pub backup_dir: String,
    /// Address of /metrics, /healthz and /readyz (ready once the bundle is applied).
    #[arg(long = "metrics-bind-address", default_value = "0.0.0.0:8081")]
    pub metrics_bind_address: std::net::SocketAddr,
    /// `text` or `json` logs on stderr; the level comes from RUST_LOG (default info).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where backups of taken-over upstream files go by default: beside the state file.
pub const DEFAULT_BACKUP_DIR: &str = "/var/lib/multus-node-agent/upstream-backup";

/// Why the agent command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Listen(#[from] multus_process::ListenError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Check(#[from] crate::check::CheckError),
    #[error("invalid --allowed-dir: {0}")]
    AllowedDir(#[source] crate::bounds::DirError),
    #[error("invalid --backup-dir: {0}")]
    BackupDir(#[source] crate::bounds::DirError),
}

/// Runs a parsed command line; the report of `check` goes to `out`.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    match cli.command {
        Command::Check { file } => {
            let report = check_file(&file)?;
            // A closed stdout leaves nothing to report to.
            let _ = out.write_all(report.as_bytes());
            Ok(())
        }
        Command::Run(args) => {
            // One thread runs every task: the agent waits on the network and on timers,
            // and its disk steps go to the blocking pool (at most two threads, idle ones
            // ending after ten seconds). A second worker thread measured as extra memory
            // and no faster start.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(2)
                .thread_keep_alive(std::time::Duration::from_secs(10))
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            let result = runtime.block_on(serve(*args));
            // Whatever is still running (the watch, idle connections) is dropped, never
            // waited on.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        }
    }
}

/// Checks a bundle ConfigMap file (`-`: stdin); returns the report.
pub fn check_file(file: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read;
    let read = |source| CliError::Read {
        path: file.to_path_buf(),
        source,
    };
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(read)?;
        text
    } else {
        std::fs::read_to_string(file).map_err(read)?
    };
    Ok(crate::check::check_configmap_yaml(&text)?)
}

/// Runs the agent with logging, admin endpoints and signal handling.
pub async fn serve(args: RunArgs) -> Result<(), CliError> {
    let allowed =
        crate::bounds::AllowedDirs::new(&args.allowed_dirs).map_err(CliError::AllowedDir)?;
    if args.take_over_upstream {
        allowed
            .check_backup_dir(&args.backup_dir)
            .map_err(CliError::BackupDir)?;
    }
    multus_process::init_logging(args.log_format);
    let metrics = crate::metrics::Metrics::default();
    let stop = Shutdown::on_signal(|| tracing::info!("signal received"));
    let bound = multus_process::serve_admin(
        args.metrics_bind_address,
        crate::metrics::router(metrics.clone()),
        stop.wait(),
    )
    .await?;
    tracing::info!(address = %bound, node = %args.node_name, "serving /metrics, /healthz and /readyz");
    let settings = crate::agent::Settings {
        node: args.node_name,
        namespace: args.namespace,
        host_root: args.host_root,
        state_path: args.state_file,
        kubeconfig: args.kubeconfig,
        allowed,
        upstream: if args.take_over_upstream {
            crate::plan::Upstream::TakeOver
        } else {
            crate::plan::Upstream::Refuse
        },
        backup_dir: args.backup_dir,
    };
    Ok(crate::agent::run(settings, metrics, stop.wait()).await?)
}

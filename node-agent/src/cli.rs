//! Command line of the node agent.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    Run(RunArgs),
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
    #[arg(long = "state-file", default_value = crate::state::DEFAULT_STATE_PATH)]
    pub state_file: String,
    /// Kubeconfig for the agent itself; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz (ready once the bundle is applied).
    #[arg(long = "metrics-bind-address", default_value = "0.0.0.0:8081")]
    pub metrics_bind_address: std::net::SocketAddr,
    /// `text` or `json` logs on stderr; the level comes from RUST_LOG (default info).
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: String,
}

/// Runs the agent with logging, admin endpoints and signal handling.
pub async fn serve(args: RunArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let metrics = crate::metrics::Metrics::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let bound = crate::metrics::serve(
        args.metrics_bind_address,
        metrics.clone(),
        stopped(stop_rx.clone()),
    )
    .await
    .map_err(|e| format!("cannot listen on {}: {e}", args.metrics_bind_address))?;
    tracing::info!(address = %bound, node = %args.node_name, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("signal received");
        let _ = stop_tx.send(true);
    });
    let settings = crate::agent::Settings {
        node: args.node_name,
        namespace: args.namespace,
        host_root: args.host_root,
        state_path: args.state_file,
        kubeconfig: args.kubeconfig,
    };
    crate::agent::run(settings, metrics, stopped(stop_rx))
        .await
        .map_err(|e| e.to_string())
}

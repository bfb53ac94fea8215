//! Command line: `render` shows offline what a node would get; `crds` prints the CRDs.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

use multus_crds::multus_config::ServiceAccountRef;

pub mod crds;
pub mod inputs;
pub mod render;
pub mod run;
pub mod uninstall;

/// multus-operator: owns every file Multus CNI needs on a node.
#[derive(Debug, Parser)]
#[command(name = "multus-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster (in-cluster config, or KUBECONFIG).
    Run(run::RunArgs),
    /// Print the files one node would get, offline (no cluster needed).
    ///
    /// Reads MultusConfig, Node, NetworkAttachmentDefinition and Namespace manifests (YAML,
    /// several documents per file and `kind: List` allowed) and prints every file of the
    /// node's bundle exactly as the agent will write it. Rejected NADs, lint warnings and
    /// attachments that fail on this node go to stderr.
    Render(RenderArgs),
    /// Print the CustomResourceDefinitions (MultusConfig and an upstream-compatible
    /// NetworkAttachmentDefinition) as YAML, or update them in the cluster with --apply
    /// (the chart's pre-upgrade hook).
    Crds(crds::CrdsArgs),
    /// Delete every MultusConfig and wait until the node agents have removed their files
    /// (the chart's pre-delete hook). Exits non-zero, naming what is left, on timeout.
    Uninstall(uninstall::UninstallArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Manifest files to read; `-` reads stdin. Repeat the flag or list several.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The node to render for. Needed when the manifests hold more than one Node.
    #[arg(long)]
    pub node: Option<String>,
    /// The MultusConfig to use. Needed when the manifests hold more than one.
    #[arg(long = "multus-config")]
    pub multus_config: Option<String>,
    /// A primary CNI config file as it is on the node. With an `auto` or `file` primary the
    /// Multus config is then shown completed, exactly as the agent would write it.
    #[arg(long = "primary-file")]
    pub primary_file: Option<PathBuf>,
    /// `files` prints each file with its path; `configmap` prints the node's ConfigMap.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Files)]
    pub output: Output,
    /// Namespace of the node ConfigMaps (for `-o configmap`).
    #[arg(long, default_value = "multus-system")]
    pub namespace: String,
    /// ServiceAccount (`<namespace>/<name>`) for the host kubeconfig when the MultusConfig
    /// names none.
    #[arg(long = "multus-service-account", default_value = "kube-system/multus", value_parser = parse_service_account)]
    pub multus_service_account: ServiceAccountRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Files,
    Configmap,
}

/// Parses `<namespace>/<name>`.
pub fn parse_service_account(text: &str) -> Result<ServiceAccountRef, String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ServiceAccountRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!("{text:?} is not <namespace>/<name>")),
    }
}

/// Errors of the command line tools.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Inputs(#[from] inputs::InputError),
    #[error(transparent)]
    AttachmentSelector(#[from] crate::attachments::SelectorError),
    #[error(transparent)]
    NodeSelector(#[from] crate::ownership::SelectorError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error("cannot read primary file {path}: {source}")]
    PrimaryFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Completion(#[from] multus_crds::completion::CompletionError),
    #[error("cannot serialize output: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot serialize output: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Listen(#[from] multus_process::ListenError),
    #[error("cannot {what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "MultusConfigs still present after {seconds}s: {left}; is the operator running? Their nodes may keep their Multus files"
    )]
    UninstallTimeout { seconds: u64, left: String },
    #[error(
        "the CustomResourceDefinition {0} does not exist; install it first (`multus-operator crds | kubectl apply -f -`, or helm install without --skip-crds)"
    )]
    CrdMissing(String),
    #[error("the CustomResourceDefinition {name} was not Established within {seconds}s")]
    CrdNotEstablished { name: String, seconds: u64 },
}

/// Runs a one-shot command that talks to the cluster, on a runtime of its own, with a client
/// from the usual kubeconfig lookup (`KUBECONFIG`, `~/.kube/config`, in-cluster).
fn with_client<T, F, Fut>(command: F) -> Result<T, CliError>
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, CliError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(CliError::Client)?;
        command(client).await
    })
}

/// Runs a parsed command line, writing results to `out` and diagnostics to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Render(args) => render::render(&args, out, err),
        Command::Uninstall(args) => uninstall::uninstall(args, out),
        Command::Crds(args) => crds::crds(&args, out),
    }
}

//! Real node agents for many simulated nodes in one process: each runs through the entry the
//! `multus-node-agent run` binary uses ([`multus_node_agent::cli::serve`]) with its own node
//! name, kubeconfig (its own identity, so its own client and watch) and host root. They share
//! one runtime of their own: two workers and tokio's default blocking pool (the binary runs
//! one thread per agent with at most two blocking threads; a thousand agents need more to
//! share), its threads named so that their CPU time can be told apart. Dropping [`Agents`]
//! drops every agent task.

use futures::{StreamExt, TryStreamExt, stream};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multus_node_agent::cli::{DEFAULT_BACKUP_DIR, RunArgs, serve};

use crate::identities::Identities;
use crate::{ControlPlane, E2eError};

/// Name of the agents' runtime threads (workers and blocking pool).
pub const THREAD_NAME: &str = "fleet-agents";
/// What `/proc/<tid>/comm` holds for notify's inotify threads (15 characters at most).
const NOTIFY_THREAD: &str = "notify-rs inoti";

/// One simulated node's agent.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub node: String,
    /// The node's DaemonSet pod token, as [`crate::identities::Identities::agent_kubeconfig`]
    /// writes it.
    pub kubeconfig: PathBuf,
    pub host_root: PathBuf,
}

/// One spec per node: `roots[i]` as the host root of `nodes[i]`, with its DaemonSet pod's
/// kubeconfig minted through `identities` (16 at a time).
pub async fn specs(
    cp: &ControlPlane,
    identities: &Identities,
    nodes: &[String],
    roots: &[tempfile::TempDir],
) -> Result<Vec<AgentSpec>, E2eError> {
    let kubeconfigs: Vec<PathBuf> = stream::iter(nodes)
        .map(|node| identities.agent_kubeconfig(cp, node))
        .buffered(16)
        .try_collect()
        .await?;
    Ok(nodes
        .iter()
        .zip(kubeconfigs)
        .zip(roots)
        .map(|((node, kubeconfig), root)| AgentSpec {
            node: node.clone(),
            kubeconfig,
            host_root: root.path().to_path_buf(),
        })
        .collect())
}

/// The running agents.
pub struct Agents {
    runtime: Option<tokio::runtime::Runtime>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Agents {
    /// Starts one agent per spec, reading bundles from `namespace`, with the binary's
    /// defaults for everything else (state file, allowed directories, no take-over);
    /// admin endpoints on ephemeral loopback ports.
    pub fn start(namespace: &str, specs: &[AgentSpec]) -> Result<Agents, E2eError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(THREAD_NAME)
            // Blocking threads stay, so that their CPU time stays counted.
            .thread_keep_alive(Duration::from_secs(24 * 3600))
            .enable_all()
            .build()
            .map_err(|e| E2eError::Io(format!("agents' runtime: {e}")))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        for spec in specs {
            let args = RunArgs {
                node_name: spec.node.clone(),
                namespace: namespace.to_string(),
                host_root: spec.host_root.clone(),
                state_file: multus_node_agent::owned_files::DEFAULT_STATE_PATH.into(),
                kubeconfig: Some(spec.kubeconfig.clone()),
                allowed_dirs: multus_node_agent::bounds::DEFAULT_ALLOWED_DIRS
                    .map(String::from)
                    .to_vec(),
                take_over_upstream: false,
                backup_dir: DEFAULT_BACKUP_DIR.into(),
                metrics_bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
                log_format: multus_node_agent::cli::LogFormat::Text,
            };
            let errors = errors.clone();
            let node = spec.node.clone();
            runtime.spawn(async move {
                if let Err(e) = serve(args).await
                    && let Ok(mut list) = errors.lock()
                {
                    list.push(format!("{node}: {e}"));
                }
            });
        }
        Ok(Agents {
            runtime: Some(runtime),
            errors,
        })
    }

    /// Agents that stopped with an error, with the error.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops every agent (files stay, as on SIGTERM; the tasks are dropped).
    pub fn stop(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// CPU seconds used so far by the agents' threads in this process: their runtime's and
/// notify's inotify threads (one per agent; the benchmark's own file watch adds one more).
/// Per thread from `schedstat` (nanoseconds on a CPU): `/proc/<tid>/stat` would sum the
/// whole process for every thread.
pub fn agents_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let comm = comm.trim_end();
            comm == THREAD_NAME || comm == NOTIFY_THREAD
        })
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    nanos as f64 / 1e9
}

/// inotify instances this process holds (each agent holds one while it watches its disk).
pub fn inotify_instances() -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:inotify")
        })
        .count()
}

/// The kernel's limit of inotify instances per user (`fs.inotify.max_user_instances`).
pub fn inotify_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Fails, saying how to raise the limit, unless this user may hold an inotify instance for
/// each of `n` agents and 64 more.
pub fn check_inotify_limit(n: usize) -> Result<(), E2eError> {
    let limit = inotify_limit().unwrap_or(0);
    if limit >= n + 64 {
        return Ok(());
    }
    Err(E2eError::Io(format!(
        "{n} agents in one process need {n} inotify instances, and this user may hold {limit} \
         (fs.inotify.max_user_instances); raise it, e.g. `sysctl -w fs.inotify.max_user_instances={}`",
        (n + 1024).next_power_of_two()
    )))
}

/// Logs of the in-process agents at `RUST_LOG`, or warnings only when unset: the agents'
/// own setup then finds a subscriber in place and keeps it (a thousand agents logging every
/// pass at info would measure the terminal).
pub fn quiet_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

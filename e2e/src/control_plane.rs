//! etcd + kube-apiserver + kube-controller-manager on loopback with free ports, their own PKI
//! and ServiceAccount signing key, RBAC and the admission plugins a real cluster runs. A
//! control plane for real nodes ([`ControlPlane::start_for_real_nodes`]) adds what
//! `crate::cluster` describes.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::binaries::bin;
use crate::cluster;

mod args;
mod restart;
pub use crate::error::E2eError;
use crate::error::io;
pub use crate::pki::kubeconfig_yaml;
use crate::pki::{self, Pki, random_token};
use crate::process::{MARKER, Supervised, wait_until};

/// How long the control plane may take to become ready from a warm binary cache.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Field manager for objects the harness applies.
pub const FIELD_MANAGER: &str = "multus-e2e";

/// A running control plane. Dropping it stops every process and removes its state.
pub struct ControlPlane {
    /// State directory (`/tmp/multus-e2e-<pid>-<n>`).
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// An admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    /// Seconds from start to ready.
    pub startup: Duration,
    /// Whether it can host real nodes ([`Self::start_for_real_nodes`]).
    pub real_nodes: bool,
    processes: Mutex<Vec<Supervised>>,
    /// How kube-apiserver was started, to start it again after [`Self::stop_apiserver`].
    apiserver_args: Vec<String>,
    /// How etcd was started, for [`Self::restart_etcd`].
    etcd_args: Vec<String>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on first use.
    /// Panics with the reason when it cannot start: no test can run without it.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        Self::shared_in(&SHARED, ControlPlane::start, "the e2e control plane")
    }

    /// The control plane for real nodes shared by every test of this test binary
    /// ([`Self::start_for_real_nodes`]), started on first use. Panics when it cannot start.
    pub fn shared_for_real_nodes() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        Self::shared_in(
            &SHARED,
            ControlPlane::start_for_real_nodes,
            "the e2e control plane for real nodes",
        )
    }

    /// The control plane in `cell`, started with `start` by the first caller; panics
    /// naming `what` when it could not start.
    fn shared_in(
        cell: &'static OnceLock<Result<ControlPlane, String>>,
        start: fn() -> Result<ControlPlane, E2eError>,
        what: &str,
    ) -> &'static ControlPlane {
        let result = cell.get_or_init(|| {
            // Started on a plain thread: tests call this from inside their own runtimes.
            std::thread::spawn(start)
                .join()
                .map_err(|_| "control plane start panicked".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        });
        match result {
            Ok(cp) => cp,
            Err(e) => panic!("cannot start {what}: {e}"),
        }
    }

    /// A control plane of the caller's own, started with `start` ([`Self::start`] or a
    /// variant) on the blocking pool, for a test or benchmark inside its async runtime.
    /// Panics with the reason when it cannot start, as [`Self::shared`] does.
    pub async fn own(start: fn() -> Result<ControlPlane, E2eError>) -> ControlPlane {
        match tokio::task::spawn_blocking(start).await {
            Ok(Ok(cp)) => cp,
            Ok(Err(e)) => panic!("cannot start an e2e control plane: {e}"),
            Err(e) => panic!("control plane start panicked: {e}"),
        }
    }

    /// Starts a new control plane and installs the project's CRDs.
    pub fn start() -> Result<ControlPlane, E2eError> {
        Self::start_with(false, false)
    }

    /// Like [`Self::start`], with an API audit log (`audit.log` in the state directory,
    /// one JSON event per line, metadata level) for counting requests in benchmarks.
    pub fn start_with_audit() -> Result<ControlPlane, E2eError> {
        Self::start_with(true, false)
    }

    /// Like [`Self::start`], ready to host real nodes (`crate::node`): the API server
    /// listens on [`cluster::API_ADDRESS`], which pods reach, and can call kubelets;
    /// kube-scheduler runs, and kube-controller-manager runs the workload controllers.
    pub fn start_for_real_nodes() -> Result<ControlPlane, E2eError> {
        Self::start_with(false, true)
    }

    fn start_with(audit: bool, real_nodes: bool) -> Result<ControlPlane, E2eError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let began = Instant::now();
        let dir = std::env::temp_dir().join(format!(
            "{MARKER}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        crate::process::remove_stale_state_dirs();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io("create state dir"))?;
        let address = if real_nodes {
            cluster::ensure_api_address()?;
            cluster::API_ADDRESS
        } else {
            "127.0.0.1"
        };
        let extra_sans: Vec<String> = if real_nodes {
            vec![address.to_string()]
        } else {
            Vec::new()
        };
        let pki = pki::write_with_sans(&dir, &extra_sans)?;
        let token = random_token()?;
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{token},e2e-admin,e2e-admin,\"system:masters\"\n"),
        )
        .map_err(io("token file"))?;

        let mut processes = Vec::new();
        let etcd_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_args = args::etcd(&dir, &etcd_url, free_port()?);
        processes.push(supervise(&dir, "etcd", &etcd_args)?);

        let port = free_port_on(address)?;
        let server = format!("https://{address}:{port}");
        let apiserver_args =
            args::apiserver(&dir, &pki, &etcd_url, address, port, audit, real_nodes)?;
        processes.push(supervise(&dir, "kube-apiserver", &apiserver_args)?);
        let apiserver_args_kept = apiserver_args.clone();

        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server, &pki.ca_pem, &token))
            .map_err(io("write kubeconfig"))?;

        let mut cp = ControlPlane {
            dir,
            server,
            kubeconfig,
            pki,
            startup: Duration::ZERO,
            real_nodes,
            processes: Mutex::new(processes),
            apiserver_args: apiserver_args_kept,
            etcd_args: etcd_args.clone(),
        };
        cp.wait_ready("kube-apiserver", "/readyz")?;
        // The CRDs go in before kube-controller-manager starts: its garbage collector
        // builds its monitors from API discovery at start and learns resources added later
        // only at its next discovery sync (every 30 s, fixed in kube-controller-manager's
        // source). Installed first, MultusConfig owners are known from the start, and the
        // dependents of a deleted MultusConfig go within seconds.
        cp.install_crds()?;

        let kcm_args = args::controller_manager(&cp, free_port()?);
        let kcm = supervise(&cp.dir, "kube-controller-manager", &kcm_args)?;
        cp.lock().push(kcm);
        if real_nodes {
            let scheduler = cluster::start_scheduler(&cp.dir, &cp.kubeconfig)?;
            cp.lock().push(scheduler);
            cluster::bind_kubelet_client(&cp)?;
        }
        cp.wait_for_default_service_account()?;
        cp.startup = began.elapsed();
        eprintln!(
            "[multus-e2e] control plane ready at {} in {:.1}s (state in {})",
            cp.server,
            cp.startup.as_secs_f64(),
            cp.dir.display()
        );
        Ok(cp)
    }

    /// Host and port of the API server, as pods on real nodes reach it
    /// (`KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`; see `crate::cluster`).
    pub fn api_host_port(&self) -> (String, u16) {
        let authority = self.server.trim_start_matches("https://");
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "443"));
        (host.to_string(), port.parse().unwrap_or(443))
    }

    /// A kube client with admin rights, for the calling test's runtime.
    pub async fn client(&self) -> Result<Client, E2eError> {
        let kubeconfig =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|e| E2eError::Kube(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| E2eError::Kube(e.to_string()))?;
        Client::try_from(config).map_err(|e| E2eError::Kube(e.to_string()))
    }

    /// A kube client that authenticates with a bearer token.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, E2eError> {
        let kubeconfig =
            Kubeconfig::from_yaml(&kubeconfig_yaml(&self.server, &self.pki.ca_pem, token))
                .map_err(|e| E2eError::Kube(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| E2eError::Kube(e.to_string()))?;
        Client::try_from(config).map_err(|e| E2eError::Kube(e.to_string()))
    }

    /// Runs the upstream kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Result<std::process::Output, E2eError> {
        Command::new(bin("kubectl")?)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .map_err(io("run kubectl"))
    }

    /// [`Self::kubectl`] on the blocking pool, for async callers: kubectl may block for as
    /// long as it waits (`kubectl wait`), which must not stall their runtime.
    pub async fn kubectl_from_async(
        &'static self,
        args: &[&str],
    ) -> Result<std::process::Output, E2eError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.kubectl(&args)
        })
        .await
        .map_err(|e| E2eError::Io(format!("run kubectl: {e}")))?
    }

    fn wait_ready(&self, component: &str, path: &str) -> Result<(), E2eError> {
        let kubectl = bin("kubectl")?;
        let kubeconfig = self.kubeconfig.clone();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut processes = self.lock();
            if let Some(i) = (0..processes.len()).find(|&i| !processes[i].running()) {
                return Err(E2eError::Exited {
                    component: processes[i].name.clone(),
                    log: processes[i].log_tail(),
                });
            }
            let ok = Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["get", "--raw", path, "--request-timeout=5s"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self
                    .lock()
                    .iter()
                    .find(|p| p.name == component)
                    .map(Supervised::log_tail)
                    .unwrap_or_default();
                return Err(E2eError::NotReady {
                    component: component.to_string(),
                    timeout: READY_TIMEOUT,
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn install_crds(&self) -> Result<(), E2eError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("tokio runtime"))?;
        runtime.block_on(async { crate::crds::install(&self.client().await?).await })
    }

    /// The serviceaccount controller creates `default` in every namespace; waiting for it
    /// proves kube-controller-manager is working.
    fn wait_for_default_service_account(&self) -> Result<(), E2eError> {
        let kubectl = bin("kubectl")?;
        let kubeconfig = self.kubeconfig.clone();
        let ready = wait_until(READY_TIMEOUT, || {
            Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["get", "serviceaccount", "default", "-n", "default"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        if ready {
            Ok(())
        } else {
            let log = self
                .lock()
                .iter()
                .find(|p| p.name == "kube-controller-manager")
                .map(Supervised::log_tail)
                .unwrap_or_default();
            Err(E2eError::NotReady {
                component: "kube-controller-manager".into(),
                timeout: READY_TIMEOUT,
                log,
            })
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Supervised>> {
        // A panic while holding the lock leaves the list itself intact.
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every process, newest first, and removes the state directory.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.lock().pop() {
            p.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the upstream binary `name` under the watchdog, logging to `<dir>/<name>.log`.
fn supervise(dir: &Path, name: &str, args: &[String]) -> Result<Supervised, E2eError> {
    Supervised::start(name, &bin(name)?, args, &dir.join(format!("{name}.log")))
}

fn free_port() -> Result<u16, E2eError> {
    free_port_on("127.0.0.1")
}

/// A TCP port free on `address` now.
pub(crate) fn free_port_on(address: &str) -> Result<u16, E2eError> {
    let listener = TcpListener::bind((address, 0)).map_err(io("find a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("find a free port"))
}

//! A real node for end-to-end tests: containerd 1.6 and runc from Debian and the upstream
//! kubelet, registered with a control plane from
//! [`ControlPlane::start_for_real_nodes`], running real pods.
//!
//! Each node has a state directory (`/tmp/multus-e2e-<pid>-node-<name>`) and a private mount
//! namespace in which the paths a node's pods use through hostPath volumes (`/etc/cni`,
//! `/opt/cni`, `/var/lib/multus-node-agent`, `/var/lib/kubelet`, ...; see [`host::BINDS`])
//! are that directory's subdirectories: a pod writing /etc/cni/net.d/x on this node writes
//! `<dir>/etc-cni/net.d/x`, which [`RealNode::host_path`] names for the test. containerd and
//! the kubelet run in that namespace, so runc does too. Nothing mounted there is visible on
//! the host. The mount points are created on the host when missing (empty directories).
//!
//! Networking: the node's bridge `mo-node<n>` holds `198.18.<n>.1/24`, the node's InternalIP
//! (the kubelet listens there) and its pods' gateway. Pods get addresses from
//! `198.18.<n>.0/24` and a route to 198.18.0.0/15 only: no default route, no masquerade,
//! nothing leaves the machine. They reach the API server at [`crate::cluster::API_ADDRESS`];
//! there is no kube-proxy, so in-cluster clients need `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT` set to [`ControlPlane::api_host_port`].
//!
//! Every process of the node (containerd, its shims, the kubelet, containers) lives in the
//! node's cgroup `/<state dir name>`; stopping the node kills that subtree, so no container
//! outlives it, also when the test process dies (the namespace holder does it then).
//!
//! Side effects on the host beyond the state dir, all undone by [`RealNode::stop`], or, for
//! a node that was never stopped (a crash, or a shared node in a static), by the next node
//! start and by the last e2e test binary (`zz_no_leftovers`): the bridge, the cgroups. The kubelet also sets the
//! sysctls it sets on every node (vm.overcommit_memory=1, kernel.panic=10,
//! kernel.panic_on_oops=1, kernel.keys.root_maxkeys and root_maxbytes), which stay: the
//! alternative, `protectKernelDefaults`, only makes it refuse to start.

pub mod config;
pub mod host;
mod wait;

use wait::lease_renew_time;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::binaries::bin;
use crate::error::io;
use crate::oci;
use crate::process::{MARKER, Supervised};
use crate::{ControlPlane, E2eError};
use config::NodeFiles;

/// How long a node may take from start to Ready. Measured about 10 s on an idle 2-core VM
/// (see `e2e/tests/real_node.rs`); the kubelet's first status update waits for the runtime
/// and CNI to report ready, and with the tests of another binary and a Go or Rust build on
/// the same two cores every step can take several times as long.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The kubelet's port when it is free on the node's address.
const KUBELET_PORT: u16 = 10250;
/// Poll interval for cheap readiness checks.
const FAST_POLL: Duration = Duration::from_millis(100);

/// What a node is started with besides its name.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Labels the kubelet registers the node with (`--node-labels`; NodeRestriction allows
    /// no `kubernetes.io` or `k8s.io` prefixes but the kubelet's own).
    pub labels: Vec<(String, String)>,
    /// Image archives (`ctr images import` input) imported before the kubelet starts, next
    /// to the pause image, which is always imported.
    pub images: Vec<PathBuf>,
}

/// A running node. Dropping it stops it, deletes its Node object and removes its state.
pub struct RealNode {
    pub name: String,
    /// State directory.
    pub dir: PathBuf,
    /// InternalIP of the Node, address of its bridge and its pods' gateway.
    pub ip: Ipv4Addr,
    /// The pod subnet, `198.18.<n>.0/24`.
    pub pod_subnet: String,
    pub bridge: String,
    pub containerd_socket: PathBuf,
    /// Time from start to the Node being Ready.
    pub startup: Duration,
    /// The control plane's admin kubeconfig, to delete the Node object when stopping.
    admin_kubeconfig: PathBuf,
    cgroup: String,
    holder_pid: u32,
    /// Holder, containerd, kubelet, in start order.
    processes: Vec<Supervised>,
    /// How the kubelet was started (`bash` arguments), for [`RealNode::restart_kubelet`].
    kubelet_args: Vec<String>,
    stopped: bool,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl RealNode {
    /// Starts a node named `name` (a DNS label, unique on the cluster) for `cp`, which must
    /// come from [`ControlPlane::start_for_real_nodes`], and waits until it is Ready.
    pub fn start(
        cp: &ControlPlane,
        name: &str,
        options: &NodeOptions,
    ) -> Result<RealNode, E2eError> {
        if !cp.real_nodes {
            return Err(E2eError::Io(
                "real nodes need a control plane from ControlPlane::start_for_real_nodes".into(),
            ));
        }
        let began = Instant::now();
        let runc = find_in_path("runc")?;
        for tool in [
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "unshare",
            "nsenter",
        ] {
            find_in_path(tool)?;
        }
        host::remove_stale();
        let dir_name = format!("{MARKER}{}-node-{name}", std::process::id());
        let dir = std::env::temp_dir().join(&dir_name);
        let bridge = host::create_bridge(&dir)?;
        let mut node = RealNode {
            name: name.to_string(),
            dir: dir.clone(),
            ip: bridge.address,
            pod_subnet: bridge.subnet.clone(),
            bridge: bridge.name.clone(),
            containerd_socket: dir.join("containerd.sock"),
            startup: Duration::ZERO,
            admin_kubeconfig: cp.kubeconfig.clone(),
            cgroup: dir_name,
            holder_pid: 0,
            processes: Vec::new(),
            kubelet_args: Vec::new(),
            stopped: false,
        };
        // From here on, a failure drops the partly started node, which cleans up.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        let runtime_cgroup = host::create_cgroups(&node.cgroup)?;
        let kubelet_port = if TcpListener::bind((node.ip, KUBELET_PORT)).is_ok() {
            KUBELET_PORT
        } else {
            crate::control_plane::free_port_on(&node.ip.to_string())?
        };
        let cgroup_root = format!("/{}", node.cgroup);
        let files = NodeFiles {
            dir: &dir,
            containerd_socket: &node.containerd_socket,
            pause_image: oci::images::PAUSE,
            runc: &runc,
            cgroup_root: &cgroup_root,
            client_ca: &cp.pki.ca_cert,
            node_ip: node.ip,
            kubelet_port,
            bridge: &node.bridge,
            subnet: &node.pod_subnet,
        };
        config::write_all(&node, cp, &files)?;

        let (holder, enter) = host::write_scripts(&dir)?;
        let track = host::tracking_hierarchy()?.join(&node.cgroup);
        node.processes.push(Supervised::start(
            "node-namespace",
            Path::new("unshare"),
            &host::holder_args(&dir, &holder, &track),
            &dir.join("holder.log"),
        )?);
        let holder_pid = node.wait_for_holder()?;
        node.holder_pid = holder_pid;

        let enter_args = |program: &Path, args: &[String]| -> Vec<String> {
            let mut all = vec![
                enter.display().to_string(),
                holder_pid.to_string(),
                runtime_cgroup.display().to_string(),
                program.display().to_string(),
            ];
            all.extend_from_slice(args);
            all
        };
        let containerd_args = enter_args(
            Path::new("containerd"),
            &[format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
        );
        node.processes.push(Supervised::start(
            "containerd",
            Path::new("bash"),
            &containerd_args,
            &dir.join("containerd.log"),
        )?);
        node.wait_for_containerd()?;
        let pause = oci::images::pause(&dir)?;
        node.import_image(&pause.path)?;
        for archive in &options.images {
            node.import_image(archive)?;
        }

        let mut kubelet_args = vec![
            format!("--config={}", dir.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
            format!("--hostname-override={name}"),
            format!("--node-ip={}", node.ip),
        ];
        if !options.labels.is_empty() {
            let labels: Vec<String> = options
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            kubelet_args.push(format!("--node-labels={}", labels.join(",")));
        }
        node.kubelet_args = enter_args(&bin("kubelet")?, &kubelet_args);
        node.start_kubelet()?;
        node.wait_ready()?;
        node.startup = began.elapsed();
        eprintln!(
            "[multus-e2e] node {name} ready in {:.1}s (InternalIP {}, pods {}, state in {})",
            node.startup.as_secs_f64(),
            node.ip,
            node.pod_subnet,
            dir.display()
        );
        Ok(node)
    }

    /// Where a path on the node is on the host: `/etc/cni/net.d/x` is
    /// `<dir>/etc-cni/net.d/x`. Only paths under [`host::BINDS`] have their own copy.
    pub fn host_path(&self, node_path: &str) -> Result<PathBuf, E2eError> {
        for (source, target) in host::BINDS {
            if let Some(rest) = node_path.strip_prefix(target)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                if rest.split('/').any(|part| part == "..") {
                    break;
                }
                return Ok(self.dir.join(source).join(rest.trim_start_matches('/')));
            }
        }
        Err(E2eError::Io(format!(
            "{node_path} is the host's own path on node {}, not the node's",
            self.name
        )))
    }

    /// Imports an image archive into the node's containerd for the kubelet (CRI namespace).
    pub fn import_image(&self, archive: &Path) -> Result<(), E2eError> {
        oci::import(Path::new("ctr"), &self.containerd_socket, archive)
    }

    /// A command that runs `program` in the node's mount namespace (to see what its
    /// containerd and kubelet see, such as /run/netns).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder_pid))
            .arg("--")
            .arg(program);
        command
    }

    /// Restarts the kubelet as a node upgrade or crash would: stops it (containers keep
    /// running: they belong to containerd's shims) and starts it with the same flags, then
    /// waits until the new kubelet has renewed the node's Lease.
    pub fn restart_kubelet(&mut self) -> Result<(), E2eError> {
        if let Some(mut kubelet) = self.processes.pop_if(|p| p.name == "kubelet") {
            kubelet.stop();
        }
        let (kubeconfig, name) = (self.admin_kubeconfig.clone(), self.name.clone());
        let before = lease_renew_time(&kubeconfig, &name);
        self.start_kubelet()?;
        // The kubelet renews its Lease right after it registers, then every 10 s.
        self.wait_for("kubelet", READY_TIMEOUT, Duration::from_millis(500), || {
            let now = lease_renew_time(&kubeconfig, &name);
            !now.is_empty() && now != before
        })
    }

    fn start_kubelet(&mut self) -> Result<(), E2eError> {
        let log = self.dir.join("kubelet.log");
        // Starting truncates the log; the previous run's stays in kubelet.previous.log.
        let previous = std::fs::read(&log).unwrap_or_default();
        let kubelet = Supervised::start("kubelet", Path::new("bash"), &self.kubelet_args, &log)?;
        if !previous.is_empty() {
            let _ = std::fs::write(self.dir.join("kubelet.previous.log"), previous);
        }
        self.processes.push(kubelet);
        Ok(())
    }

    /// Stops the kubelet, containerd and every container, deletes the Node object, and
    /// removes the bridge, the cgroups and the state directory.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // The kubelet first, so it restarts nothing; the holder last: it kills what is left
        // in the node's cgroups (shims, containers).
        while let Some(mut p) = self.processes.pop() {
            p.stop();
        }
        if let Err(e) = host::remove_cgroups(&self.cgroup) {
            eprintln!("[multus-e2e] node {}: {e}", self.name);
        }
        host::delete_bridge(&self.bridge);
        if let Ok(kubectl) = bin("kubectl") {
            let _ = Command::new(kubectl)
                .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
                .args([
                    "delete",
                    "node",
                    &self.name,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The absolute path of `program` from PATH, or an error naming the package to install.
fn find_in_path(program: &str) -> Result<PathBuf, E2eError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            E2eError::Binaries(format!(
                "{program} not found; e2e/testenv/node-packages.sh installs containerd, runc and the rest"
            ))
        })
}

//! The host side of a real node: the mount namespace that gives it its own /etc/cni,
//! /opt/cni, /var/lib/kubelet and the rest, its cgroup subtree (which holds every process
//! of the node, so stopping it kills them all), and its bridge and pod subnet.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::E2eError;
use crate::error::io;
use crate::process::{MARKER, owner_gone, wait_until};

/// Node paths that are bind mounts of the node's own directories inside its mount
/// namespace: `(directory under the node's state dir, path on the node)`. The chart's
/// hostPath volumes use the first four.
pub const BINDS: [(&str, &str); 8] = [
    ("etc-cni", "/etc/cni"),
    ("opt-cni", "/opt/cni"),
    ("var-lib-multus-node-agent", "/var/lib/multus-node-agent"),
    ("var-lib-kubelet", "/var/lib/kubelet"),
    // host-local IPAM's leases.
    ("var-lib-cni", "/var/lib/cni"),
    // Pod logs (/var/log/pods, /var/log/containers).
    ("var-log", "/var/log"),
    // containerd 1.6 puts shim sockets in /run/containerd/s whatever its state dir.
    ("run-containerd", "/run/containerd"),
    // Pod network namespaces, so the host's `ip netns` never lists them.
    ("run-netns", "/run/netns"),
];

/// Runs in the new mount namespace (`unshare --mount`, every mount private, so nothing
/// propagates to the host): binds the node's directories, makes every mount shared inside
/// the namespace (HostToContainer and Bidirectional volumes need a shared source), writes
/// its pid, and waits. On TERM it kills every process of the node's cgroup subtree.
/// $1: state dir, $2: the subtree in the tracking hierarchy, then `source=target` pairs.
const HOLDER: &str = r#"
set -eu
node=$1 track=$2; shift 2
for pair in "$@"; do
  mkdir -p "${pair%%=*}" "${pair#*=}"
  mount --bind "${pair%%=*}" "${pair#*=}"
done
mount --make-rshared /
kill_all() {
  for _ in $(seq 1 100); do
    pids=$(find "$track" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.05
  done
}
sleeper=
trap 'kill_all; [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM INT
echo $$ >"$node/holder.pid.tmp"
mv "$node/holder.pid.tmp" "$node/holder.pid"
# Short sleeps: if this shell is killed, its sleep keeps the namespace for 5 s at most.
while :; do sleep 5 & sleeper=$!; wait "$sleeper" || true; done
"#;

/// Starts a command of the node: joins the node's cgroup (`$2`, a directory in the
/// tracking hierarchy) and the holder's (`$1`) mount namespace, then runs the rest.
const ENTER: &str = r#"
set -eu
holder=$1 cgroup=$2; shift 2
echo $$ >"$cgroup/cgroup.procs"
exec nsenter --mount="/proc/$holder/ns/mnt" -- "$@"
"#;

/// Writes the holder and enter scripts into `dir`; returns their paths.
pub fn write_scripts(dir: &Path) -> Result<(PathBuf, PathBuf), E2eError> {
    let holder = dir.join("holder.sh");
    let enter = dir.join("enter.sh");
    std::fs::write(&holder, HOLDER).map_err(io(holder.display()))?;
    std::fs::write(&enter, ENTER).map_err(io(enter.display()))?;
    Ok((holder, enter))
}

/// `unshare` arguments that run the holder for the node in `dir`.
pub fn holder_args(dir: &Path, holder: &Path, track: &Path) -> Vec<String> {
    let mut args = vec![
        "--mount".to_string(),
        "--propagation".into(),
        "private".into(),
        "bash".into(),
        holder.display().to_string(),
        dir.display().to_string(),
        track.display().to_string(),
    ];
    for (source, target) in BINDS {
        args.push(format!("{}={target}", dir.join(source).display()));
    }
    args
}

/// The cgroup hierarchies mounted on this machine: every cgroup v1 controller directory
/// under /sys/fs/cgroup, or /sys/fs/cgroup itself under cgroup v2.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    found.sort();
    found
}

/// The hierarchy whose subtree of a node lists all of its processes: `pids` (every
/// container runtime and the kubelet place pods there), or the v2 tree.
pub fn tracking_hierarchy() -> Result<PathBuf, E2eError> {
    let pids = Path::new("/sys/fs/cgroup/pids");
    let root = Path::new("/sys/fs/cgroup");
    if pids.join("cgroup.procs").exists() {
        Ok(pids.to_path_buf())
    } else if root.join("cgroup.procs").exists() {
        Ok(root.to_path_buf())
    } else {
        Err(E2eError::Io(
            "no pids cgroup hierarchy and no cgroup v2 at /sys/fs/cgroup".into(),
        ))
    }
}

/// Creates the node's cgroup `name` (the kubelet's cgroupRoot must exist in every
/// hierarchy) and `name/runtime` for containerd and the kubelet in the tracking hierarchy.
/// Returns that runtime cgroup's directory.
pub fn create_cgroups(name: &str) -> Result<PathBuf, E2eError> {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(name);
        std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        // A v1 cpuset starts empty and takes no tasks until given CPUs and memory nodes.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = hierarchy.join(file);
            if parent.exists() {
                let value = std::fs::read_to_string(&parent).map_err(io(parent.display()))?;
                std::fs::write(dir.join(file), value.trim()).map_err(io(dir.display()))?;
            }
        }
    }
    let runtime = tracking_hierarchy()?.join(name).join("runtime");
    std::fs::create_dir_all(&runtime).map_err(io(runtime.display()))?;
    Ok(runtime)
}

/// Kills every process in the node's cgroup subtree and removes the subtree from every
/// hierarchy; the error names what is left.
pub fn remove_cgroups(name: &str) -> Result<(), E2eError> {
    let track = tracking_hierarchy()?.join(name);
    let gone = wait_until(Duration::from_secs(10), || {
        let pids = procs_under(&track);
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pids.is_empty()
    });
    let mut left = Vec::new();
    for hierarchy in hierarchies() {
        let root = hierarchy.join(name);
        // Children first; a cgroup whose last process just exited may be busy briefly.
        let removed = wait_until(Duration::from_secs(5), || {
            let mut dirs = Vec::new();
            collect_dirs(&root, &mut dirs);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            dirs.iter().all(|d| std::fs::remove_dir(d).is_ok())
        });
        if !removed && root.exists() {
            left.push(root.display().to_string());
        }
    }
    if gone && left.is_empty() {
        Ok(())
    } else {
        Err(E2eError::Io(format!(
            "node cgroups not removed (processes left: {}): {}",
            !gone,
            left.join(", ")
        )))
    }
}

fn procs_under(dir: &Path) -> Vec<i32> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// A node's bridge: its pod network's gateway and the node's InternalIP.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    /// `198.18.<n>.1`.
    pub address: Ipv4Addr,
    /// `198.18.<n>.0/24`.
    pub subnet: String,
}

/// Bridge names are `mo-node<n>`; the number also picks the subnet 198.18.<n>.0/24.
const BRIDGE_PREFIX: &str = "mo-node";

/// Creates the first free `mo-node<n>` bridge (creation is the lock between test
/// processes), tags it with `owner` (the node's state dir, for stale cleanup), gives it
/// `198.18.<n>.1/24` and sets it up.
pub fn create_bridge(owner: &Path) -> Result<Bridge, E2eError> {
    for n in 1..=254u8 {
        let name = format!("{BRIDGE_PREFIX}{n}");
        let added = ip(&["link", "add", &name, "type", "bridge"])?;
        if !added.status.success() {
            continue;
        }
        let address = Ipv4Addr::new(198, 18, n, 1);
        let bridge = Bridge {
            name: name.clone(),
            address,
            subnet: format!("198.18.{n}.0/24"),
        };
        let owner = owner.display().to_string();
        for args in [
            vec!["link", "set", "dev", &name, "alias", &owner],
            vec!["addr", "add", &format!("{address}/24"), "dev", &name],
            vec!["link", "set", "dev", &name, "up"],
        ] {
            let out = ip(&args)?;
            if !out.status.success() {
                delete_bridge(&name);
                return Err(E2eError::Io(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        return Ok(bridge);
    }
    Err(E2eError::Io(format!(
        "no free {BRIDGE_PREFIX}<n> bridge name (1..254 taken)"
    )))
}

/// Deletes a bridge (its veths and addresses go with it); a missing one is no error.
pub fn delete_bridge(name: &str) {
    let _ = ip(&["link", "del", name]);
}

fn ip(args: &[&str]) -> Result<std::process::Output, E2eError> {
    Command::new("ip")
        .args(args)
        .output()
        .map_err(io("run ip (iproute2)"))
}

/// The bridges of nodes whose test process is gone (the owner is in the bridge's alias).
fn stale_bridges() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let alias = std::fs::read_to_string(entry.path().join("ifalias")).unwrap_or_default();
            (name.starts_with(BRIDGE_PREFIX) && owner_gone(alias.trim())).then_some(name)
        })
        .collect()
}

/// The cgroups, in every hierarchy, of nodes whose test process is gone.
fn stale_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in hierarchies() {
        let Ok(entries) = std::fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(MARKER) && owner_gone(&name) {
                found.push(entry.path());
            }
        }
    }
    found
}

/// What nodes of test processes that are gone left on the host: their bridges by name and
/// their cgroups by path. A node that lives in a static is never stopped, so this is also
/// what a finished test binary's shared node leaves.
pub fn stale() -> Vec<String> {
    let cgroups = stale_cgroups().into_iter().map(|p| p.display().to_string());
    stale_bridges().into_iter().chain(cgroups).collect()
}

/// Removes what [`stale`] lists, killing whatever still runs in those cgroups.
pub fn remove_stale() {
    for bridge in stale_bridges() {
        delete_bridge(&bridge);
    }
    let names: std::collections::BTreeSet<String> = stale_cgroups()
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for name in names {
        if let Err(e) = remove_cgroups(&name) {
            eprintln!("[multus-e2e] stale node {name}: {e}");
        }
    }
}

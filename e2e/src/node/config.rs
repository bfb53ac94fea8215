//! The files a real node's components read: containerd's config, the KubeletConfiguration,
//! the primary CNI network and resolv.conf (pure text from the node's parameters), and
//! [`write_all`], which writes them with the kubelet's credentials and the CNI plugins.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{RealNode, host};
use crate::binaries::bin_dir;
use crate::error::io;
use crate::{ControlPlane, E2eError, pki};

/// What the node files are made from.
#[derive(Debug, Clone)]
pub struct NodeFiles<'a> {
    /// The node's state directory.
    pub dir: &'a Path,
    pub containerd_socket: &'a Path,
    pub pause_image: &'a str,
    pub runc: &'a Path,
    /// The kubelet's cgroupRoot (`/<name>`).
    pub cgroup_root: &'a str,
    pub client_ca: &'a Path,
    pub node_ip: Ipv4Addr,
    pub kubelet_port: u16,
    pub bridge: &'a str,
    pub subnet: &'a str,
}

/// containerd 1.6 (config version 2): its own root, socket and shim sockets; the CRI
/// plugin with runc through cgroupfs, the node's CNI directories and the pause image.
pub fn containerd_toml(f: &NodeFiles) -> String {
    let dir = f.dir.display();
    let socket = f.containerd_socket.display();
    let runc = f.runc.display();
    let pause = f.pause_image;
    format!(
        r#"version = 2
root = "{dir}/containerd-root"
# Inside the node's mount namespace: {dir}/run-containerd.
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  # Outside the namespace's binds, so tests reach it, and the shims' command lines carry
  # the state dir (process::leftovers finds them).
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Without CAP_SYS_RESOURCE runc cannot lower the OOM score adjustment below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"#
    )
}

/// The kubelet's configuration: cgroupfs under the node's own cgroup root (cgroup v1 is
/// what this machine has), client certificates of the test CA and webhook authorization,
/// no eviction or image garbage collection worth the name (a busy test VM must not lose
/// its pods, and images imported for `imagePullPolicy: Never` must never be collected), and
/// no static pods. Disk thresholds are absolute: a percentage of a large, mostly full test
/// disk evicted the chart's pods and collected their images under disk pressure.
pub fn kubelet_yaml(f: &NodeFiles) -> String {
    let dir = f.dir.display();
    let socket = f.containerd_socket.display();
    let ca = f.client_ca.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
address: {ip}
port: {port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
rotateCertificates: false
serverTLSBootstrap: false
resolvConf: {dir}/resolv.conf
volumePluginDir: {dir}/volume-plugins
evictionHard:
  memory.available: 1Mi
  nodefs.available: 64Mi
  nodefs.inodesFree: 1%
  imagefs.available: 64Mi
  imagefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
"#,
        cgroup_root = f.cgroup_root,
        ip = f.node_ip,
        port = f.kubelet_port,
    )
}

/// The node's primary network: the reference bridge plugin on the node's bridge with
/// host-local addresses from its /24. Pods get a route to 198.18.0.0/15 only (the API
/// address, other pods) through the bridge's address, and no default route, so nothing a
/// pod sends leaves the machine. `isGateway` stays off because the bridge already has the
/// gateway address and the plugin would otherwise switch on the host's IPv4 forwarding.
pub fn bridge_conflist(f: &NodeFiles) -> String {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "multus-e2e-bridge",
        "plugins": [{
            "type": "bridge",
            "bridge": f.bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": f.subnet, "gateway": f.node_ip.to_string() }]],
                "routes": [{ "dst": "198.18.0.0/15", "gw": f.node_ip.to_string() }],
            },
        }],
    });
    format!("{conf:#}\n")
}

/// Pods of this node resolve nothing: their nameserver is their own loopback, which
/// answers at once with "connection refused" instead of timing out.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n";

/// Writes the node's config files, the kubelet's kubeconfig with its client certificate,
/// the node's directories, the CNI plugins and the primary network into the state dir.
pub fn write_all(node: &RealNode, cp: &ControlPlane, files: &NodeFiles) -> Result<(), E2eError> {
    let write = |path: PathBuf, text: &str| std::fs::write(&path, text).map_err(io(path.display()));
    write(node.dir.join("containerd.toml"), &containerd_toml(files))?;
    write(node.dir.join("kubelet.yaml"), &kubelet_yaml(files))?;
    write(node.dir.join("resolv.conf"), RESOLV_CONF)?;
    // The Node authorizer and NodeRestriction know a kubelet by this identity.
    let (cert, key) = pki::client_cert(
        &cp.pki,
        &format!("system:node:{}", node.name),
        Some("system:nodes"),
    )?;
    write(
        node.dir.join("kubelet.kubeconfig"),
        &pki::kubeconfig_cert_yaml(&cp.server, &cp.pki.ca_pem, &cert, &key),
    )?;
    for (source, _) in host::BINDS {
        let d = node.dir.join(source);
        std::fs::create_dir_all(&d).map_err(io(d.display()))?;
    }
    for d in ["/etc/cni/net.d", "/etc/cni/multus/net.d", "/opt/cni/bin"] {
        let d = node.host_path(d)?;
        std::fs::create_dir_all(&d).map_err(io(d.display()))?;
    }
    let plugin_dir = node.dir.join("volume-plugins");
    std::fs::create_dir_all(&plugin_dir).map_err(io(plugin_dir.display()))?;
    let plugins = bin_dir()?.join("cni");
    let cni_bin = node.host_path("/opt/cni/bin")?;
    for entry in std::fs::read_dir(&plugins).map_err(io(plugins.display()))? {
        let entry = entry.map_err(io(plugins.display()))?;
        // Copies, not links: a pod writing /opt/cni/bin must not touch the cache.
        std::fs::copy(entry.path(), cni_bin.join(entry.file_name()))
            .map_err(io(entry.path().display()))?;
    }
    write(
        node.host_path("/etc/cni/net.d/10-bridge.conflist")?,
        &bridge_conflist(files),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> NodeFiles<'static> {
        NodeFiles {
            dir: Path::new("/tmp/multus-e2e-1-node-n"),
            containerd_socket: Path::new("/tmp/multus-e2e-1-node-n/containerd.sock"),
            pause_image: "localhost/pause:test",
            runc: Path::new("/usr/sbin/runc"),
            cgroup_root: "/multus-e2e-1-node-n",
            client_ca: Path::new("/tmp/ca.crt"),
            node_ip: Ipv4Addr::new(198, 18, 7, 1),
            kubelet_port: 10250,
            bridge: "mo-node7",
            subnet: "198.18.7.0/24",
        }
    }

    #[test]
    fn pods_route_only_to_the_test_range_through_the_node_without_masquerade() {
        let conf: serde_json::Value = serde_json::from_str(&bridge_conflist(&files())).unwrap();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["bridge"], "mo-node7");
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["isGateway"], false);
        assert_eq!(
            bridge["ipam"]["routes"],
            serde_json::json!([{ "dst": "198.18.0.0/15", "gw": "198.18.7.1" }])
        );
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "198.18.7.0/24");
    }

    #[test]
    fn the_kubelet_uses_cgroupfs_under_the_node_root_and_the_test_ca() {
        let config: serde_json::Value = serde_saphyr::from_str(&kubelet_yaml(&files())).unwrap();
        assert_eq!(config["cgroupDriver"], "cgroupfs");
        assert_eq!(config["cgroupRoot"], "/multus-e2e-1-node-n");
        assert_eq!(config["failCgroupV1"], false);
        assert_eq!(config["address"], "198.18.7.1");
        assert_eq!(config["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(
            config["authentication"]["x509"]["clientCAFile"],
            "/tmp/ca.crt"
        );
        assert_eq!(config["authorization"]["mode"], "Webhook");
        assert_eq!(
            config["containerRuntimeEndpoint"],
            "unix:///tmp/multus-e2e-1-node-n/containerd.sock"
        );
    }

    #[test]
    fn containerd_serves_the_cri_with_runc_the_pause_image_and_the_node_cni_dirs() {
        let toml = containerd_toml(&files());
        for line in [
            r#"address = "/tmp/multus-e2e-1-node-n/containerd.sock""#,
            r#"sandbox_image = "localhost/pause:test""#,
            "restrict_oom_score_adj = true",
            r#"runtime_type = "io.containerd.runc.v2""#,
            r#"BinaryName = "/usr/sbin/runc""#,
            "SystemdCgroup = false",
            r#"bin_dir = "/opt/cni/bin""#,
            r#"conf_dir = "/etc/cni/net.d""#,
        ] {
            assert!(toml.contains(line), "{line} missing from\n{toml}");
        }
    }
}

//! Where things are on the node: the host directories and files a MultusConfig names
//! (`paths`), and the same places as `multus-daemon` sees them in thick mode (`thick`),
//! with their defaults and the path rules the API server enforces.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Paths as `multus-daemon` sees them. The defaults match the chart's DaemonSet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThickOptions {
    /// Where the daemon container mounts the host's root for reading files (`/host`): host
    /// path `/etc/cni/net.d` is `/host/etc/cni/net.d` to the daemon.
    #[serde(default = "default_daemon_path_prefix")]
    #[x_kube(validation = Rule::new("self == '' || (self.startsWith('/') && !self.endsWith('/'))")
        .message("daemonPathPrefix must be empty or an absolute path without a trailing slash"))]
    #[schemars(length(max = 1024))]
    pub daemon_path_prefix: String,
    /// Host directory of the daemon socket (`daemonSocketDir` of the shim).
    #[serde(default = "default_socket_dir")]
    #[x_kube(validation = absolute_path_rule("socketDir"))]
    #[schemars(length(max = 1024))]
    pub socket_dir: String,
    /// Where the daemon sees the host root to exec plugins in (`chrootDir`).
    #[serde(default = "default_chroot_dir")]
    #[x_kube(validation = absolute_path_rule("chrootDir"))]
    #[schemars(length(max = 1024))]
    pub chroot_dir: String,
}

fn default_daemon_path_prefix() -> String {
    "/host".into()
}
fn default_socket_dir() -> String {
    "/run/multus".into()
}
fn default_chroot_dir() -> String {
    "/hostroot".into()
}

impl Default for ThickOptions {
    fn default() -> Self {
        Self {
            daemon_path_prefix: default_daemon_path_prefix(),
            socket_dir: default_socket_dir(),
            chroot_dir: default_chroot_dir(),
        }
    }
}

/// Host directories and files.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.cniConfDir != self.multusConfDir")
        .message("multusConfDir must differ from cniConfDir"),
    validation = Rule::new("!self.kubeconfigPath.endsWith('.conf') && !self.kubeconfigPath.endsWith('.conflist') && !self.kubeconfigPath.endsWith('.json')")
        .message("kubeconfigPath must not end in .conf, .conflist or .json (libcni would load it as a network config)")
)]
pub struct Paths {
    /// Where kubelet's runtime reads CNI configs.
    #[serde(default = "default_cni_conf_dir")]
    #[x_kube(validation = absolute_path_rule("cniConfDir"))]
    #[schemars(length(max = 1024))]
    pub cni_conf_dir: String,
    /// Where file-backed delegates live (Multus `confDir`).
    #[serde(default = "default_multus_conf_dir")]
    #[x_kube(validation = absolute_path_rule("multusConfDir"))]
    #[schemars(length(max = 1024))]
    pub multus_conf_dir: String,
    /// CNI plugin binaries (Multus `binDir`).
    #[serde(default = "default_cni_bin_dir")]
    #[x_kube(validation = absolute_path_rule("cniBinDir"))]
    #[schemars(length(max = 1024))]
    pub cni_bin_dir: String,
    /// The host kubeconfig file.
    #[serde(default = "default_kubeconfig_path")]
    #[x_kube(validation = absolute_path_rule("kubeconfigPath"))]
    #[schemars(length(max = 1024))]
    pub kubeconfig_path: String,
}

/// The admission rule of a path the agent writes or the daemon mounts: absolute, and
/// spelled one way only, so that two spellings can never name one directory.
fn absolute_path_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(
        "self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..') && !self.contains('//') && !self.contains(' ')",
    )
    .message(kube::core::Message::Message(format!(
        "{field} must be an absolute path without '..', '//' or spaces"
    )))
}

/// The admission rule of a host file that only Multus opens (its log, the readiness
/// indicator): an absolute path, since Multus would resolve a relative one against the
/// working directory of whichever runtime calls it.
pub(super) fn absolute_file_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new("self.startsWith('/')").message(kube::core::Message::Message(format!(
        "{field} must be an absolute path"
    )))
}

pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_MULTUS_CONF_DIR: &str = "/etc/cni/multus/net.d";
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const DEFAULT_KUBECONFIG_PATH: &str = "/etc/cni/net.d/multus.d/multus.kubeconfig";

fn default_cni_conf_dir() -> String {
    DEFAULT_CNI_CONF_DIR.into()
}
fn default_multus_conf_dir() -> String {
    DEFAULT_MULTUS_CONF_DIR.into()
}
fn default_cni_bin_dir() -> String {
    DEFAULT_CNI_BIN_DIR.into()
}
fn default_kubeconfig_path() -> String {
    DEFAULT_KUBECONFIG_PATH.into()
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            cni_conf_dir: default_cni_conf_dir(),
            multus_conf_dir: default_multus_conf_dir(),
            cni_bin_dir: default_cni_bin_dir(),
            kubeconfig_path: default_kubeconfig_path(),
        }
    }
}

//! The Multus config (`00-multus.conf` or `.conflist`) and, in thick mode, the
//! multus-daemon configuration. Keys follow Multus' own NetConf names.

use serde_json::{Map, Value, json};

use multus_crds::bundle::{MULTUS_CONF_NAME, MULTUS_CONFLIST_NAME};
use multus_crds::multus_config::{LogLevel, Mode, MultusConfigSpec};

/// Multus' default network name.
pub const DEFAULT_NETWORK_NAME: &str = "multus-cni-network";

/// A primary given as a NetworkAttachmentDefinition, resolved by the renderer.
pub struct PrimaryAttachment<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// Capabilities the NAD's config declares.
    pub capabilities: Vec<String>,
}

/// File name of the Multus config for the configured cniVersion.
pub fn file_name(spec: &MultusConfigSpec) -> &'static str {
    if spec.multus.cni_version.requires_list() {
        MULTUS_CONFLIST_NAME
    } else {
        MULTUS_CONF_NAME
    }
}

/// The Multus config. For a NAD primary it is complete; otherwise the agent adds the primary
/// (thin: `delegates`, thick: `clusterNetwork`) and its capabilities.
pub fn multus_config(spec: &MultusConfigSpec, primary: Option<&PrimaryAttachment<'_>>) -> Value {
    let m = &spec.multus;
    let mut plugin = Map::new();
    match spec.mode {
        Mode::Thin => {
            plugin.insert("type".into(), json!("multus"));
            if spec.kubeconfig.enabled {
                plugin.insert("kubeconfig".into(), json!(spec.paths.kubeconfig_path));
            }
            // Always explicit: upstream's thin entrypoint wrote the wrong key and left
            // confDir at its default.
            plugin.insert("confDir".into(), json!(spec.paths.multus_conf_dir));
            plugin.insert("binDir".into(), json!(spec.paths.cni_bin_dir));
            insert_lookup_settings(&mut plugin, spec, "");
        }
        Mode::Thick => {
            plugin.insert("type".into(), json!("multus-shim"));
            plugin.insert("daemonSocketDir".into(), json!(spec.thick.socket_dir));
        }
    }
    insert_log_settings(&mut plugin, spec);

    let mut capabilities: Map<String, Value> = primary
        .map(|p| {
            p.capabilities
                .iter()
                .map(|c| (c.clone(), Value::Bool(true)))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &m.capabilities {
        capabilities.insert(k.clone(), Value::Bool(*v));
    }
    if !capabilities.is_empty() {
        plugin.insert("capabilities".into(), Value::Object(capabilities));
    }
    if let Some(p) = primary {
        plugin.insert("clusterNetwork".into(), json!(p.name));
        if spec.mode == Mode::Thin {
            plugin.insert("multusNamespace".into(), json!(p.namespace));
        }
    }

    let name = m
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_NETWORK_NAME.into());
    let version = m.cni_version.as_str();
    if m.cni_version.requires_list() {
        json!({ "cniVersion": version, "name": name, "plugins": [Value::Object(plugin)] })
    } else {
        plugin.insert("cniVersion".into(), json!(version));
        plugin.insert("name".into(), json!(name));
        Value::Object(plugin)
    }
}

/// The multus-daemon configuration for thick mode. Every path is as the daemon sees it
/// through its host mount.
///
/// The daemon must neither write nor delete the agent's `00-multus` file, and it must stay
/// up. With `multusConfigFile` naming a file, upstream's daemon (v4.0 to v4.3.0 at least,
/// upstream #1366) exits right after it starts serving, so every pod ADD then fails. So it
/// runs in `auto` mode, but pointed away from the CNI config directory: its "primary" is
/// this very file (`multusMasterCNI`, found in `multusAutoconfigDir` = the `multus.d`
/// subdirectory), and the config it generates from it lands in `cniConfigDir` = `multus.d`
/// too, which libcni never reads; it deletes only that one on exit. The shim sends our
/// config with every request, so the generated one is never used.
pub fn daemon_config(spec: &MultusConfigSpec, primary: Option<&PrimaryAttachment<'_>>) -> Value {
    let view = spec.thick.daemon_path_prefix.as_str();
    let conf_dir = &spec.paths.cni_conf_dir;
    let mut config = Map::new();
    config.insert("cniVersion".into(), json!(spec.multus.cni_version.as_str()));
    config.insert("chrootDir".into(), json!(spec.thick.chroot_dir));
    let own_dir = format!("{view}{conf_dir}/{DAEMON_COPY_SUBDIR}");
    config.insert("cniConfigDir".into(), json!(own_dir));
    config.insert("multusConfigFile".into(), json!("auto"));
    config.insert("multusAutoconfigDir".into(), json!(own_dir));
    config.insert(
        "multusMasterCNI".into(),
        json!(multus_crds::bundle::DAEMON_CONFIG_NAME),
    );
    config.insert(
        "socketDir".into(),
        json!(format!("{view}{}", spec.thick.socket_dir)),
    );
    config.insert(
        "confDir".into(),
        json!(format!("{view}{}", spec.paths.multus_conf_dir)),
    );
    // Plugins run chrooted into the host root, so binDir stays a host path.
    config.insert("binDir".into(), json!(spec.paths.cni_bin_dir));
    insert_lookup_settings(&mut config, spec, view);
    insert_log_settings(&mut config, spec);
    if let Some(p) = primary {
        config.insert("multusNamespace".into(), json!(p.namespace));
    }
    Value::Object(config)
}

/// Subdirectory of `cniConfDir` that holds the daemon config and the config the daemon
/// generates; libcni only reads files directly in `cniConfDir`.
pub const DAEMON_COPY_SUBDIR: &str = "multus.d";

/// Settings that decide where Multus looks networks up.
fn insert_lookup_settings(map: &mut Map<String, Value>, spec: &MultusConfigSpec, view: &str) {
    let m = &spec.multus;
    if let Some(v) = m.namespace_isolation {
        map.insert("namespaceIsolation".into(), json!(v));
    }
    if !m.global_namespaces.is_empty() {
        map.insert(
            "globalNamespaces".into(),
            json!(m.global_namespaces.join(",")),
        );
    }
    if !m.system_namespaces.is_empty() {
        map.insert("systemNamespaces".into(), json!(m.system_namespaces));
    }
    if let Some(ns) = &m.multus_namespace {
        map.insert("multusNamespace".into(), json!(ns));
    }
    if !m.default_networks.is_empty() {
        map.insert("defaultNetworks".into(), json!(m.default_networks));
    }
    if let Some(file) = &m.readiness_indicator_file {
        // Multus spells this key in lower case.
        map.insert(
            "readinessindicatorfile".into(),
            json!(format!("{view}{file}")),
        );
    }
    if let Some(v) = m.retry_delete_on_error {
        map.insert("retryDeleteOnError".into(), json!(v));
    }
}

fn insert_log_settings(map: &mut Map<String, Value>, spec: &MultusConfigSpec) {
    let m = &spec.multus;
    if let Some(level) = m.log_level {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Error => "error",
            LogLevel::Panic => "panic",
        };
        map.insert("logLevel".into(), json!(level));
    }
    if let Some(file) = &m.log_file {
        map.insert("logFile".into(), json!(file));
    }
    if let Some(v) = m.log_to_stderr {
        map.insert("logToStderr".into(), json!(v));
    }
}

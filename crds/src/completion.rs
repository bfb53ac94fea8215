//! Completing the Multus config with the primary network chosen on the node. The operator
//! cannot see node files, so for `auto` and `file` primaries it renders the config without
//! the primary; the agent (and `multus-operator render --primary-file`) finishes it here.

use serde_json::{Map, Value};

use crate::bundle::BundleManifest;
use crate::cni::{self, ConfigError};
use crate::multus_config::Mode;

/// Errors completing a Multus config.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error("the Multus config template is not a JSON object: {0}")]
    Template(String),
    #[error("primary config {name} is not a valid CNI config: {}", cni::describe(.errors))]
    InvalidPrimary {
        name: String,
        errors: Vec<ConfigError>,
    },
    #[error("could not serialize the completed config: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The primary network as found on the node.
#[derive(Clone, Copy, Debug)]
pub struct Primary<'a> {
    /// Host directory holding the file.
    pub dir: &'a str,
    /// File name.
    pub name: &'a str,
    /// File content.
    pub text: &'a str,
}

/// A bundle's Multus config as the agent writes it: completed with the primary found on the
/// node (`name`, `text`) for an `auto` or `file` rule; as rendered for a NAD primary, which
/// the operator rendered complete.
pub fn complete_for_manifest(
    manifest: &BundleManifest,
    template: &str,
    name: &str,
    text: &str,
) -> Result<String, CompletionError> {
    match manifest.primary.node_dir() {
        None => Ok(template.to_string()),
        Some(dir) => complete_multus_config(
            template,
            manifest.mode,
            &manifest.multus_path_prefix,
            Primary { dir, name, text },
        ),
    }
}

/// Fills the primary into a rendered Multus config: thin mode embeds it as `delegates[0]`,
/// thick mode points `clusterNetwork` at it (as the daemon sees it, through `view_prefix`).
/// Either way the primary's capabilities are added unless the template sets them explicitly.
pub fn complete_multus_config(
    template: &str,
    mode: Mode,
    view_prefix: &str,
    primary: Primary<'_>,
) -> Result<String, CompletionError> {
    let checked = cni::check(primary.text).map_err(|errors| CompletionError::InvalidPrimary {
        name: primary.name.to_string(),
        errors,
    })?;
    let mut root: Value =
        serde_json::from_str(template).map_err(|e| CompletionError::Template(e.to_string()))?;
    let target = multus_plugin(&mut root)
        .ok_or_else(|| CompletionError::Template("no multus plugin object".into()))?;

    let mut capabilities: Map<String, Value> = checked
        .capabilities()
        .into_iter()
        .map(|c| (c, Value::Bool(true)))
        .collect();
    if let Some(explicit) = target.get("capabilities").and_then(Value::as_object) {
        for (k, v) in explicit {
            capabilities.insert(k.clone(), v.clone());
        }
    }
    if capabilities.is_empty() {
        target.remove("capabilities");
    } else {
        target.insert("capabilities".into(), Value::Object(capabilities));
    }

    match mode {
        Mode::Thin => {
            target.insert(
                "delegates".into(),
                Value::Array(vec![Value::Object(checked.value)]),
            );
        }
        Mode::Thick => {
            let path = format!(
                "{view_prefix}{}/{}",
                primary.dir.trim_end_matches('/'),
                primary.name
            );
            target.insert("clusterNetwork".into(), Value::String(path));
        }
    }
    Ok(cni::to_file_text(&root)?)
}

/// The object holding the multus plugin settings: `plugins[0]` of a list, else the root.
fn multus_plugin(root: &mut Value) -> Option<&mut Map<String, Value>> {
    let is_list = root.get("plugins").is_some();
    if is_list {
        root.get_mut("plugins")?
            .as_array_mut()?
            .first_mut()?
            .as_object_mut()
    } else {
        root.as_object_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALICO: &str = r#"{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[
        {"type":"calico"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    fn primary() -> Primary<'static> {
        Primary {
            dir: "/etc/cni/net.d",
            name: "10-calico.conflist",
            text: CALICO,
        }
    }

    #[test]
    fn thin_embeds_the_primary_and_its_capabilities() {
        let out = complete_multus_config(
            r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus"}"#,
            Mode::Thin,
            "",
            primary(),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["delegates"][0]["name"], "k8s-pod-network");
        assert_eq!(v["capabilities"]["portMappings"], true);
    }

    #[test]
    fn thick_points_cluster_network_at_the_file_as_the_daemon_sees_it() {
        let out = complete_multus_config(
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","plugins":[{"type":"multus-shim"}]}"#,
            Mode::Thick,
            "/host",
            primary(),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["plugins"][0]["clusterNetwork"],
            "/host/etc/cni/net.d/10-calico.conflist"
        );
        assert!(v.get("delegates").is_none());
    }

    #[test]
    fn an_explicit_capability_overrides_the_primary() {
        let out = complete_multus_config(
            r#"{"cniVersion":"0.3.1","name":"m","type":"multus","capabilities":{"portMappings":false}}"#,
            Mode::Thin,
            "",
            primary(),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["capabilities"]["portMappings"], false);
    }

    #[test]
    fn an_invalid_primary_is_refused_and_named() {
        let err = complete_multus_config(
            r#"{"cniVersion":"0.3.1","name":"m","type":"multus"}"#,
            Mode::Thin,
            "",
            Primary {
                dir: "/etc/cni/net.d",
                name: "10-broken.conf",
                text: "",
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("10-broken.conf"));
    }
}

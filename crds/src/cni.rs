//! What counts as a valid CNI network configuration. Used by the operator on every NAD and
//! every rendered file, and by the agent before it writes anything.

use serde_json::{Map, Value};

use crate::multus_config::CniVersion;

mod plugin;

pub use plugin::{CHECKED_FIELDS, go_fold, is_interface_name, is_plugin_name};
use plugin::{check_key_case, check_plugin};

/// Largest CNI config accepted, in bytes. Real configs are a few KiB; anything near this is a
/// mistake (a pasted certificate bundle, a generated list gone wrong).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Why a config is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    TooLarge,
    InvalidJson,
    NotAnObject,
    MissingCniVersion,
    UnsupportedCniVersion,
    MissingType,
    EmptyPlugins,
    /// The same object key twice: readers disagree on which value counts.
    DuplicateKey,
    /// A plugin or IPAM `type` that is not a plain file name in the CNI bin dir.
    InvalidType,
    /// A host interface name (`master`, `bridge`, `device`) the kernel would refuse or that
    /// holds whitespace or control characters.
    InvalidInterfaceName,
    /// A key that differs from a field this check reads only in letter case (`Ipam`, `TYPE`):
    /// Go's decoder on the node matches keys case-insensitively, so it reads that key as the
    /// field while this check would not.
    CaseVariantKey,
}

impl Problem {
    /// Stable CamelCase name, used as Event reason and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::TooLarge => "TooLarge",
            Problem::InvalidJson => "InvalidJson",
            Problem::NotAnObject => "NotAnObject",
            Problem::MissingCniVersion => "MissingCniVersion",
            Problem::UnsupportedCniVersion => "UnsupportedCniVersion",
            Problem::MissingType => "MissingType",
            Problem::EmptyPlugins => "EmptyPlugins",
            Problem::DuplicateKey => "DuplicateKey",
            Problem::InvalidType => "InvalidType",
            Problem::InvalidInterfaceName => "InvalidInterfaceName",
            Problem::CaseVariantKey => "CaseVariantKey",
        }
    }
}

/// A problem at a JSON path inside a config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub problem: Problem,
    /// JSONPath-like location, `$` for the whole document.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn new(problem: Problem, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problem,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A config that passed [`check`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedConfig {
    pub value: Map<String, Value>,
    pub version: CniVersion,
    /// Has a `plugins` list (a `.conflist`).
    pub is_list: bool,
}

impl CheckedConfig {
    /// Capabilities the config's plugins declare as `true`, in key order.
    pub fn capabilities(&self) -> Vec<String> {
        let mut out: Vec<String> = plugin_objects(&self.value)
            .flat_map(|p| {
                p.get("capabilities")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|caps| caps.iter())
                    .filter(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The plugin objects of a config: the `plugins` entries of a list, or the config itself.
pub fn plugin_objects(
    config: &Map<String, Value>,
) -> Box<dyn Iterator<Item = &Map<String, Value>> + '_> {
    match config.get("plugins").and_then(Value::as_array) {
        Some(plugins) => Box::new(plugins.iter().filter_map(Value::as_object)),
        None => Box::new(std::iter::once(config)),
    }
}

/// Checks a CNI config document: size, JSON, object, supported `cniVersion`, and a `type` on
/// the config or on every entry of a non-empty `plugins` list. Returns every problem found.
pub fn check(text: &str) -> Result<CheckedConfig, Vec<ConfigError>> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(vec![ConfigError::new(
            Problem::TooLarge,
            "$",
            format!(
                "config is {} bytes, more than the {MAX_CONFIG_BYTES} allowed",
                text.len()
            ),
        )]);
    }
    let value: Value = crate::strict_json::parse(text).map_err(|e| {
        vec![match e {
            crate::strict_json::StrictError::Syntax(_) => {
                ConfigError::new(Problem::InvalidJson, "$", e.to_string())
            }
            crate::strict_json::StrictError::DuplicateKey { ref path, .. } => {
                ConfigError::new(Problem::DuplicateKey, path.clone(), e.to_string())
            }
        }]
    })?;
    let Value::Object(map) = value else {
        return Err(vec![ConfigError::new(
            Problem::NotAnObject,
            "$",
            "a CNI config must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();
    let version = match map.get("cniVersion") {
        None => {
            errors.push(ConfigError::new(
                Problem::MissingCniVersion,
                "$.cniVersion",
                "cniVersion is missing",
            ));
            None
        }
        Some(Value::String(v)) => match CniVersion::parse(v) {
            Some(version) => Some(version),
            None => {
                errors.push(unsupported_version(format!("{v:?}")));
                None
            }
        },
        Some(other) => {
            errors.push(unsupported_version(other.to_string()));
            None
        }
    };
    let is_list = map.contains_key("plugins");
    if is_list {
        check_key_case(&map, &CHECKED_FIELDS, "$", &mut errors);
        match map.get("plugins").and_then(Value::as_array) {
            Some(plugins) if !plugins.is_empty() => {
                for (i, plugin) in plugins.iter().enumerate() {
                    if !has_type(plugin) {
                        errors.push(ConfigError::new(
                            Problem::MissingType,
                            format!("$.plugins[{i}].type"),
                            "every plugin needs a non-empty string type",
                        ));
                    }
                    check_plugin(plugin, &format!("$.plugins[{i}]"), &mut errors);
                }
            }
            _ => errors.push(ConfigError::new(
                Problem::EmptyPlugins,
                "$.plugins",
                "plugins must be a non-empty list",
            )),
        }
    } else {
        let whole = Value::Object(map.clone());
        if !has_type(&whole) {
            errors.push(ConfigError::new(
                Problem::MissingType,
                "$.type",
                "type is missing (or use a plugins list)",
            ));
        }
        check_plugin(&whole, "$", &mut errors);
    }
    match (version, errors.is_empty()) {
        (Some(version), true) => Ok(CheckedConfig {
            value: map,
            version,
            is_list,
        }),
        _ => Err(errors),
    }
}

fn has_type(plugin: &Value) -> bool {
    plugin
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty())
}

fn unsupported_version(found: String) -> ConfigError {
    let supported: Vec<&str> = CniVersion::ALL.iter().map(|v| v.as_str()).collect();
    ConfigError::new(
        Problem::UnsupportedCniVersion,
        "$.cniVersion",
        format!(
            "cniVersion {found} is not supported (supported: {})",
            supported.join(", ")
        ),
    )
}

/// All problems of a config on one line, `; `-separated.
pub fn describe(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Pretty JSON with a trailing newline: the one byte form every rendered file uses.
pub fn to_file_text(value: &Value) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn problems(text: &str) -> Vec<(Problem, String)> {
        match check(text) {
            Ok(_) => vec![],
            Err(errs) => errs.into_iter().map(|e| (e.problem, e.path)).collect(),
        }
    }

    /// (label, config text, expected problems with their paths)
    type Case<'a> = (&'a str, &'a str, Vec<(Problem, &'a str)>);

    #[test]
    fn table_of_configs_and_their_problems() {
        let big = format!(
            r#"{{"cniVersion":"0.3.1","type":"bridge","pad":"{}"}}"#,
            "x".repeat(MAX_CONFIG_BYTES)
        );
        let cases: Vec<Case> = vec![
            (
                "plain conf",
                r#"{"cniVersion":"0.3.1","name":"a","type":"bridge"}"#,
                vec![],
            ),
            (
                "conflist",
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"tuning"}]}"#,
                vec![],
            ),
            (
                "not json",
                "{cniVersion: 0.3.1",
                vec![(Problem::InvalidJson, "$")],
            ),
            ("array", "[1,2]", vec![(Problem::NotAnObject, "$")]),
            (
                "no version",
                r#"{"type":"bridge"}"#,
                vec![(Problem::MissingCniVersion, "$.cniVersion")],
            ),
            (
                "unknown version",
                r#"{"cniVersion":"0.2.0","type":"bridge"}"#,
                vec![(Problem::UnsupportedCniVersion, "$.cniVersion")],
            ),
            (
                "numeric version",
                r#"{"cniVersion":1,"type":"bridge"}"#,
                vec![(Problem::UnsupportedCniVersion, "$.cniVersion")],
            ),
            (
                "no type",
                r#"{"cniVersion":"0.3.1","name":"a"}"#,
                vec![(Problem::MissingType, "$.type")],
            ),
            (
                "blank type",
                r#"{"cniVersion":"0.3.1","type":"  "}"#,
                vec![(Problem::MissingType, "$.type")],
            ),
            (
                "empty plugins",
                r#"{"cniVersion":"1.0.0","plugins":[]}"#,
                vec![(Problem::EmptyPlugins, "$.plugins")],
            ),
            (
                "second plugin untyped",
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"},{"mtu":1400}]}"#,
                vec![(Problem::MissingType, "$.plugins[1].type")],
            ),
            (
                "two problems at once",
                r#"{"cniVersion":"9.9.9"}"#,
                vec![
                    (Problem::UnsupportedCniVersion, "$.cniVersion"),
                    (Problem::MissingType, "$.type"),
                ],
            ),
            ("oversized", big.as_str(), vec![(Problem::TooLarge, "$")]),
        ];
        for (label, text, want) in cases {
            let want: Vec<(Problem, String)> = want
                .into_iter()
                .map(|(p, path)| (p, path.to_string()))
                .collect();
            assert_eq!(problems(text), want, "case {label}");
        }
    }

    #[test]
    fn capabilities_are_the_union_of_true_plugin_capabilities() {
        let checked = check(
            r#"{"cniVersion":"0.4.0","name":"k8s","plugins":[
                {"type":"calico","capabilities":{"bandwidth":true}},
                {"type":"portmap","capabilities":{"portMappings":true,"ignored":false}},
                {"type":"bandwidth","capabilities":{"bandwidth":true}}]}"#,
        )
        .unwrap();
        assert!(checked.is_list);
        assert_eq!(checked.capabilities(), vec!["bandwidth", "portMappings"]);
    }
}

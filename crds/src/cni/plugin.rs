//! One plugin object of a CNI config, as the node will read it: its `type` and its IPAM's
//! must be plain file names (the runtime executes `<binDir>/<type>`), host interface names
//! must be names the kernel accepts, and no key may differ from a field read here only in
//! letter case (Go's decoder on the node would read it as that field).

use serde_json::{Map, Value};

use super::{ConfigError, Problem};

/// Keys whose string value names a host network interface, in the reference plugins
/// (`master`: macvlan, ipvlan, vlan; `bridge`: bridge; `device`: host-device).
const INTERFACE_KEYS: [&str; 3] = ["master", "bridge", "device"];

/// The plugin's and its IPAM's `type` must be plain file names (the runtime executes
/// `<binDir>/<type>`), and the host interfaces it names must be names the kernel accepts.
pub(super) fn check_plugin(plugin: &Value, at: &str, errors: &mut Vec<ConfigError>) {
    if let Some(object) = plugin.as_object() {
        check_key_case(object, &CHECKED_FIELDS, at, errors);
    }
    if let Some(kind) = plugin.get("type").and_then(Value::as_str)
        && !kind.trim().is_empty()
        && !is_plugin_name(kind)
    {
        errors.push(invalid_type(format!("{at}.type"), kind));
    }
    if let Some(ipam) = plugin.get("ipam").and_then(Value::as_object) {
        check_key_case(ipam, &["type"], &format!("{at}.ipam"), errors);
        if let Some(kind) = ipam.get("type") {
            match kind.as_str() {
                Some(k) if is_plugin_name(k) => {}
                _ => errors.push(invalid_type(format!("{at}.ipam.type"), &kind.to_string())),
            }
        }
    }
    for key in INTERFACE_KEYS {
        let Some(name) = plugin.get(key).and_then(Value::as_str) else {
            continue;
        };
        // A node placeholder is checked once it is filled in, per node.
        if name.contains("{{") {
            continue;
        }
        if !is_interface_name(name) {
            errors.push(ConfigError::new(
                Problem::InvalidInterfaceName,
                format!("{at}.{key}"),
                format!(
                    "{name:?} is not an interface name: 1 to 15 bytes, no '/', ':', whitespace or control characters, not '.' or '..'"
                ),
            ));
        }
    }
}

/// Fields of a config or plugin object this check (or the operator) reads.
pub const CHECKED_FIELDS: [&str; 9] = [
    "cniVersion",
    "name",
    "type",
    "ipam",
    "plugins",
    "capabilities",
    "master",
    "bridge",
    "device",
];

/// Go's decoder fills a struct field from any key equal to its name up to letter case (the
/// last such key wins), so a key like `Ipam` or `TYPE` would be read on the node as the
/// field this check looked up by its exact name and did not find or found elsewhere.
pub(super) fn check_key_case(
    object: &Map<String, Value>,
    fields: &[&str],
    at: &str,
    errors: &mut Vec<ConfigError>,
) {
    for key in object.keys() {
        let folded = go_fold(key);
        if let Some(field) = fields
            .iter()
            .find(|f| **f != key.as_str() && go_fold(f) == folded)
        {
            errors.push(ConfigError::new(
                Problem::CaseVariantKey,
                format!("{at}.{key}"),
                format!(
                    "key {key:?} differs from {field:?} only in letter case; the node's Go decoder reads it as {field:?}, so spell it exactly {field:?}"
                ),
            ));
        }
    }
}

/// A key folded the way Go's `bytes.EqualFold` compares it (simple case folding, so the
/// long s `ſ` equals `s` and the Kelvin sign equals `k`).
pub fn go_fold(key: &str) -> String {
    key.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => {
                    let mut lower = u.to_lowercase();
                    match (lower.next(), lower.next()) {
                        (Some(l), None) => l,
                        _ => u,
                    }
                }
                _ => c,
            }
        })
        .collect()
}

pub(super) fn invalid_type(path: String, found: &str) -> ConfigError {
    ConfigError::new(
        Problem::InvalidType,
        path,
        format!(
            "type {found:?} must be a plain plugin file name (letters, digits, '.', '_', '+', '-'; not starting with '.'), since the runtime executes it from the CNI bin dir"
        ),
    )
}

/// A file name in the CNI bin dir: no path, no whitespace or control characters, no
/// leading dot (so never `.` or `..`).
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// What the kernel takes as a network device name (`dev_valid_name`), minus control
/// characters, which it allows but which no sane name holds.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;
    use super::super::*;

    #[test]
    fn a_key_go_reads_as_a_checked_field_must_be_spelled_exactly() {
        // The first case is the nad_validator fuzz target's finding, minimised: Go's decoder
        // on the node reads `Ipam` as the IPAM field, which this check looked up as `ipam`.
        let cases = [
            (r#"{"cniVersion":"0.3.1","type":"c","Ipam":{}}"#, "$.Ipam"),
            (
                r#"{"cniVersion":"0.3.1","type":"bridge","Ipam":{"type":"../../bin/sh"}}"#,
                "$.Ipam",
            ),
            (
                r#"{"cniVersion":"0.3.1","type":"bridge","TYPE":"../../bin/sh"}"#,
                "$.TYPE",
            ),
            (
                r#"{"cniVersion":"0.3.1","type":"bridge","ipam":{"type":"host-local","Type":"/bin/sh"}}"#,
                "$.ipam.Type",
            ),
            (
                "{\"cniVersion\":\"0.3.1\",\"cniVer\u{17f}ion\":\"9.9.9\",\"type\":\"bridge\"}",
                "$.cniVer\u{17f}ion",
            ),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"macvlan","Master":"eth0/../x"}]}"#,
                "$.plugins[0].Master",
            ),
            (
                r#"{"cniVersion":"0.3.1","type":"bridge","Plugins":[{"type":"../x"}]}"#,
                "$.Plugins",
            ),
            (
                r#"{"cniVersion":"0.3.1","type":"bridge","Name":"other"}"#,
                "$.Name",
            ),
        ];
        for (text, path) in cases {
            assert_eq!(
                problems(text),
                vec![(Problem::CaseVariantKey, path.to_string())],
                "{text}"
            );
        }
        // Keys no field reads keep their case: Go maps match exactly.
        let sysctl = r#"{"cniVersion":"0.3.1","type":"tuning",
            "sysctl":{"net.ipv4.conf.ETH0.x":"1","net.ipv4.conf.eth0.x":"1"}}"#;
        assert_eq!(problems(sysctl), vec![]);
    }
}

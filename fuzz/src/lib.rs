//! What the fuzz targets share: fixtures built the way the operator receives them, a model
//! of how Go's JSON decoder (Multus, libcni and the plugins on the node) matches object
//! keys, and the splitting of one fuzz input into several fields.

use serde_json::{Map, Value, json};

use multus_crds::MultusConfig;

/// Splits a fuzz input into `n` fields at NUL bytes; missing fields are empty and the
/// last field keeps any further NULs. Keeps seeds writable by hand (`printf 'a\0b'`).
pub fn fields(text: &str, n: usize) -> Vec<&str> {
    let mut out: Vec<&str> = text.splitn(n, '\0').collect();
    out.resize(n, "");
    out
}

/// `key=value` lines as a map; lines without `=` are keys with an empty value.
pub fn pairs(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[path = "../../operator/tests/support/nads.rs"]
mod nads;
pub use nads::nad;

/// A MultusConfig selecting every NAD, in one of eight shapes picked by `variant`:
/// thin or thick, cniVersion 0.3.1 or 1.0.0, host kubeconfig on or off.
pub fn multus_config(variant: u8) -> MultusConfig {
    let mode = if variant & 1 == 0 { "thin" } else { "thick" };
    let version = if variant & 2 == 0 { "0.3.1" } else { "1.0.0" };
    let kubeconfig = variant & 4 == 0;
    let config: MultusConfig = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": "default" },
        "spec": {
            "mode": mode,
            "primary": { "auto": {} },
            "attachments": {},
            "multus": { "cniVersion": version },
            "kubeconfig": { "enabled": kubeconfig },
        },
    }))
    .expect("a MultusConfig built from literals deserializes");
    config
}

/// Go's key folding, as the validator applies it (`bytes.EqualFold`: `TYPE`, `Type` and `ſ`
/// for `s` all reach the field `type`).
pub use multus_crds::cni::go_fold;

/// The keys of `object` that Go's decoder would read into the struct field `field`.
/// Go maps (`map[string]T`) match keys exactly; only struct fields fold.
pub fn go_keys_for<'a>(object: &'a Map<String, Value>, field: &str) -> Vec<&'a String> {
    let folded = go_fold(field);
    object.keys().filter(|k| go_fold(k) == folded).collect()
}

/// A plugin or IPAM `type` the runtime can only find as a file directly in the CNI bin dir.
pub use multus_crds::cni::is_plugin_name as is_plain_plugin_name;

//! What the operator's pure-step tests share: the smallest MultusConfig that accepts every
//! NAD (an automatic primary, attachments from every namespace). `nads.rs` beside it builds
//! test NADs; a test that needs them includes it by path.

use multus_crds::MultusConfig;
use serde_json::json;

/// `default`: an automatic primary and every NAD of every namespace as an attachment.
pub fn all_nads_config() -> MultusConfig {
    serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": "default" },
        "spec": { "primary": { "auto": {} }, "attachments": {} },
    }))
    .expect("config")
}

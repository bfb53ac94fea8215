//! The upstream `NetworkAttachmentDefinition` (`k8s.cni.cncf.io/v1`). Written by hand rather
//! than derived because upstream does not require `spec`, and an object without one must
//! still deserialize.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation naming the device-plugin resource a NAD allocates from. Multus only writes a
/// device-info file when a device ID was allocated through it.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

/// Annotation carrying the CNI config the operator writes to each node's `multusConfDir`.
/// It may use node placeholders. Leave `spec.config` empty so Multus reads the file.
pub const NODE_CONFIG_ANNOTATION: &str = "operator.multus.dev/node-config";

/// A Multus network attachment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAttachmentDefinition {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NetworkAttachmentDefinitionSpec>,
}

/// The NAD spec: one JSON-encoded CNI config; empty means "look it up by name in confDir".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NetworkAttachmentDefinitionSpec {
    /// A JSON-formatted CNI configuration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

impl NetworkAttachmentDefinition {
    /// `<namespace>/<name>`, the way Multus and users name a NAD.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// `spec.config`, empty when absent.
    pub fn spec_config(&self) -> &str {
        self.spec.as_ref().map(|s| s.config.as_str()).unwrap_or("")
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
}

impl k8s_openapi::Resource for NetworkAttachmentDefinition {
    const API_VERSION: &'static str = "k8s.cni.cncf.io/v1";
    const GROUP: &'static str = "k8s.cni.cncf.io";
    const KIND: &'static str = "NetworkAttachmentDefinition";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "network-attachment-definitions";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for NetworkAttachmentDefinition {
    const LIST_KIND: &'static str = "NetworkAttachmentDefinitionList";
}

impl k8s_openapi::Metadata for NetworkAttachmentDefinition {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

//! The `MultusConfig` custom resource: what a cluster operator declares about Multus on a set
//! of nodes. Admission-time validation lives here as schema bounds and CEL rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with_macros::skip_serializing_none;
use std::collections::BTreeMap;

use crate::status::MultusConfigStatus;

mod kubeconfig;
mod paths;

pub use kubeconfig::{
    DEFAULT_EXPIRATION_SECONDS, KubeconfigSpec, MIN_EXPIRATION_SECONDS, ServiceAccountRef,
};
pub use paths::{
    DEFAULT_CNI_BIN_DIR, DEFAULT_CNI_CONF_DIR, DEFAULT_KUBECONFIG_PATH, DEFAULT_MULTUS_CONF_DIR,
    Paths, ThickOptions,
};

/// Desired Multus configuration for the nodes a selector picks.
// Each printcolumn(...) repeats `type_`; clippy reads them as duplicates of one attribute.
#[allow(clippy::duplicated_attributes)]
// `#[skip_serializing_none]` leaves an unset option out. A field whose schema comes from
// `schema_with` keeps `#[serde(default)]`: schemars cannot see it is an `Option` and would
// list it as required.
#[skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "operator.multus.dev",
    version = "v1alpha1",
    kind = "MultusConfig",
    plural = "multusconfigs",
    shortname = "mcfg",
    doc = "Multus on a set of nodes: the files the node agents write and how they roll out.",
    status = "MultusConfigStatus",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Nodes",
        type_ = "string",
        description = "Nodes ready / nodes selected",
        json_path = ".status.readyNodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message")
)]
#[serde(rename_all = "camelCase")]
pub struct MultusConfigSpec {
    /// Nodes this configuration applies to. Empty or absent selects every node. When two
    /// MultusConfigs select one node, the older one wins and the other reports `Conflicted`.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub node_selector: Option<LabelSelector>,

    /// `thin` writes a `multus` config that embeds the primary network; `thick` writes a
    /// `multus-shim` config plus the daemon configuration for `multus-daemon`.
    #[serde(default)]
    pub mode: Mode,

    /// Where the cluster's primary (default) network comes from. Exactly one source.
    pub primary: PrimarySource,

    /// Host paths. The same paths are written into the rendered configs so thin and thick
    /// modes agree on where file-backed delegates live.
    #[serde(default)]
    pub paths: Paths,

    /// Multus NetConf settings passed through to the rendered config.
    #[serde(default)]
    pub multus: MultusOptions,

    /// The host kubeconfig Multus uses to read pods and NetworkAttachmentDefinitions.
    #[serde(default)]
    pub kubeconfig: KubeconfigSpec,

    /// NetworkAttachmentDefinitions written as files into `paths.multusConfDir`. Absent
    /// means none.
    pub attachments: Option<AttachmentSelection>,

    /// How fast a changed bundle reaches the selected nodes.
    #[serde(default)]
    pub rollout: Rollout,

    /// Thick mode: how `multus-daemon` sees the host through its mounts.
    #[serde(default)]
    pub thick: ThickOptions,
}

/// How Multus runs on the node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The `multus` binary runs per CNI call and reads the host kubeconfig.
    #[default]
    Thin,
    /// `multus-shim` forwards CNI calls to the `multus-daemon` socket.
    Thick,
}

/// The primary network source. Exactly one field is set.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.auto) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.networkAttachment) ? 1 : 0) == 1"
).message("primary must set exactly one of auto, file or networkAttachment"))]
pub struct PrimarySource {
    /// Use the first `.conf`/`.conflist`/`.json` in `cniConfDir` (lexical order) that the
    /// agent does not own, whose name does not start with `00-multus`, is not hidden or a temp
    /// file, and matches no `exclude` pattern.
    pub auto: Option<AutoPrimary>,

    /// A file name inside `cniConfDir`, for example `10-calico.conflist`.
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_][A-Za-z0-9._-]*[.](conf|conflist|json)$')")
            .message("file must be a file name inside cniConfDir ending in .conf, .conflist or .json"),
        validation = Rule::new("!self.startsWith('00-multus')")
            .message("file must not name the operator's own 00-multus config")
    )]
    #[schemars(length(max = 253))]
    pub file: Option<String>,

    /// A NetworkAttachmentDefinition as `<namespace>/<name>`.
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')"
    ).message("networkAttachment must be <namespace>/<name>"))]
    #[schemars(length(max = 317))]
    pub network_attachment: Option<String>,
}

/// Automatic primary selection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoPrimary {
    /// File name patterns (`*` matches any run of characters) never taken as the primary,
    /// for example `*istio*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// CNI spec versions Multus and the reference plugins accept.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum CniVersion {
    #[serde(rename = "0.3.0")]
    V0_3_0,
    #[default]
    #[serde(rename = "0.3.1")]
    V0_3_1,
    #[serde(rename = "0.4.0")]
    V0_4_0,
    #[serde(rename = "1.0.0")]
    V1_0_0,
    #[serde(rename = "1.1.0")]
    V1_1_0,
}

impl CniVersion {
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    pub fn parse(text: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// From CNI 1.0.0 on, a network configuration is a list (`.conflist`).
    pub fn requires_list(self) -> bool {
        self >= CniVersion::V1_0_0
    }
}

impl std::fmt::Display for CniVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Multus log levels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Verbose,
    Error,
    Panic,
}

/// Multus NetConf knobs, named as Multus names them.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MultusOptions {
    /// cniVersion of the Multus config. From 1.0.0 on the config is written as
    /// `00-multus.conflist`.
    #[serde(default)]
    pub cni_version: CniVersion,
    /// The network name of the Multus config (default `multus-cni-network`).
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self) <= 253").message("name must be 1 to 253 characters"))]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
    pub log_level: Option<LogLevel>,
    /// A host path for the Multus log file.
    #[x_kube(validation = paths::absolute_file_rule("logFile"))]
    #[schemars(length(max = 1024))]
    pub log_file: Option<String>,
    pub log_to_stderr: Option<bool>,
    /// Pods may only reference networks in their own namespace (plus `globalNamespaces`).
    pub namespace_isolation: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub global_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub system_namespaces: Vec<String>,
    /// Namespace where `defaultNetworks` and a bare `clusterNetwork` are looked up.
    pub multus_namespace: Option<String>,
    /// Networks attached to every pod, in addition to the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_networks: Vec<String>,
    /// A file whose existence means the primary network is ready; the agent waits for it
    /// and Multus checks it on every call.
    #[x_kube(validation = paths::absolute_file_rule("readinessIndicatorFile"))]
    #[schemars(length(max = 1024))]
    pub readiness_indicator_file: Option<String>,
    pub retry_delete_on_error: Option<bool>,
    /// Extra capabilities, merged with the ones the primary network declares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
}

/// Which NetworkAttachmentDefinitions become files in `multusConfDir`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentSelection {
    /// Namespaces whose NADs are considered; empty or absent means all.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels the NADs must carry; empty or absent means all.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::label_selector")]
    pub selector: Option<LabelSelector>,
}

/// Staged rollout of changed bundles.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "type(self.maxUnavailable) == string ? self.maxUnavailable.matches('^([1-9][0-9]?|100)%$') : self.maxUnavailable >= 1"
).message("maxUnavailable must be an integer >= 1 or a percentage from 1% to 100%"))]
pub struct Rollout {
    /// How many selected nodes may be updating (or failing) at once: a count or a
    /// percentage of the selected nodes, rounded up.
    #[serde(default = "default_max_unavailable")]
    #[schemars(length(max = 4))]
    pub max_unavailable: IntOrString,
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
        }
    }
}

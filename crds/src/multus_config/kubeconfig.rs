//! The host kubeconfig a MultusConfig asks for: which ServiceAccount's token, its lifetime
//! and when to replace it, and where the API server is, with the admission rules that
//! refuse an impossible schedule.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with_macros::skip_serializing_none;

/// The host kubeconfig and its ServiceAccount token.
#[skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.refreshBeforeExpiry) || self.refreshBeforeExpiry.endsWith('%') || duration(self.refreshBeforeExpiry).getSeconds() < self.expirationSeconds"
).message("refreshBeforeExpiry must be shorter than expirationSeconds"))]
pub struct KubeconfigSpec {
    /// Write the kubeconfig. On by default in every mode and for every primary source.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The ServiceAccount whose token goes into the kubeconfig. Defaults to the account the
    /// operator was installed with (`--multus-service-account`).
    pub service_account: Option<ServiceAccountRef>,
    /// Requested token lifetime.
    #[serde(default = "default_expiration_seconds")]
    #[schemars(range(min = 600, max = 31536000))]
    pub expiration_seconds: i64,
    /// When to replace the token: a share of its lifetime (`20%`) or a duration (`10m`,
    /// `1h`) before it expires. Default `20%`.
    #[x_kube(validation = Rule::new("self.matches('^([1-9]|[1-9][0-9])%$') || self.matches('^[1-9][0-9]{0,8}(s|m|h)$')")
        .message("refreshBeforeExpiry must be a percentage from 1% to 99% or a duration such as 10m"))]
    #[schemars(length(max = 16))]
    pub refresh_before_expiry: Option<String>,
    /// Token audiences. Empty means the API server's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// API server URL written into the kubeconfig; default is the agent's in-cluster server.
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("server must be an https:// URL"))]
    #[schemars(length(max = 2048))]
    pub server: Option<String>,
    /// PEM bundle of the CA that signed the API server certificate; default is the agent's
    /// in-cluster CA.
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("certificateAuthority must be PEM certificate data"))]
    #[schemars(length(max = 65536))]
    pub certificate_authority: Option<String>,
}

pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

fn default_true() -> bool {
    true
}
fn default_expiration_seconds() -> i64 {
    DEFAULT_EXPIRATION_SECONDS
}

impl Default for KubeconfigSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            service_account: None,
            expiration_seconds: DEFAULT_EXPIRATION_SECONDS,
            refresh_before_expiry: None,
            audiences: Vec::new(),
            server: None,
            certificate_authority: None,
        }
    }
}

/// A ServiceAccount by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ServiceAccountRef {
    /// A namespace name (DNS-1123 label).
    #[schemars(regex(pattern = crate::schema::DNS_LABEL), length(min = 1, max = 63))]
    pub namespace: String,
    /// A ServiceAccount name (DNS-1123 subdomain).
    #[schemars(regex(pattern = crate::schema::DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
}

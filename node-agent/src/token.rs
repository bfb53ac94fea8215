//! The host kubeconfig's ServiceAccount token: requested through the TokenRequest API,
//! bound to this Node, verified with a SelfSubjectReview before it is written, and replaced
//! before it expires. The token itself is never logged or reported.

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec,
};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::time::Duration;

use multus_crds::bundle::KubeconfigSettings;
use multus_crds::contract::RefreshBefore;

/// Shortest wait between attempts when a request failed.
pub const RETRY_FLOOR: Duration = Duration::from_secs(5);

/// A verified token. `Debug` leaves the token out.
#[derive(Clone)]
pub struct Token {
    secret: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// What it was requested for ([`issuance`]); a bundle that asks for something else
    /// needs a new token at once.
    pub issued_for: String,
}

/// The settings a token depends on: account, audiences and lifetime.
pub fn issuance(settings: &KubeconfigSettings) -> String {
    format!(
        "{}/{} aud={} exp={}",
        settings.service_account.namespace,
        settings.service_account.name,
        settings.audiences.join(","),
        settings.expiration_seconds
    )
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("issued_for", &self.issued_for)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A token as a request would return it (tests of the schedule).
    #[cfg(test)]
    pub(crate) fn new(
        secret: String,
        issued_at: i64,
        expires_at: i64,
        issued_for: String,
    ) -> Token {
        Token {
            secret,
            issued_at,
            expires_at,
            issued_for,
        }
    }
}

/// Token errors; none of them carries the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read Node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("TokenRequest for {account} failed: {source}")]
    Request {
        account: String,
        #[source]
        source: kube::Error,
    },
    #[error("TokenRequest for {account} returned no token")]
    Empty { account: String },
    #[error("the new token for {account} does not authenticate: {reason}")]
    Unverified { account: String, reason: String },
    #[error("cannot check the new token for {account}: {source}")]
    Review {
        account: String,
        #[source]
        source: kube::Error,
    },
}

/// Where the API server is and which CA signs it, for the kubeconfig.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    pub server: String,
    pub ca_pem: String,
}

impl ApiEndpoint {
    /// From the agent's own client configuration, with the bundle's overrides.
    pub fn resolve(config: &Config, settings: &KubeconfigSettings) -> ApiEndpoint {
        let server = settings.server.clone().unwrap_or_else(|| {
            config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_string()
        });
        let ca_pem = settings.certificate_authority.clone().unwrap_or_else(|| {
            let from_file = config
                .root_cert_file
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok());
            from_file.unwrap_or_else(|| {
                config
                    .root_cert
                    .iter()
                    .flatten()
                    .map(|der| pem_encode(der))
                    .collect::<Vec<_>>()
                    .join("")
            })
        });
        ApiEndpoint { server, ca_pem }
    }
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Comment line heading the host kubeconfig.
const KUBECONFIG_HEADER: &str =
    "# Written by multus-node-agent; replaced before the token expires.\n";

/// The host kubeconfig text: one cluster, one user with a literal token, one context.
/// Built as kube's kubeconfig types and serialized, so no value (a server URL from a
/// MultusConfig, say) can change the document's structure.
pub fn render_kubeconfig(
    endpoint: &ApiEndpoint,
    token: &Token,
) -> Result<String, serde_saphyr::SerializeError> {
    use kube::config::{
        AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
    };
    let ca = base64::engine::general_purpose::STANDARD.encode(endpoint.ca_pem.as_bytes());
    let config = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "local".into(),
            cluster: Some(Cluster {
                server: Some(endpoint.server.clone()),
                certificate_authority_data: Some(ca),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "multus".into(),
            auth_info: Some(AuthInfo {
                token: Some(token.secret().to_string().into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "multus-context".into(),
            context: Some(Context {
                cluster: "local".into(),
                user: Some("multus".into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("multus-context".into()),
        ..Kubeconfig::default()
    };
    Ok(format!(
        "{KUBECONFIG_HEADER}{}",
        serde_saphyr::to_string(&config)?
    ))
}

/// When to replace a token: `refresh_before` ahead of expiry, plus up to a tenth of that
/// again as jitter (`jitter` in [0, 1)) so that nodes spread out; never sooner than the
/// retry floor after issue.
pub fn refresh_at(token: &Token, refresh_before: RefreshBefore, jitter: f64) -> i64 {
    let lifetime = (token.expires_at - token.issued_at).max(1);
    let before = refresh_before.seconds(lifetime);
    let jitter = (before as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    (token.expires_at - before - jitter).max(token.issued_at + RETRY_FLOOR.as_secs() as i64)
}

/// Requests a token for the configured account bound to `node`, and checks that it
/// authenticates as that account before returning it.
pub async fn request(
    client: &Client,
    kube_config: &Config,
    node: &str,
    settings: &KubeconfigSettings,
) -> Result<Token, TokenError> {
    let account = format!(
        "{}/{}",
        settings.service_account.namespace, settings.service_account.name
    );
    let node_obj = Api::<Node>::all(client.clone())
        .get(node)
        .await
        .map_err(|source| TokenError::Node {
            node: node.to_string(),
            source,
        })?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!settings.audiences.is_empty()).then(|| settings.audiences.clone()),
            expiration_seconds: Some(settings.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                uid: node_obj.metadata.uid.clone(),
            }),
        }),
        ..TokenRequest::default()
    };
    let response =
        Api::<ServiceAccount>::namespaced(client.clone(), &settings.service_account.namespace)
            .create_token_request(
                &settings.service_account.name,
                &PostParams::default(),
                &request,
            )
            .await
            .map_err(|source| TokenError::Request {
                account: account.clone(),
                source,
            })?;
    let status = response.status.ok_or_else(|| TokenError::Empty {
        account: account.clone(),
    })?;
    let secret = status
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Empty {
            account: account.clone(),
        })?;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let expires_at = status
        .expiration_timestamp
        .map(|t| t.0.as_second())
        .unwrap_or(now + settings.expiration_seconds);
    let token = Token {
        secret,
        issued_at: now,
        expires_at,
        issued_for: issuance(settings),
    };
    verify(kube_config, &account, &token).await?;
    Ok(token)
}

/// Whether a token in use still authenticates as the account. `Ok(false)` when the API
/// server rejects it (401, e.g. its ServiceAccount was deleted and recreated, which
/// invalidates its tokens long before they expire) or it names another user; `Err` when the
/// API server cannot be asked, so the token stays in use.
pub async fn authenticates(
    kube_config: &Config,
    settings: &KubeconfigSettings,
    token: &Token,
) -> Result<bool, TokenError> {
    let account = format!(
        "{}/{}",
        settings.service_account.namespace, settings.service_account.name
    );
    match verify(kube_config, &account, token).await {
        Ok(()) => Ok(true),
        Err(TokenError::Unverified { .. }) => Ok(false),
        Err(TokenError::Review {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 401 => Ok(false),
        Err(e) => Err(e),
    }
}

/// SelfSubjectReview with the new token: it must authenticate as the account.
async fn verify(kube_config: &Config, account: &str, token: &Token) -> Result<(), TokenError> {
    let unverified = |reason: String| TokenError::Unverified {
        account: account.to_string(),
        reason,
    };
    let (namespace, name) = account.split_once('/').unwrap_or((account, ""));
    let expected = format!("system:serviceaccount:{namespace}:{name}");
    let mut config = kube_config.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.secret().to_string().into()),
        ..kube::config::AuthInfo::default()
    };
    let review_failed = |source| TokenError::Review {
        account: account.to_string(),
        source,
    };
    let client = Client::try_from(config).map_err(review_failed)?;
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(review_failed)?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default();
    if user == expected {
        Ok(())
    } else {
        Err(unverified(format!(
            "it authenticates as {user:?}, not {expected:?}"
        )))
    }
}

/// A token taken over from a kubeconfig the agent wrote earlier (so restarts do not churn
/// the file), if it still authenticates as the account. Its times come from the JWT claims.
pub async fn adopt(
    kube_config: &Config,
    settings: &KubeconfigSettings,
    kubeconfig_text: &str,
) -> Option<Token> {
    let parsed: serde_json::Value = serde_saphyr::from_str(kubeconfig_text).ok()?;
    let secret = parsed["users"][0]["user"]["token"].as_str()?.to_string();
    let claims = secret.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    let issued_at = claims["iat"].as_i64()?;
    let expires_at = claims["exp"].as_i64()?;
    if expires_at <= k8s_openapi::jiff::Timestamp::now().as_second() {
        return None;
    }
    // Explicit audiences must match the token's; the lifetime is the API server's choice.
    if !settings.audiences.is_empty() {
        let aud: Vec<&str> = match &claims["aud"] {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str()).collect(),
            _ => vec![],
        };
        if aud
            != settings
                .audiences
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            return None;
        }
    }
    let token = Token {
        issued_at,
        expires_at,
        secret,
        issued_for: issuance(settings),
    };
    let account = format!(
        "{}/{}",
        settings.service_account.namespace, settings.service_account.name
    );
    verify(kube_config, &account, &token).await.ok()?;
    Some(token)
}

/// Loads a kube client config from a kubeconfig file, or the in-cluster/default one.
pub async fn load_config(kubeconfig: Option<&std::path::Path>) -> Result<Config, kube::Error> {
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(kube::Error::InferKubeconfig)
        }
        None => Config::infer().await.map_err(kube::Error::InferConfig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issued: i64, expires: i64) -> Token {
        Token {
            secret: "s3cr3t".into(),
            issued_at: issued,
            expires_at: expires,
            issued_for: String::new(),
        }
    }

    #[test]
    fn refresh_points_follow_percentages_durations_and_jitter() {
        let t = token(0, 3600);
        let at = |text: &str, jitter| refresh_at(&t, text.parse().unwrap(), jitter);
        assert_eq!(at("20%", 0.0), 2880);
        assert_eq!(at("10m", 0.0), 3000);
        assert_eq!(at("20%", 1.0), 2880 - 72);
        // Never sooner than the retry floor after issue, whatever the setting.
        assert_eq!(at("3600s", 1.0), 5);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let t = token(0, 10);
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_kubeconfig_embeds_server_ca_and_token() {
        let endpoint = ApiEndpoint {
            server: "https://10.0.0.1:6443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        };
        let text = render_kubeconfig(&endpoint, &token(0, 10)).unwrap();
        assert!(text.starts_with(KUBECONFIG_HEADER));
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(parsed["apiVersion"], "v1");
        assert_eq!(parsed["kind"], "Config");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443"
        );
        assert_eq!(parsed["users"][0]["user"]["token"], "s3cr3t");
        assert_eq!(parsed["current-context"], "multus-context");
        assert_eq!(parsed["contexts"][0]["context"]["user"], "multus");
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(config.clusters.len(), 1);
    }

    #[test]
    fn no_value_can_change_the_kubeconfigs_structure() {
        for server in [
            "https://a:1\nusers: []",
            "https://a:1\"\n- name: evil",
            "https://a:1 # comment",
            "https://a:1\u{0}x",
            "https://a:1: b",
            "{ https://a:1 }",
            "'quoted'",
        ] {
            let endpoint = ApiEndpoint {
                server: server.into(),
                ca_pem: "pem".into(),
            };
            let text = render_kubeconfig(&endpoint, &token(0, 10)).unwrap();
            let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
            assert_eq!(config.clusters.len(), 1, "{server:?}");
            assert_eq!(config.auth_infos.len(), 1, "{server:?}");
            assert_eq!(
                config.clusters[0]
                    .cluster
                    .as_ref()
                    .and_then(|c| c.server.as_deref()),
                Some(server),
                "{text}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_server_ca_and_token_come_back_from_the_kubeconfig_as_written(
            server in ".{0,80}",
            ca in ".{0,80}",
            secret in ".{0,80}",
        ) {
            let endpoint = ApiEndpoint { server: server.clone(), ca_pem: ca.clone() };
            let token = Token { secret: secret.clone(), issued_at: 0, expires_at: 10, issued_for: String::new() };
            let text = render_kubeconfig(&endpoint, &token).unwrap();
            let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
            proptest::prop_assert_eq!(config.clusters.len(), 1);
            proptest::prop_assert_eq!(config.auth_infos.len(), 1);
            let cluster = config.clusters[0].cluster.clone().unwrap();
            proptest::prop_assert_eq!(cluster.server.as_deref(), Some(server.as_str()));
            let ca_data = base64::engine::general_purpose::STANDARD
                .decode(cluster.certificate_authority_data.unwrap_or_default())
                .unwrap();
            proptest::prop_assert_eq!(ca_data, ca.into_bytes());
            let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            proptest::prop_assert_eq!(parsed["users"][0]["user"]["token"].as_str(), Some(secret.as_str()));
        }
    }
}

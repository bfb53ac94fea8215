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

use multus_crds::bundle::KubeconfigSettings;

mod kubeconfig;
pub mod schedule;

pub use kubeconfig::{ApiEndpoint, render_kubeconfig};
pub use schedule::{RETRY_FLOOR, refresh_at};

/// A verified token. `Debug` shows the token as `<redacted>`.
#[derive(Clone, Debug)]
pub struct Token {
    secret: Secret,
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

/// The bearer token's text, which `Debug` replaces with a placeholder.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Token {
    pub fn secret(&self) -> &str {
        &self.secret.0
    }

    /// A token from its secret, its issue and expiry times (Unix seconds) and the account
    /// it was issued for.
    pub fn new(secret: String, issued_at: i64, expires_at: i64, issued_for: String) -> Token {
        Token {
            secret: Secret(secret),
            issued_at,
            expires_at,
            issued_for,
        }
    }
}

/// The token the unit tests build on: secret `s3cr3t`, issued for nothing in particular.
#[cfg(test)]
pub(crate) fn test_token(issued_at: i64, expires_at: i64) -> Token {
    Token::new("s3cr3t".into(), issued_at, expires_at, String::new())
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

/// `<namespace>/<name>` of the account the host kubeconfig's token is for.
fn account_name(settings: &KubeconfigSettings) -> String {
    let account = &settings.service_account;
    format!("{}/{}", account.namespace, account.name)
}

/// Requests a token for the configured account bound to `node`, and checks that it
/// authenticates as that account before returning it.
pub async fn request(
    client: &Client,
    kube_config: &Config,
    node: &str,
    settings: &KubeconfigSettings,
) -> Result<Token, TokenError> {
    let account = account_name(settings);
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
    let token = Token::new(secret, now, expires_at, issuance(settings));
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
    let account = account_name(settings);
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
    let client = crate::api_client::client(&config).map_err(review_failed)?;
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
    let token = Token::new(secret, issued_at, expires_at, issuance(settings));
    let account = account_name(settings);
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

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let t = test_token(0, 10);
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}

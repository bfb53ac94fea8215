//! The host kubeconfig document: where the API server is and which CA signs it, and the
//! text written with a token, built through kube's kubeconfig types and serialized so that
//! no value can change the document's structure.

use base64::Engine as _;
use kube::Config;

use multus_crds::bundle::KubeconfigSettings;

use super::Token;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_token;

    #[test]
    fn the_kubeconfig_embeds_server_ca_and_token() {
        let endpoint = ApiEndpoint {
            server: "https://10.0.0.1:6443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        };
        let text = render_kubeconfig(&endpoint, &test_token(0, 10)).unwrap();
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
            let text = render_kubeconfig(&endpoint, &test_token(0, 10)).unwrap();
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
            let token = Token::new(secret.clone(), 0, 10, String::new());
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

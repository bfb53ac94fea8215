//! The host kubeconfig writer on arbitrary server URLs, CA bundles and tokens, and the
//! token refresh schedule on arbitrary times.
//!
//! Properties: the written kubeconfig parses, with kube's own reader and as generic YAML,
//! back to exactly one cluster, user and context holding the very server, CA bytes and
//! token written (no value can change the document's structure); the refresh point never
//! comes sooner than the retry floor after issue and never later than expiry when the
//! lifetime allows.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use multus_crds::contract::RefreshBefore;
use multus_node_agent::token::{self, ApiEndpoint, RETRY_FLOOR, Token};

#[derive(Arbitrary, Debug)]
struct Input {
    server: String,
    ca_pem: String,
    secret: String,
    issued_at: i64,
    expires_at: i64,
    refresh: String,
    jitter: f64,
}

fuzz_target!(|input: Input| {
    let endpoint = ApiEndpoint {
        server: input.server.clone(),
        ca_pem: input.ca_pem.clone(),
    };
    let token = Token::new(
        input.secret.clone(),
        input.issued_at,
        input.expires_at,
        String::new(),
    );
    let text = token::render_kubeconfig(&endpoint, &token)
        .unwrap_or_else(|e| panic!("cannot write a kubeconfig for {input:?}: {e}"));
    reads_back_as_written(&text, &input);
    refresh_point_is_in_range(&token, &input);
});

fn reads_back_as_written(text: &str, input: &Input) {
    let config = kube::config::Kubeconfig::from_yaml(text)
        .unwrap_or_else(|e| panic!("kube cannot read {text:?}: {e}"));
    assert_eq!(config.clusters.len(), 1, "{text}");
    assert_eq!(config.auth_infos.len(), 1, "{text}");
    assert_eq!(config.contexts.len(), 1, "{text}");
    let cluster = config.clusters[0].cluster.as_ref().expect("a cluster");
    assert_eq!(
        cluster.server.as_deref(),
        Some(input.server.as_str()),
        "{text}"
    );
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            cluster
                .certificate_authority_data
                .as_deref()
                .unwrap_or_default(),
        )
        .expect("the CA is base64");
    assert_eq!(ca, input.ca_pem.as_bytes(), "{text}");
    let context = config.contexts[0].context.as_ref().expect("a context");
    assert_eq!(context.cluster, config.clusters[0].name);
    assert_eq!(
        context.user.as_deref(),
        Some(config.auth_infos[0].name.as_str())
    );
    assert_eq!(
        config.current_context.as_deref(),
        Some(config.contexts[0].name.as_str())
    );

    // Read as the agent re-reads its own file to adopt the token after a restart.
    let generic: Value =
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"));
    assert_eq!(
        generic["users"][0]["user"]["token"].as_str(),
        Some(input.secret.as_str()),
        "{text}"
    );
    assert_eq!(
        generic["clusters"][0]["cluster"]["server"].as_str(),
        Some(input.server.as_str()),
        "{text}"
    );
}

fn refresh_point_is_in_range(token: &Token, input: &Input) {
    let Ok(refresh) = input.refresh.parse::<RefreshBefore>() else {
        return;
    };
    if !input.jitter.is_finite() {
        return;
    }
    let at = token::refresh_at(token, refresh, input.jitter.abs().fract());
    let floor = token.issued_at.saturating_add(RETRY_FLOOR.as_secs() as i64);
    assert!(at >= floor, "{at} before the floor {floor}: {input:?}");
    assert!(
        at <= token.expires_at.max(floor),
        "{at} after expiry: {input:?}"
    );
}

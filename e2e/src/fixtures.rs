//! Helpers tests use to make their own corner of the shared control plane: unique names,
//! namespaces, simulated Nodes, ServiceAccounts and tokens from the TokenRequest API.

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec, UserInfo,
};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::E2eError;

fn kube_err(context: &str) -> impl Fn(kube::Error) -> E2eError + '_ {
    move |e| E2eError::Kube(format!("{context}: {e}"))
}

/// A name unique within this test process: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates a namespace.
pub async fn namespace(client: &Client, name: &str) -> Result<Namespace, E2eError> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(kube_err("create namespace"))
}

/// Creates a simulated Node (no kubelet behind it) with labels and annotations.
pub async fn node(
    client: &Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> Result<Node, E2eError> {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(map(labels)),
            annotations: Some(map(annotations)),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .map_err(kube_err("create node"))
}

/// Creates a ServiceAccount.
pub async fn service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ServiceAccount, E2eError> {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sa)
        .await
        .map_err(kube_err("create serviceaccount"))
}

/// What a minted token is bound to.
#[derive(Clone, Copy, Debug)]
pub enum BoundTo<'a> {
    Node { name: &'a str, uid: &'a str },
    Pod { name: &'a str, uid: &'a str },
}

/// A token from the TokenRequest API for `namespace/name`, bound to a Node or Pod.
pub async fn token(
    client: &Client,
    namespace: &str,
    name: &str,
    bound: BoundTo<'_>,
    expiration_seconds: i64,
) -> Result<TokenRequest, E2eError> {
    let (kind, object, uid) = match bound {
        BoundTo::Node { name, uid } => ("Node", name, uid),
        BoundTo::Pod { name, uid } => ("Pod", name, uid),
    };
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
                name: Some(object.into()),
                uid: Some(uid.into()),
            }),
        }),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(kube_err("request token"))
}

/// Who the API server says the client is (SelfSubjectReview).
pub async fn whoami(client: &Client) -> Result<UserInfo, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review.status.and_then(|s| s.user_info).unwrap_or_default())
}

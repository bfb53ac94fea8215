//! Helpers tests use to make their own corner of the shared control plane: unique names,
//! namespaces, simulated Nodes, ServiceAccounts and tokens from the TokenRequest API.

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, SelfSubjectReview, TokenRequest, TokenRequestSpec, UserInfo,
};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{ControlPlane, E2eError};

/// A name unique within this test process: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Metadata naming an object; the rest left for the API server to fill in.
fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// Creates `object` through `api`; an error says which `kind` could not be created.
async fn create<K>(api: Api<K>, kind: &str, object: &K) -> Result<K, E2eError>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .map_err(|e| E2eError::Kube(format!("create {kind}: {e}")))
}

/// Creates a namespace.
pub async fn namespace(client: &Client, name: &str) -> Result<Namespace, E2eError> {
    let ns = Namespace {
        metadata: named(name),
        ..Namespace::default()
    };
    create(Api::all(client.clone()), "namespace", &ns).await
}

/// An admin client of `cp` and a new namespace with a unique name from `prefix`: one
/// test's own corner of the cluster.
pub async fn test_namespace(cp: &ControlPlane, prefix: &str) -> Result<(Client, String), E2eError> {
    let client = cp.client().await?;
    let ns = unique_name(prefix);
    namespace(&client, &ns).await?;
    Ok((client, ns))
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
            labels: Some(map(labels)),
            annotations: Some(map(annotations)),
            ..named(name)
        },
        ..Node::default()
    };
    create(Api::all(client.clone()), "node", &node).await
}

/// Creates a ServiceAccount.
pub async fn service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ServiceAccount, E2eError> {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            ..named(name)
        },
        ..ServiceAccount::default()
    };
    create(
        Api::namespaced(client.clone(), namespace),
        "serviceaccount",
        &sa,
    )
    .await
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
        .map_err(|e| E2eError::Kube(format!("request token: {e}")))
}

/// Who the API server says the client is (SelfSubjectReview).
pub async fn whoami(client: &Client) -> Result<UserInfo, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review.status.and_then(|s| s.user_info).unwrap_or_default())
}

//! Objects the operator cannot decode do not stop its watches: a NetworkAttachmentDefinition
//! whose `spec.config` is not a string and a MultusConfig stored through a schemaless second
//! version are reported (a Warning Event on each and the `undecodable_objects` gauge), and a
//! valid MultusConfig created after them still gets its bundle. The CRDs are loosened to let
//! such objects in, so this test has a control plane of its own.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

use multus_crds::MultusConfig;
use multus_crds::bundle::{MANAGED_BY_LABEL, NODE_ANNOTATION};
use multus_e2e::operator::{RunningOperator, TEST_LABEL, eventually, wait_event};
use multus_e2e::{ControlPlane, fixtures, unique_name};

/// Deadline for the operator (about a second when idle) and for the API server to serve a
/// changed CRD (a second or two); it holds with both cores busy and another test beside.
const WAIT: Duration = Duration::from_secs(60);
const POOL_LABEL: &str = "e2e.multus.dev/pool";

/// Replaces the CRD `name` with what `change` makes of it.
async fn change_crd(client: &Client, name: &str, change: impl FnOnce(&mut Value)) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut value = serde_json::to_value(crds.get(name).await.unwrap()).unwrap();
    change(&mut value);
    let crd: CustomResourceDefinition = serde_json::from_value(value).unwrap();
    crds.replace(name, &PostParams::default(), &crd)
        .await
        .unwrap();
}

/// Creates `object` through `api`, retrying while the API server does not serve the changed
/// CRD yet (404 for a new version, 422 while the old schema still applies).
async fn create_when_served(api: &Api<DynamicObject>, object: &DynamicObject) {
    eventually("the loosened CRD accepts the object", WAIT, || async {
        match api.create(&PostParams::default(), object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Err(s.message),
            Err(e) => panic!("{e}"),
        }
    })
    .await;
}

#[multus_e2e::test]
async fn undecodable_objects_are_reported_and_the_rest_keeps_reconciling() {
    let cp = ControlPlane::own(ControlPlane::start).await;
    let (client, test) = fixtures::test_namespace(&cp, "undecodable").await.unwrap();
    let node = unique_name("node");
    fixtures::node(&client, &node, &[(POOL_LABEL, test.as_str())], &[])
        .await
        .unwrap();

    // A NAD CRD without a schema for spec (as some clusters have it), and a bad NAD in it.
    change_crd(
        &client,
        "network-attachment-definitions.k8s.cni.cncf.io",
        |crd| {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
                json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true });
        },
    )
    .await;
    let nad_gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let nad_resource =
        ApiResource::from_gvk_with_plural(&nad_gvk, "network-attachment-definitions");
    let bad_nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "bad", "namespace": test },
        "spec": { "config": { "cniVersion": "0.3.1", "type": "bridge" } },
    }))
    .unwrap();
    create_when_served(
        &Api::namespaced_with(client.clone(), &test, &nad_resource),
        &bad_nad,
    )
    .await;
    let good_nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "good", "namespace": test },
        "spec": { "config": r#"{"cniVersion":"0.3.1","type":"bridge","bridge":"br-good"}"# },
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), &test, &nad_resource)
        .create(&PostParams::default(), &good_nad)
        .await
        .unwrap();

    // A second, schemaless version of MultusConfig (no conversion: only apiVersion changes),
    // and a MultusConfig created through it with a nodeSelector of the wrong type. It is
    // stored as v1alpha1 and read back through v1alpha1 without validation.
    change_crd(&client, "multusconfigs.operator.multus.dev", |crd| {
        let mut loose = crd["spec"]["versions"][0].clone();
        loose["name"] = json!("v1alpha2");
        loose["storage"] = json!(false);
        loose["schema"] = json!({ "openAPIV3Schema": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true } });
        if let Some(obj) = loose.as_object_mut() {
            obj.remove("selectableFields");
        }
        if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
            versions.push(loose);
        }
    })
    .await;
    let mc_gvk = GroupVersionKind::gvk("operator.multus.dev", "v1alpha2", "MultusConfig");
    let mc_resource = ApiResource::from_gvk_with_plural(&mc_gvk, "multusconfigs");
    let bad_config: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha2",
        "kind": "MultusConfig",
        "metadata": { "name": format!("{test}-bad"), "labels": { TEST_LABEL: test } },
        "spec": { "nodeSelector": "pool=everything", "primary": { "file": 10 } },
    }))
    .unwrap();
    create_when_served(&Api::all_with(client.clone(), &mc_resource), &bad_config).await;
    let read_back = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("operator.multus.dev", "v1alpha1", "MultusConfig"),
            "multusconfigs",
        ),
    )
    .get(&format!("{test}-bad"))
    .await
    .unwrap();
    assert!(
        serde_json::from_value::<MultusConfig>(serde_json::to_value(&read_back).unwrap()).is_err(),
        "the bad MultusConfig decodes: {read_back:?}"
    );

    let operator = RunningOperator::start(client.clone(), &test, &test, Duration::from_secs(60));
    // Created after the bad objects, and selecting the same node and namespace.
    let config: MultusConfig = serde_json::from_value(json!({
        "apiVersion": "operator.multus.dev/v1alpha1",
        "kind": "MultusConfig",
        "metadata": { "name": format!("{test}-good"), "labels": { TEST_LABEL: test } },
        "spec": {
            "nodeSelector": { "matchLabels": { POOL_LABEL: test } },
            "primary": { "file": "10-calico.conflist" },
            "attachments": { "namespaceSelector": { "matchLabels": {
                "kubernetes.io/metadata.name": test } } },
        },
    }))
    .unwrap();
    Api::<MultusConfig>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &test);
    let good_file = format!("{test}-good.conf");
    let bundle = eventually(
        "the valid MultusConfig's bundle with the good NAD",
        WAIT,
        || async {
            let list = cms
                .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}=multus-operator")))
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|cm| {
                    cm.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(NODE_ANNOTATION))
                        == Some(&node)
                        && cm.data.as_ref().is_some_and(|d| d.contains_key(&good_file))
                })
                .ok_or_else(|| "no bundle yet".to_string())
        },
    )
    .await;
    let files: Vec<&String> = bundle
        .data
        .as_ref()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    assert!(
        !files.iter().any(|f| f.contains("-bad")),
        "the undecodable NAD reached a node: {files:?}"
    );

    // Each is reported: a Warning Event on it and the gauge by kind.
    let events: Api<Event> = Api::all(client.clone());
    for (kind, name) in [
        ("NetworkAttachmentDefinition", "bad".to_string()),
        ("MultusConfig", format!("{test}-bad")),
    ] {
        let event = wait_event(
            &events,
            &format!("an Undecodable Event on {kind} {name}"),
            WAIT,
            |e| {
                e.reason.as_deref() == Some("Undecodable")
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(&name)
                    })
            },
        )
        .await;
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        let gauge = operator.metrics.undecodable(kind).get();
        println!(
            "{kind} {name}: gauge {gauge}; event: {}",
            event.note.unwrap_or_default()
        );
        assert_eq!(gauge, 1, "{kind}");
    }
    let metrics = operator.metrics.encode();
    assert!(
        metrics.contains(
            r#"multus_operator_undecodable_objects{kind="NetworkAttachmentDefinition"} 1"#
        ),
        "{metrics}"
    );
    operator.stop().await;
}

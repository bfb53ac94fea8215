//! One test's corner of the shared control plane, as the operator and agent tests set it
//! up: an admin client, a namespace named after the test, and the chart's identities in it.
//! Test files wrap it with what only they need (a running operator, agent kubeconfigs).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;

use crate::identities::Identities;
use crate::{ControlPlane, E2eError, fixtures};
use multus_crds::NetworkAttachmentDefinition;
use multus_crds::bundle::node_configmap_name;

/// Lets a test file's scenario struct, which holds its [`TestEnv`] in a field `base`, be
/// used as that `TestEnv` (`env.client`, `env.ns`, ...).
#[macro_export]
macro_rules! deref_to_test_env {
    ($env:ty) => {
        impl std::ops::Deref for $env {
            type Target = $crate::test_env::TestEnv;
            fn deref(&self) -> &Self::Target {
                &self.base
            }
        }
    };
}

/// A test's namespace (also its name and its MultusConfigs' test label) and identities.
pub struct TestEnv {
    pub cp: &'static ControlPlane,
    /// Admin, for setting scenarios up and checking results.
    pub client: Client,
    pub ns: String,
    pub test: String,
    /// The chart's identities (thin mode) in `ns`.
    pub identities: Identities,
}

impl TestEnv {
    /// A unique name from `prefix`, its namespace and the chart's identities in it.
    pub async fn new(prefix: &str) -> Result<TestEnv, E2eError> {
        let cp = ControlPlane::shared();
        let (client, test) = fixtures::test_namespace(cp, prefix).await?;
        let identities = Identities::apply(cp, &test, "thin").await?;
        Ok(TestEnv {
            cp,
            client,
            ns: test.clone(),
            test,
            identities,
        })
    }

    /// Creates or replaces (server-side apply) the NAD `name` in the test's namespace.
    pub async fn nad(
        &self,
        name: &str,
        annotations: &BTreeMap<&str, &str>,
        config: &str,
    ) -> Result<(), E2eError> {
        let nad = json!({
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": { "name": name, "namespace": self.ns, "annotations": annotations },
            "spec": { "config": config },
        });
        Api::<NetworkAttachmentDefinition>::namespaced(self.client.clone(), &self.ns)
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&nad),
            )
            .await
            .map(drop)
            .map_err(|e| E2eError::Kube(format!("apply NAD {name}: {e}")))
    }

    /// `node`'s bundle ConfigMap in the test's namespace, if the operator wrote one.
    pub async fn bundle_configmap(&self, node: &str) -> Result<Option<ConfigMap>, E2eError> {
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .get_opt(&node_configmap_name(node))
            .await
            .map_err(|e| E2eError::Kube(format!("get {node}'s bundle: {e}")))
    }
}

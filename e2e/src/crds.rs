//! Installing the project's CRDs (generated from the Rust types) into a control plane, and
//! waiting until the API server serves them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use std::time::{Duration, Instant};

use crate::E2eError;
use crate::control_plane::FIELD_MANAGER;

/// Applies every CRD and waits (30 s each) until it is Established.
pub async fn install(client: &Client) -> Result<(), E2eError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let manifests = multus_crds::crdgen::manifests().map_err(|e| E2eError::Kube(e.to_string()))?;
    let mut names = Vec::new();
    for (_, yaml) in manifests {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&yaml).map_err(|e| E2eError::Kube(e.to_string()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| E2eError::Kube(format!("install CRD {name}: {e}")))?;
        names.push(name);
    }
    for name in names {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crd = crds
                .get(&name)
                .await
                .map_err(|e| E2eError::Kube(e.to_string()))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() >= deadline {
                return Err(E2eError::Kube(format!("CRD {name} not established")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

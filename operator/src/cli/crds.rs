//! `multus-operator crds`: prints the CustomResourceDefinitions, or with `--apply` updates
//! them in the cluster (the chart's pre-upgrade hook: Helm installs `crds/` on the first
//! install only and never updates it).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use std::io::Write;
use std::time::{Duration, Instant};

use multus_crds::MultusConfig;

use super::CliError;

/// Field manager of the applied CRDs.
pub const FIELD_MANAGER: &str = "multus-operator-crds";
/// How long an updated CRD may take to be Established again.
const ESTABLISHED_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Server-side apply the MultusConfig CRD to the cluster instead of printing the CRDs.
    /// It must exist already (the chart's RBAC allows patching it by name, not creating
    /// CRDs).
    #[arg(long)]
    pub apply: bool,
}

/// Prints or applies the CRDs.
pub fn crds(args: &CrdsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !args.apply {
        for (_, yaml) in multus_crds::crdgen::manifests()? {
            write!(out, "---\n{yaml}")?;
        }
        return Ok(());
    }
    super::with_client(|client| apply(client, out))
}

/// Applies the generated MultusConfig CRD and waits until it is Established with the new
/// version; one line goes to `out`. (The chart's NetworkAttachmentDefinition CRD is a
/// template, which Helm updates itself.)
pub async fn apply(client: Client, out: &mut dyn Write) -> Result<(), CliError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in [MultusConfig::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let missing = api
            .get_opt(&name)
            .await
            .map_err(|source| CliError::Kube {
                what: "read a CustomResourceDefinition",
                source,
            })?
            .is_none();
        if missing {
            return Err(CliError::CrdMissing(name));
        }
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(|source| CliError::Kube {
                what: "apply a CustomResourceDefinition",
                source,
            })?;
        let generation = applied.metadata.generation.unwrap_or_default();
        wait_established(&api, &name, generation).await?;
        writeln!(out, "{name}: applied (generation {generation})")?;
    }
    Ok(())
}

/// Waits until the API server has processed `generation` of the CRD and reports it
/// Established.
async fn wait_established(
    api: &Api<CustomResourceDefinition>,
    name: &str,
    generation: i64,
) -> Result<(), CliError> {
    let began = Instant::now();
    loop {
        let crd = api.get(name).await.map_err(|source| CliError::Kube {
            what: "read a CustomResourceDefinition",
            source,
        })?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Established"
                        && c.status == "True"
                        && c.observed_generation.is_none_or(|g| g >= generation)
                })
            });
        if established {
            return Ok(());
        }
        if began.elapsed() >= ESTABLISHED_WAIT {
            return Err(CliError::CrdNotEstablished {
                name: name.to_string(),
                seconds: ESTABLISHED_WAIT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! The primary network as the spec gives it: the rule the agent follows to find the primary
//! on the node, or the NetworkAttachmentDefinition the Multus config names and the
//! capabilities it declares.

use multus_crds::NetworkAttachmentDefinition;
use multus_crds::bundle::PrimaryRule;
use multus_crds::cni;
use multus_crds::multus_config::MultusConfigSpec;

use super::RenderError;
use super::multus::PrimaryAttachment;
use crate::attachments::Catalog;

/// How the agent finds the primary, and the primary NAD when the spec names one.
pub(super) fn primary_rule<'a>(
    spec: &MultusConfigSpec,
    catalog: &Catalog,
    nads: &'a [NetworkAttachmentDefinition],
) -> Result<(PrimaryRule, Option<PrimaryAttachment<'a>>), RenderError> {
    let p = &spec.primary;
    let dir = spec.paths.cni_conf_dir.clone();
    match (&p.auto, &p.file, &p.network_attachment) {
        (Some(auto), None, None) => Ok((
            PrimaryRule::Auto {
                dir,
                exclude: auto.exclude.clone(),
            },
            None,
        )),
        (None, Some(name), None) => Ok((
            PrimaryRule::File {
                dir,
                name: name.clone(),
            },
            None,
        )),
        (None, None, Some(reference)) => {
            let (namespace, name) =
                reference
                    .split_once('/')
                    .ok_or_else(|| RenderError::InvalidSpec {
                        field: "primary.networkAttachment",
                        message: format!("{reference:?} is not <namespace>/<name>"),
                    })?;
            if let Some(ns) = &spec.multus.multus_namespace
                && ns != namespace
            {
                return Err(RenderError::InvalidSpec {
                    field: "multus.multusNamespace",
                    message: format!(
                        "{ns:?} differs from the primary's namespace {namespace:?}; Multus looks the cluster network up in multusNamespace"
                    ),
                });
            }
            let nad = nads
                .iter()
                .find(|n| {
                    n.metadata.namespace.as_deref() == Some(namespace)
                        && n.metadata.name.as_deref() == Some(name)
                })
                .ok_or_else(|| RenderError::PrimaryNotFound {
                    nad: reference.clone(),
                })?;
            let capabilities = primary_capabilities(nad, catalog)?;
            let namespace = nad.metadata.namespace.as_deref().unwrap_or_default();
            let name = nad.metadata.name.as_deref().unwrap_or_default();
            Ok((
                PrimaryRule::NetworkAttachment {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                },
                Some(PrimaryAttachment {
                    namespace,
                    name,
                    capabilities,
                }),
            ))
        }
        _ => Err(RenderError::InvalidSpec {
            field: "primary",
            message: "set exactly one of auto, file or networkAttachment".into(),
        }),
    }
}

/// The primary NAD's capabilities: from spec.config, or, for a file-backed NAD, from the
/// file the operator writes for it.
fn primary_capabilities(
    nad: &NetworkAttachmentDefinition,
    catalog: &Catalog,
) -> Result<Vec<String>, RenderError> {
    let key = nad.key();
    if !nad.spec_config().trim().is_empty() {
        return cni::check(nad.spec_config())
            .map(|c| c.capabilities())
            .map_err(|errors| RenderError::PrimaryInvalid {
                nad: key,
                message: cni::describe(&errors),
            });
    }
    let attachment = catalog
        .attachments
        .iter()
        .find(|a| a.key() == key)
        .ok_or_else(|| RenderError::PrimaryInvalid {
            nad: key.clone(),
            message: "spec.config is empty and the NAD is not among the attachments this MultusConfig writes, so Multus would find no config for it".into(),
        })?;
    let text = cni::to_file_text(&attachment.template)?;
    cni::check(&text)
        .map(|c| c.capabilities())
        .map_err(|errors| RenderError::PrimaryInvalid {
            nad: key,
            message: cni::describe(&errors),
        })
}

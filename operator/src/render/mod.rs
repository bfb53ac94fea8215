//! The pure renderer: (MultusConfig, Node, attachment catalog) -> the node's bundle. No
//! client, no clock, no randomness: the same input always gives the same bytes.

pub mod multus;

use k8s_openapi::api::core::v1::Node;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

use multus_crds::bundle::{
    BundleFile, BundleManifest, DAEMON_CONFIG_NAME, FORMAT_VERSION, FileRole, KubeconfigSettings,
    MAX_BUNDLE_BYTES, NodeBundle, PrimaryRule,
};
use multus_crds::cni;
use multus_crds::contract::{ContractError, FileMode, RefreshBefore};
use multus_crds::multus_config::{Mode, MultusConfigSpec, ServiceAccountRef};
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use crate::attachments::{Attachment, Catalog};
use crate::placeholders::{self, NodeFacts};
use multus::PrimaryAttachment;

/// File mode of every rendered file: configs may carry secrets of plugins (CIS asks 0600).
pub const FILE_MODE: FileMode = FileMode::OWNER_RW;

/// Operator-wide settings the spec may leave out.
#[derive(Clone, Debug)]
pub struct RenderDefaults {
    /// The ServiceAccount whose token goes into the host kubeconfig.
    pub service_account: ServiceAccountRef,
}

impl Default for RenderDefaults {
    fn default() -> Self {
        Self {
            service_account: ServiceAccountRef {
                namespace: "kube-system".into(),
                name: "multus".into(),
            },
        }
    }
}

/// Errors that stop a whole bundle. Variant names are Event reasons and metric labels.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the {0} has no metadata.name")]
    MissingName(&'static str),
    #[error("spec.{field}: {message}")]
    InvalidSpec {
        field: &'static str,
        message: String,
    },
    #[error("primary NetworkAttachmentDefinition {nad} does not exist")]
    PrimaryNotFound { nad: String },
    #[error("primary NetworkAttachmentDefinition {nad} is unusable: {message}")]
    PrimaryInvalid { nad: String, message: String },
    #[error("rendered {file} failed validation: {message}")]
    RenderedInvalid { file: String, message: String },
    #[error(
        "the bundle for node {node} is {size} bytes, over the {limit} a ConfigMap can carry; select fewer attachments"
    )]
    TooLarge {
        node: String,
        size: usize,
        limit: usize,
    },
    #[error("could not serialize a rendered file: {0}")]
    Json(#[from] serde_json::Error),
}

impl RenderError {
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::MissingName(_) => "MissingName",
            RenderError::InvalidSpec { .. } => "InvalidSpec",
            RenderError::PrimaryNotFound { .. } => "PrimaryNotFound",
            RenderError::PrimaryInvalid { .. } => "PrimaryInvalid",
            RenderError::RenderedInvalid { .. } => "RenderedInvalid",
            RenderError::TooLarge { .. } => "BundleTooLarge",
            RenderError::Json(_) => "Serialization",
        }
    }
}

/// An attachment left out of one node's bundle, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAttachmentFailure {
    /// `<namespace>/<name>`.
    pub nad: String,
    pub message: String,
}

/// A node's bundle plus the attachments that could not be rendered for it.
#[derive(Clone, Debug)]
pub struct NodeRender {
    pub bundle: NodeBundle,
    pub failed_attachments: Vec<NodeAttachmentFailure>,
}

/// Whether the MultusConfig's node selector picks a node with these labels.
pub fn selects(
    spec: &MultusConfigSpec,
    labels: &BTreeMap<String, String>,
) -> Result<bool, RenderError> {
    let selector: Selector = spec
        .node_selector
        .clone()
        .unwrap_or_default()
        .try_into()
        .map_err(
            |e: kube::core::ParseExpressionError| RenderError::InvalidSpec {
                field: "nodeSelector",
                message: e.to_string(),
            },
        )?;
    Ok(selector.matches(labels))
}

/// Renders one node's bundle.
pub fn render_node(
    config: &MultusConfig,
    node: &Node,
    catalog: &Catalog,
    nads: &[NetworkAttachmentDefinition],
    defaults: &RenderDefaults,
) -> Result<NodeRender, RenderError> {
    let spec = &config.spec;
    let config_name = config
        .metadata
        .name
        .clone()
        .ok_or(RenderError::MissingName("MultusConfig"))?;
    let node_name = node
        .metadata
        .name
        .clone()
        .ok_or(RenderError::MissingName("Node"))?;

    let (rule, primary_nad) = primary_rule(spec, catalog, nads)?;
    let mut files = Vec::new();
    let mut data = BTreeMap::new();

    let multus_name = multus::file_name(spec);
    let text = cni::to_file_text(&multus::multus_config(spec, primary_nad.as_ref()))?;
    check_rendered(multus_name, &text)?;
    files.push(file(
        multus_name,
        &spec.paths.cni_conf_dir,
        FileRole::MultusConfig,
        None,
    ));
    data.insert(multus_name.to_string(), text);

    if spec.mode == Mode::Thick {
        let text = cni::to_file_text(&multus::daemon_config(spec, primary_nad.as_ref()))?;
        let dir = format!("{}/{}", spec.paths.cni_conf_dir, multus::DAEMON_COPY_SUBDIR);
        files.push(file(DAEMON_CONFIG_NAME, &dir, FileRole::DaemonConfig, None));
        data.insert(DAEMON_CONFIG_NAME.to_string(), text);
    }

    let facts = NodeFacts {
        name: &node_name,
        labels: node.metadata.labels.as_ref(),
        annotations: node.metadata.annotations.as_ref(),
    };
    let mut failed_attachments = Vec::new();
    for attachment in &catalog.attachments {
        let text = match &attachment.text {
            Some(text) => text.clone(),
            None => match attachment_text(attachment, &facts)? {
                Ok(text) => text,
                Err(failure) => {
                    failed_attachments.push(failure);
                    continue;
                }
            },
        };
        files.push(file(
            &attachment.file_name,
            &spec.paths.multus_conf_dir,
            FileRole::Attachment,
            Some(attachment.key()),
        ));
        data.insert(attachment.file_name.clone(), text);
    }

    let refresh_before_expiry = match &spec.kubeconfig.refresh_before_expiry {
        None => RefreshBefore::DEFAULT,
        Some(text) => text
            .parse()
            .map_err(|e: ContractError| RenderError::InvalidSpec {
                field: "kubeconfig.refreshBeforeExpiry",
                message: e.to_string(),
            })?,
    };
    let kubeconfig = spec.kubeconfig.enabled.then(|| KubeconfigSettings {
        path: spec.paths.kubeconfig_path.clone(),
        service_account: spec
            .kubeconfig
            .service_account
            .clone()
            .unwrap_or_else(|| defaults.service_account.clone()),
        expiration_seconds: spec.kubeconfig.expiration_seconds,
        refresh_before_expiry,
        audiences: spec.kubeconfig.audiences.clone(),
        server: spec.kubeconfig.server.clone(),
        certificate_authority: spec.kubeconfig.certificate_authority.clone(),
    });
    let manifest = BundleManifest {
        format_version: FORMAT_VERSION,
        multus_config: config_name,
        node: node_name.clone(),
        mode: spec.mode,
        bundle_hash: String::new(),
        files,
        primary: rule,
        multus_path_prefix: match spec.mode {
            Mode::Thin => String::new(),
            Mode::Thick => spec.thick.daemon_path_prefix.clone(),
        },
        kubeconfig,
        readiness_indicator_file: spec.multus.readiness_indicator_file.clone(),
    };
    let bundle = NodeBundle::seal(manifest, data);
    let size = bundle.byte_size()?;
    if size > MAX_BUNDLE_BYTES {
        return Err(RenderError::TooLarge {
            node: node_name,
            size,
            limit: MAX_BUNDLE_BYTES,
        });
    }
    Ok(NodeRender {
        bundle,
        failed_attachments,
    })
}

/// An attachment's file text for one node: its placeholders filled in, then checked again.
fn attachment_text(
    attachment: &Attachment,
    facts: &NodeFacts<'_>,
) -> Result<Result<String, NodeAttachmentFailure>, RenderError> {
    let failure = |message: String| NodeAttachmentFailure {
        nad: attachment.key(),
        message,
    };
    let value = if attachment.has_placeholders {
        match placeholders::substitute(&attachment.template, facts) {
            Ok(v) => v,
            Err(missing) => return Ok(Err(failure(missing.to_string()))),
        }
    } else {
        attachment.template.clone()
    };
    let text = cni::to_file_text(&value)?;
    // Substituted values can only change strings, but one of them may be cniVersion.
    Ok(match cni::check(&text) {
        Ok(_) => Ok(text),
        Err(errors) => Err(failure(format!(
            "after filling in node values: {}",
            cni::describe(&errors)
        ))),
    })
}

fn file(name: &str, dir: &str, role: FileRole, source: Option<String>) -> BundleFile {
    BundleFile {
        key: name.to_string(),
        dir: dir.to_string(),
        name: name.to_string(),
        mode: FILE_MODE,
        sha256: String::new(),
        role,
        source,
    }
}

/// Every rendered file must pass the same validation the NADs pass. A failure here is a bug
/// in the renderer, reported instead of written.
fn check_rendered(name: &str, text: &str) -> Result<(), RenderError> {
    cni::check(text)
        .map(|_| ())
        .map_err(|errors| RenderError::RenderedInvalid {
            file: name.to_string(),
            message: cni::describe(&errors),
        })
}

/// How the agent finds the primary, and the primary NAD when the spec names one.
fn primary_rule<'a>(
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

//! The pure renderer: (MultusConfig, attachment catalog, Node) -> the node's bundle, in two
//! stages. [`prepare`] does what depends on the MultusConfig alone, once per reconcile: the
//! primary rule, the Multus config, the kubeconfig settings and every attachment without
//! placeholders. [`PreparedConfig::node`] (in `node.rs`) adds what depends on the node. No
//! client, no clock, no randomness: the same input always gives the same bytes.

pub mod multus;
mod node;
mod primary;

use k8s_openapi::api::core::v1::Node;

use multus_crds::bundle::{
    BundleFile, DAEMON_CONFIG_NAME, FileRole, KubeconfigSettings, NodeBundle, PrimaryRule,
};
use multus_crds::cni;
use multus_crds::contract::{ContractError, FileMode, RefreshBefore};
use multus_crds::multus_config::{Mode, ServiceAccountRef};
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

use crate::attachments::{Attachment, Catalog};

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

/// What every node of one MultusConfig gets alike, rendered once; see [`PreparedConfig::node`]
/// for the rest.
#[derive(Clone, Debug)]
pub struct PreparedConfig {
    config_name: String,
    mode: Mode,
    rule: PrimaryRule,
    /// Files with the same bytes on every node, with their text: the Multus config, the
    /// daemon config in thick mode, and attachments without placeholders.
    fixed: Vec<(BundleFile, String)>,
    /// Attachments rendered per node: those with placeholders (and any whose text failed the
    /// check once, which is then reported for each node).
    templated: Vec<(BundleFile, Attachment)>,
    multus_path_prefix: String,
    kubeconfig: Option<KubeconfigSettings>,
    readiness_indicator_file: Option<String>,
}

/// The per-config stage. Every error here concerns the spec or the primary NAD, so it
/// holds for every node alike.
pub fn prepare(
    config: &MultusConfig,
    catalog: &Catalog,
    nads: &[NetworkAttachmentDefinition],
    defaults: &RenderDefaults,
) -> Result<PreparedConfig, RenderError> {
    let spec = &config.spec;
    let config_name = config
        .metadata
        .name
        .clone()
        .ok_or(RenderError::MissingName("MultusConfig"))?;
    let (rule, primary_nad) = primary::primary_rule(spec, catalog, nads)?;
    let mut fixed = Vec::new();

    let multus_name = multus::file_name(spec);
    let text = cni::to_file_text(&multus::multus_config(spec, primary_nad.as_ref()))?;
    check_rendered(multus_name, &text)?;
    let multus_file = file(
        multus_name,
        &spec.paths.cni_conf_dir,
        FileRole::MultusConfig,
        None,
    );
    fixed.push((multus_file, text));

    if spec.mode == Mode::Thick {
        let text = cni::to_file_text(&multus::daemon_config(spec, primary_nad.as_ref()))?;
        let dir = format!("{}/{}", spec.paths.cni_conf_dir, multus::DAEMON_COPY_SUBDIR);
        let daemon_file = file(DAEMON_CONFIG_NAME, &dir, FileRole::DaemonConfig, None);
        fixed.push((daemon_file, text));
    }

    let mut templated = Vec::new();
    for attachment in &catalog.attachments {
        let entry = file(
            &attachment.file_name,
            &spec.paths.multus_conf_dir,
            FileRole::Attachment,
            Some(attachment.key()),
        );
        match &attachment.text {
            Some(text) => fixed.push((entry, text.clone())),
            None => templated.push((entry, attachment.clone())),
        }
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
    Ok(PreparedConfig {
        config_name,
        mode: spec.mode,
        rule,
        fixed,
        templated,
        multus_path_prefix: match spec.mode {
            Mode::Thin => String::new(),
            Mode::Thick => spec.thick.daemon_path_prefix.clone(),
        },
        kubeconfig,
        readiness_indicator_file: spec.multus.readiness_indicator_file.clone(),
    })
}

/// Renders one node's bundle: both stages at once, for callers that render a single node.
pub fn render_node(
    config: &MultusConfig,
    node: &Node,
    catalog: &Catalog,
    nads: &[NetworkAttachmentDefinition],
    defaults: &RenderDefaults,
) -> Result<NodeRender, RenderError> {
    prepare(config, catalog, nads, defaults)?.node(node)
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

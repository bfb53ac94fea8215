//! Which NetworkAttachmentDefinitions become node files, checked once for the whole cluster:
//! selection, CNI validation, placeholder syntax, name clashes and lint. Nothing invalid
//! leaves this module, because one unparsable file in Multus' confDir breaks every network.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use serde_json::Value;
use std::collections::{BTreeMap, btree_map::Entry};

use multus_crds::cni;
use multus_crds::multus_config::AttachmentSelection;
use multus_crds::nad::{
    NODE_CONFIG_ANNOTATION, NetworkAttachmentDefinition, RESOURCE_NAME_ANNOTATION,
};

use crate::placeholders;

/// Why a NAD was rejected or warned about. Variant names are Event reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The config failed CNI validation (see the message for which check).
    InvalidConfig(cni::Problem),
    NoConfig,
    PlaceholderInSpecConfig,
    InvalidPlaceholder,
    NameClash,
    FileNameClash,
    DeviceInfoWithoutResource,
    NameOverridden,
    SpecConfigShadowsNodeConfig,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidConfig(p) => p.as_str(),
            Reason::NoConfig => "NoConfig",
            Reason::PlaceholderInSpecConfig => "PlaceholderInSpecConfig",
            Reason::InvalidPlaceholder => "InvalidPlaceholder",
            Reason::NameClash => "NameClash",
            Reason::FileNameClash => "FileNameClash",
            Reason::DeviceInfoWithoutResource => "DeviceInfoWithoutResource",
            Reason::NameOverridden => "NameOverridden",
            Reason::SpecConfigShadowsNodeConfig => "SpecConfigShadowsNodeConfig",
        }
    }
}

/// Something wrong (or suspicious) about one NAD, located by JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `<namespace>/<name>`.
    pub nad: String,
    pub reason: Reason,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {} [{}]",
            self.nad,
            self.path,
            self.message,
            self.reason.as_str()
        )
    }
}

/// A NAD ready to be rendered per node.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub namespace: String,
    pub name: String,
    /// `<namespace>-<name>.conf` or `.conflist`.
    pub file_name: String,
    /// The config with `name` set to the NAD name; may hold node placeholders.
    pub template: Value,
    pub has_placeholders: bool,
    /// The file's text when it needs no node values, rendered and checked once here instead
    /// of once per node; `None` for templates with placeholders (and for the rare text that
    /// fails the check, which is then reported per node).
    pub text: Option<String>,
}

impl Attachment {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The outcome for the whole cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Sorted by file name.
    pub attachments: Vec<Attachment>,
    /// NADs that never reach a node.
    pub rejected: Vec<Finding>,
    /// NADs that are written but will misbehave at pod time.
    pub warnings: Vec<Finding>,
}

/// An attachment selector that cannot be evaluated.
#[derive(Debug, thiserror::Error)]
#[error("invalid label selector in spec.attachments.{field}: {message}")]
pub struct SelectorError {
    pub field: &'static str,
    pub message: String,
}

/// Namespace name to its labels.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Selects, validates and de-duplicates the NADs a MultusConfig materializes.
pub fn build(
    selection: Option<&AttachmentSelection>,
    nads: &[NetworkAttachmentDefinition],
    namespaces: &NamespaceLabels,
) -> Result<Catalog, SelectorError> {
    let mut catalog = Catalog::default();
    let empty = BTreeMap::new();
    let mut selected: Vec<&NetworkAttachmentDefinition> = match selection {
        None => vec![],
        Some(selection) => {
            let ns_selector = selector(selection.namespace_selector.as_ref(), "namespaceSelector")?;
            let nad_selector = selector(selection.selector.as_ref(), "selector")?;
            nads.iter()
                .filter(|nad| {
                    let ns = nad.metadata.namespace.as_deref().unwrap_or_default();
                    ns_selector.matches(namespaces.get(ns).unwrap_or(&empty))
                        && nad_selector.matches(nad.metadata.labels.as_ref().unwrap_or(&empty))
                })
                .collect()
        }
    };
    // Multus reads every NAD a pod names from the API server, not only those written to
    // nodes: the device-info lint covers the others' inline configs too.
    let written: std::collections::BTreeSet<String> = selected.iter().map(|n| n.key()).collect();
    for nad in nads {
        if written.contains(&nad.key()) {
            continue;
        }
        if let Ok(config) = serde_json::from_str::<Value>(nad.spec_config()) {
            catalog.warnings.extend(device_info_finding(nad, &config));
        }
    }
    // Oldest first, so the first claimant of a name keeps it when a newer NAD clashes.
    selected.sort_by(|a, b| {
        let age = |n: &NetworkAttachmentDefinition| n.metadata.creation_timestamp.clone();
        age(a).cmp(&age(b)).then_with(|| a.key().cmp(&b.key()))
    });

    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut by_file: BTreeMap<String, String> = BTreeMap::new();
    for nad in selected {
        let attachment = match check_one(nad, &mut catalog.warnings) {
            Ok(a) => a,
            Err(finding) => {
                catalog.rejected.push(finding);
                continue;
            }
        };
        if let Some(winner) = by_name.get(&attachment.name) {
            catalog.rejected.push(clash(
                &attachment,
                Reason::NameClash,
                format!(
                    "{winner} already uses the network name {:?}; Multus finds networks in confDir by name, so only the older one is written",
                    attachment.name
                ),
            ));
            continue;
        }
        match by_file.entry(attachment.file_name.clone()) {
            Entry::Occupied(winner) => {
                let message = format!(
                    "{} already writes {}; only the older one is written",
                    winner.get(),
                    attachment.file_name
                );
                catalog
                    .rejected
                    .push(clash(&attachment, Reason::FileNameClash, message));
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(attachment.key());
            }
        }
        by_name.insert(attachment.name.clone(), attachment.key());
        catalog.attachments.push(attachment);
    }
    catalog
        .attachments
        .sort_by(|a, b| a.file_name.cmp(&b.file_name));
    catalog.rejected.sort_by(|a, b| a.nad.cmp(&b.nad));
    catalog.warnings.sort_by(|a, b| a.nad.cmp(&b.nad));
    Ok(catalog)
}

fn selector(sel: Option<&LabelSelector>, field: &'static str) -> Result<Selector, SelectorError> {
    sel.cloned()
        .unwrap_or_default()
        .try_into()
        .map_err(|e: kube::core::ParseExpressionError| SelectorError {
            field,
            message: e.to_string(),
        })
}

fn clash(attachment: &Attachment, reason: Reason, message: String) -> Finding {
    Finding {
        nad: attachment.key(),
        reason,
        path: "$.name".into(),
        message,
    }
}

/// Checks one NAD and turns it into an attachment, adding lint warnings on the way.
fn check_one(
    nad: &NetworkAttachmentDefinition,
    warnings: &mut Vec<Finding>,
) -> Result<Attachment, Finding> {
    let key = nad.key();
    let finding = |reason, path: &str, message: String| Finding {
        nad: key.clone(),
        reason,
        path: path.to_string(),
        message,
    };
    let namespace = nad.metadata.namespace.clone().unwrap_or_default();
    let name = nad.metadata.name.clone().unwrap_or_default();
    let spec_config = nad.spec_config();
    let node_config = nad
        .annotation(NODE_CONFIG_ANNOTATION)
        .filter(|c| !c.trim().is_empty());

    let (text, location) = match node_config {
        Some(text) => {
            if !spec_config.trim().is_empty() {
                warnings.push(finding(
                    Reason::SpecConfigShadowsNodeConfig,
                    "spec.config",
                    format!(
                        "spec.config is set, so Multus uses it and never reads the node file from the {NODE_CONFIG_ANNOTATION} annotation; empty spec.config to use the node file"
                    ),
                ));
            }
            (
                text,
                format!("metadata.annotations[{NODE_CONFIG_ANNOTATION}]"),
            )
        }
        None if spec_config.trim().is_empty() => {
            return Err(finding(
                Reason::NoConfig,
                "spec.config",
                format!(
                    "nothing to write: spec.config is empty and there is no {NODE_CONFIG_ANNOTATION} annotation"
                ),
            ));
        }
        None => (spec_config, "spec.config".to_string()),
    };

    let checked = cni::check(text).map_err(|errors| {
        let first = errors
            .first()
            .map(|e| e.problem)
            .unwrap_or(cni::Problem::InvalidJson);
        let path = errors.first().map(|e| e.path.clone()).unwrap_or_default();
        let mut message = errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        for more in errors.iter().skip(1) {
            message.push_str(&format!("; {}: {}", more.path, more.message));
        }
        message.push_str(&format!(" (in {location})"));
        finding(Reason::InvalidConfig(first), &path, message)
    })?;

    let mut template = Value::Object(checked.value.clone());
    let found = placeholders::scan(&template).map_err(|e| {
        finding(
            Reason::InvalidPlaceholder,
            &e.path,
            format!("{location}: {}", e.message),
        )
    })?;
    if !found.is_empty() && node_config.is_none() {
        return Err(finding(
            Reason::PlaceholderInSpecConfig,
            "spec.config",
            format!(
                "spec.config uses node placeholders, but Multus reads spec.config as it is; move the config to the {NODE_CONFIG_ANNOTATION} annotation and leave spec.config empty"
            ),
        ));
    }

    if let Some(existing) = checked.value.get("name").and_then(Value::as_str)
        && existing != name
    {
        warnings.push(finding(
            Reason::NameOverridden,
            "$.name",
            format!(
                "the config's name {existing:?} is replaced by the NAD name {name:?}, which is what Multus matches in confDir"
            ),
        ));
    }
    warnings.extend(device_info_finding(nad, &template));

    if let Value::Object(map) = &mut template {
        map.insert("name".into(), Value::String(name.clone()));
    }
    let extension = if checked.is_list { "conflist" } else { "conf" };
    let text = if found.is_empty() {
        cni::to_file_text(&template)
            .ok()
            .filter(|text| cni::check(text).is_ok())
    } else {
        None
    };
    Ok(Attachment {
        file_name: format!("{namespace}-{name}.{extension}"),
        namespace,
        name,
        template,
        has_placeholders: !found.is_empty(),
        text,
    })
}

/// Multus writes device info only when a device ID was allocated, which needs the NAD's
/// resource name annotation: a config that asks for it without one gets none.
fn device_info_finding(nad: &NetworkAttachmentDefinition, config: &Value) -> Option<Finding> {
    (asks_for_device_info(config) && nad.annotation(RESOURCE_NAME_ANNOTATION).is_none()).then(|| {
        Finding {
            nad: nad.key(),
            reason: Reason::DeviceInfoWithoutResource,
            path: "metadata.annotations".into(),
            message: format!(
                "the config asks for CNIDeviceInfoFile but the NAD has no {RESOURCE_NAME_ANNOTATION} annotation; Multus only writes device info when a device ID is allocated, so the plugin will find no file"
            ),
        }
    })
}

/// A config asks for device info when any object has a `CNIDeviceInfoFile` key or declares
/// the `CNIDeviceInfoFile` or `deviceID` capability.
fn asks_for_device_info(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.contains_key("CNIDeviceInfoFile")
                || map
                    .get("capabilities")
                    .and_then(Value::as_object)
                    .is_some_and(|caps| {
                        ["CNIDeviceInfoFile", "deviceID"]
                            .iter()
                            .any(|c| caps.get(*c).and_then(Value::as_bool) == Some(true))
                    })
                || map.values().any(asks_for_device_info)
        }
        Value::Array(items) => items.iter().any(asks_for_device_info),
        _ => false,
    }
}

#[cfg(test)]
mod tests;

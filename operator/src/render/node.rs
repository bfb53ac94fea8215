//! The per-node stage of rendering: a [`PreparedConfig`] plus one Node gives that node's
//! bundle. Only attachments with placeholders are rendered here; everything else was
//! rendered once for the config.

use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;

use multus_crds::bundle::{BundleManifest, FORMAT_VERSION, MAX_BUNDLE_BYTES, NodeBundle};
use multus_crds::cni;

use super::{NodeAttachmentFailure, NodeRender, PreparedConfig, RenderError};
use crate::attachments::Attachment;
use crate::placeholders::{self, NodeFacts};

impl PreparedConfig {
    /// Renders one node's bundle. The same config and node always give the same bytes.
    pub fn node(&self, node: &Node) -> Result<NodeRender, RenderError> {
        let node_name = node
            .metadata
            .name
            .clone()
            .ok_or(RenderError::MissingName("Node"))?;
        let mut files = Vec::with_capacity(self.fixed.len() + self.templated.len());
        let mut data = BTreeMap::new();
        for (file, text) in &self.fixed {
            files.push(file.clone());
            data.insert(file.key.clone(), text.clone());
        }
        let facts = NodeFacts {
            name: &node_name,
            labels: node.metadata.labels.as_ref(),
            annotations: node.metadata.annotations.as_ref(),
        };
        let mut failed_attachments = Vec::new();
        for (file, attachment) in &self.templated {
            match attachment_text(attachment, &facts)? {
                Ok(text) => {
                    files.push(file.clone());
                    data.insert(file.key.clone(), text);
                }
                Err(failure) => failed_attachments.push(failure),
            }
        }
        let manifest = BundleManifest {
            format_version: FORMAT_VERSION,
            multus_config: self.config_name.clone(),
            node: node_name.clone(),
            mode: self.mode,
            bundle_hash: String::new(),
            files,
            primary: self.rule.clone(),
            multus_path_prefix: self.multus_path_prefix.clone(),
            kubeconfig: self.kubeconfig.clone(),
            readiness_indicator_file: self.readiness_indicator_file.clone(),
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

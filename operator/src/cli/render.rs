//! `multus-operator render`: one node's bundle, printed the way it lands on disk.

use std::borrow::Cow;
use std::io::Write;

use multus_crds::bundle::{FileRole, NodeBundle, PrimaryRule};
use multus_crds::completion::complete_for_manifest;

use super::inputs::Inputs;
use super::{CliError, Output, RenderArgs};
use crate::ownership::selects;
use crate::render::{RenderDefaults, render_node};
use crate::{attachments, configmap};

/// Renders the chosen node and prints its files (or ConfigMap) to `out`; findings to `err`.
pub fn render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let inputs = Inputs::read(&args.files)?;
    for skipped in &inputs.skipped {
        writeln!(err, "note: skipped {skipped}")?;
    }
    let config = inputs.config(args.multus_config.as_deref())?;
    let node = inputs.node(args.node.as_deref())?;
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !selects(&config.spec, &labels)? {
        writeln!(
            err,
            "warning: the nodeSelector of this MultusConfig does not select node {node_name}; the operator would give it no bundle"
        )?;
    }

    let catalog = attachments::build(
        config.spec.attachments.as_ref(),
        &inputs.nads,
        &inputs.namespaces,
    )?;
    for finding in &catalog.rejected {
        writeln!(err, "rejected: {finding}")?;
    }
    for finding in &catalog.warnings {
        writeln!(err, "warning: {finding}")?;
    }
    let defaults = RenderDefaults {
        service_account: args.multus_service_account.clone(),
    };
    let rendered = render_node(config, node, &catalog, &inputs.nads, &defaults)?;
    for failure in &rendered.failed_attachments {
        writeln!(
            err,
            "not on this node: {}: {}",
            failure.nad, failure.message
        )?;
    }

    match args.output {
        Output::Configmap => {
            let cm = configmap::bundle_configmap(&rendered.bundle, &args.namespace)?;
            let yaml = serde_saphyr::to_string(&cm)?;
            write!(out, "{yaml}")?;
        }
        Output::Files => {
            let primary_text =
                match &args.primary_file {
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
                        CliError::PrimaryFile {
                            path: path.clone(),
                            source,
                        }
                    })?),
                    None => None,
                };
            let primary_name = args
                .primary_file
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            print_files(
                &rendered.bundle,
                primary_name.as_deref().zip(primary_text.as_deref()),
                out,
            )?;
        }
    }
    Ok(())
}

fn print_files(
    bundle: &NodeBundle,
    primary: Option<(&str, &str)>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let manifest = &bundle.manifest;
    writeln!(
        out,
        "# node {} from MultusConfig {} ({:?} mode), bundle {}",
        manifest.node,
        manifest.multus_config,
        manifest.mode,
        &manifest.bundle_hash[..12.min(manifest.bundle_hash.len())]
    )?;
    for file in &manifest.files {
        let text = bundle
            .data
            .get(&file.key)
            .map(String::as_str)
            .unwrap_or_default();
        let path = format!("{}/{}", file.dir, file.name);
        let completing = file.role == FileRole::MultusConfig && manifest.primary.needs_node_file();
        // What the header says after the mode, and the bytes shown under it.
        let (note, shown) = match (completing, primary) {
            (true, Some((name, primary_text))) => (
                format!(", completed with primary {name}"),
                Cow::Owned(complete_for_manifest(manifest, text, name, primary_text)?),
            ),
            (true, None) => (
                format!(
                    "; the agent adds the primary {}; pass --primary-file to see it completed",
                    describe_primary(&manifest.primary)
                ),
                Cow::Borrowed(text),
            ),
            (false, _) => (format!(", sha256 {}", file.sha256), Cow::Borrowed(text)),
        };
        writeln!(out, "\n# {path} (mode {}{note})", file.mode)?;
        write!(out, "{shown}")?;
    }
    if let Some(kc) = &manifest.kubeconfig {
        writeln!(
            out,
            "\n# {} (mode 0600): written by the agent with a token for ServiceAccount {}/{}, valid {}s, replaced {} before expiry",
            kc.path,
            kc.service_account.namespace,
            kc.service_account.name,
            kc.expiration_seconds,
            kc.refresh_before_expiry
        )?;
    }
    Ok(())
}

fn describe_primary(rule: &PrimaryRule) -> String {
    match rule {
        PrimaryRule::Auto { dir, exclude } if exclude.is_empty() => {
            format!("chosen automatically from {dir}")
        }
        PrimaryRule::Auto { dir, exclude } => format!(
            "chosen automatically from {dir}, never one matching {}",
            exclude.join(", ")
        ),
        PrimaryRule::File { dir, name } => format!("from {dir}/{name}"),
        PrimaryRule::NetworkAttachment { namespace, name } => format!("NAD {namespace}/{name}"),
    }
}

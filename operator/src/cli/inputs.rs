//! Reading Kubernetes manifests from YAML files for the offline tools.

use k8s_openapi::api::core::v1::{Namespace, Node};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::attachments::NamespaceLabels;
use multus_crds::{MultusConfig, NetworkAttachmentDefinition};

/// Errors reading manifests.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {}", yaml_message(path, source))]
    Yaml {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path}: document {index} is not a valid {kind}: {source}")]
    Object {
        path: PathBuf,
        index: usize,
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no {0} in the given manifests")]
    Missing(&'static str),
    #[error("several {kind}s in the manifests ({names}); pick one with --{flag}")]
    Ambiguous {
        kind: &'static str,
        flag: &'static str,
        names: String,
    },
    #[error("no {kind} named {name:?} in the given manifests")]
    NotFound { kind: &'static str, name: String },
}

/// Everything read from the manifests.
#[derive(Debug, Default)]
pub struct Inputs {
    pub configs: Vec<MultusConfig>,
    pub nodes: Vec<Node>,
    pub nads: Vec<NetworkAttachmentDefinition>,
    pub namespaces: NamespaceLabels,
    /// Kinds that were skipped, for a note on stderr.
    pub skipped: Vec<String>,
}

impl Inputs {
    /// Reads every file (`-` is stdin).
    pub fn read(paths: &[PathBuf]) -> Result<Inputs, InputError> {
        let mut inputs = Inputs::default();
        for path in paths {
            let text = read_text(path)?;
            inputs.add(path, &text)?;
        }
        Ok(inputs)
    }

    /// Adds every document of one YAML text (empty documents are skipped and not counted).
    pub fn add(&mut self, path: &Path, text: &str) -> Result<(), InputError> {
        let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
            .map_err(|source| InputError::Yaml {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        for (index, value) in documents.into_iter().enumerate() {
            self.add_value(path, index, value)?;
        }
        Ok(())
    }

    fn add_value(&mut self, path: &Path, index: usize, value: Value) -> Result<(), InputError> {
        if value.is_null() {
            return Ok(());
        }
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = |source| InputError::Object {
            path: path.to_path_buf(),
            index,
            kind: kind.clone(),
            source,
        };
        match kind.as_str() {
            "MultusConfig" => self
                .configs
                .push(serde_json::from_value(value.clone()).map_err(object)?),
            "Node" => self
                .nodes
                .push(serde_json::from_value(value.clone()).map_err(object)?),
            "NetworkAttachmentDefinition" => self
                .nads
                .push(serde_json::from_value(value.clone()).map_err(object)?),
            "Namespace" => {
                let ns: Namespace = serde_json::from_value(value.clone()).map_err(object)?;
                if let Some(name) = ns.metadata.name {
                    self.namespaces
                        .insert(name, ns.metadata.labels.unwrap_or_default());
                }
            }
            "List" => {
                let items = value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    self.add_value(path, index, item)?;
                }
            }
            other => self.skipped.push(if other.is_empty() {
                format!("{}: document {index} has no kind", path.display())
            } else {
                format!("{}: document {index} of kind {other}", path.display())
            }),
        }
        Ok(())
    }

    /// The MultusConfig to use: the named one, or the only one.
    pub fn config(&self, name: Option<&str>) -> Result<&MultusConfig, InputError> {
        pick(&self.configs, name, "MultusConfig", "multus-config", |c| {
            c.metadata.name.as_deref()
        })
    }

    /// The Node to render for: the named one, or the only one.
    pub fn node(&self, name: Option<&str>) -> Result<&Node, InputError> {
        pick(&self.nodes, name, "Node", "node", |n| {
            n.metadata.name.as_deref()
        })
    }
}

fn pick<'a, T>(
    items: &'a [T],
    name: Option<&str>,
    kind: &'static str,
    flag: &'static str,
    name_of: impl Fn(&T) -> Option<&str>,
) -> Result<&'a T, InputError> {
    match name {
        Some(wanted) => items
            .iter()
            .find(|i| name_of(i) == Some(wanted))
            .ok_or_else(|| InputError::NotFound {
                kind,
                name: wanted.to_string(),
            }),
        None => match items {
            [] => Err(InputError::Missing(kind)),
            [only] => Ok(only),
            many => Err(InputError::Ambiguous {
                kind,
                flag,
                names: many
                    .iter()
                    .map(|i| name_of(i).unwrap_or("<unnamed>"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

/// The parser's message for a YAML error, its snippet naming the file. The parser starts its
/// message with its own `error: `, which the command line already prints once.
fn yaml_message(path: &Path, error: &serde_saphyr::Error) -> String {
    let name = path.display().to_string();
    let text = error.render_with_options(serde_saphyr::render_options! {
        source_name: Some(name.as_str()),
    });
    match text.strip_prefix("error: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// How plain scalars are typed when a manifest is read as a generic tree: YAML 1.2 core, so
/// that `yes`, `on`, `0755` or `1_000` stay strings (a label value `yes` is the string "yes"),
/// and `<<` is an ordinary key.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        merge_keys: serde_saphyr::MergeKeyPolicy::AsOrdinary,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    }
}

fn read_text(path: &Path) -> Result<String, InputError> {
    let read = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(read)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_and_list_item_is_read_and_empty_documents_are_skipped() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: Node\nmetadata: { name: a }\n\
                    ---\n---\napiVersion: v1\nkind: List\nitems:\n- { apiVersion: v1, kind: Node, metadata: { name: b } }\n\
                    - { apiVersion: v1, kind: Secret, metadata: { name: s } }\n";
        let mut inputs = Inputs::default();
        inputs
            .add(Path::new("m.yaml"), text)
            .expect("valid manifests");
        let names: Vec<_> = inputs
            .nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(inputs.skipped, ["m.yaml: document 1 of kind Secret"]);
    }

    #[test]
    fn plain_scalars_that_look_like_booleans_or_octal_stay_strings() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: { gpu: yes, legacy: on, mode: 0755, count: 1_000 }\n";
        let mut inputs = Inputs::default();
        inputs
            .add(Path::new("ns.yaml"), text)
            .expect("valid namespace");
        let labels = &inputs.namespaces["team-a"];
        assert_eq!(labels["gpu"], "yes");
        assert_eq!(labels["legacy"], "on");
        assert_eq!(labels["mode"], "0755");
        assert_eq!(labels["count"], "1_000");
    }

    #[test]
    fn a_duplicate_key_or_broken_yaml_is_refused_with_the_file_named() {
        let mut inputs = Inputs::default();
        for text in [
            "apiVersion: v1\nkind: Node\nkind: Node\n",
            "kind: Node\n---\nmetadata: [\n",
        ] {
            let err = inputs
                .add(Path::new("bad.yaml"), text)
                .expect_err("refused");
            assert!(
                matches!(&err, InputError::Yaml { path, .. } if path == Path::new("bad.yaml")),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with("bad.yaml: not valid YAML: line ")
                    && !message.contains("error:")
                    && message.contains("bad.yaml:"),
                "{message}"
            );
        }
    }
}

//! Reading Kubernetes manifests from YAML files for the offline tools.

use k8s_openapi::api::core::v1::{Namespace, Node};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::catalog::NamespaceLabels;
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
    #[error("{path}: document {index} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: document {index} is not a valid {kind}: {source}")]
    Object {
        path: PathBuf,
        index: usize,
        kind: String,
        #[source]
        source: serde_yaml::Error,
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

    /// Adds every document of one YAML text.
    pub fn add(&mut self, path: &Path, text: &str) -> Result<(), InputError> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value =
                serde_yaml::Value::deserialize(document).map_err(|source| InputError::Yaml {
                    path: path.to_path_buf(),
                    index,
                    source,
                })?;
            self.add_value(path, index, value)?;
        }
        Ok(())
    }

    fn add_value(
        &mut self,
        path: &Path,
        index: usize,
        value: serde_yaml::Value,
    ) -> Result<(), InputError> {
        if value.is_null() {
            return Ok(());
        }
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
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
                .push(serde_yaml::from_value(value.clone()).map_err(object)?),
            "Node" => self
                .nodes
                .push(serde_yaml::from_value(value.clone()).map_err(object)?),
            "NetworkAttachmentDefinition" => self
                .nads
                .push(serde_yaml::from_value(value.clone()).map_err(object)?),
            "Namespace" => {
                let ns: Namespace = serde_yaml::from_value(value.clone()).map_err(object)?;
                if let Some(name) = ns.metadata.name {
                    self.namespaces
                        .insert(name, ns.metadata.labels.unwrap_or_default());
                }
            }
            "List" => {
                let items = value
                    .get("items")
                    .and_then(serde_yaml::Value::as_sequence)
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

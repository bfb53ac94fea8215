//! multus-operator: turns MultusConfigs and NetworkAttachmentDefinitions into one node bundle
//! per node. The pure parts (catalog, placeholders, render) have no Kubernetes client.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod configmap;
pub mod ownership;
pub mod placeholders;
pub mod render;
pub mod rollout;
pub mod status;

//! multus-operator: turns MultusConfigs and NetworkAttachmentDefinitions into one node bundle
//! per node. The pure parts (catalog, placeholders, render) have no Kubernetes client.
#![forbid(unsafe_code)]

pub mod admin;
pub mod attachments;
pub mod cli;
pub mod configmap;
pub mod controller;
pub mod desired;
pub mod lease;
pub mod metrics;
pub mod ownership;
pub mod placeholders;
pub mod render;
pub mod rollout;
pub mod status;

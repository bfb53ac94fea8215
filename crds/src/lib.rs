//! The multus-operator API: the `MultusConfig` resource, the node bundle contract shared by
//! operator and agent, and the upstream `NetworkAttachmentDefinition` type. No client code.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cni;
pub mod completion;
pub mod contract;
pub mod crdgen;
pub mod multus_config;
pub mod nad;
pub mod schema;
pub mod status;
pub mod strict_json;

pub use multus_config::{MultusConfig, MultusConfigSpec};
pub use nad::NetworkAttachmentDefinition;
pub use status::MultusConfigStatus;

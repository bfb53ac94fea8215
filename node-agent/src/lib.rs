//! multus-node-agent: materializes one node's Multus bundle on the host. Pure planning
//! (`plan`, `primary`, token scheduling) is separate from the filesystem (`fsops`,
//! `hostpath`, `state`) and the cluster (`agent`, `token`).
#![forbid(unsafe_code)]

pub mod agent;
pub mod api_client;
pub mod bounds;
pub mod check;
pub mod cli;
pub mod fsops;
pub mod host_files;
pub mod hostpath;
pub mod metrics;
pub mod owned_files;
pub mod plan;
pub mod primary;
pub mod probe;
pub mod report;
pub mod rotation;
pub mod token;
pub mod wake;

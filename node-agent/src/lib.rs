//! multus-node-agent: materializes one node's Multus bundle on the host.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;

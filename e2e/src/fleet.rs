//! The parts of the fleet benchmark (`benches/fleet.rs`): its sizes, each in a process of
//! its own ([`sizes`]), the operator killed on interrupt ([`interrupt`]), the scenario's
//! objects ([`objects`]), real node agents for many simulated nodes in one process
//! ([`agents`]), kubelet-like Node status heartbeats ([`heartbeat`]), the moment a file
//! reaches new content on every node ([`disk`]) and the fleet's API requests from the audit
//! log ([`requests`]). The operator runs as [`crate::operator_process::OperatorProcess`].

pub mod agents;
pub mod disk;
pub mod heartbeat;
pub mod interrupt;
pub mod objects;
pub mod requests;
pub mod sizes;

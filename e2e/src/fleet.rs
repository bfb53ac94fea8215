//! The parts of the fleet benchmark (`benches/fleet.rs`): real node agents for many
//! simulated nodes in one process ([`agents`]), kubelet-like Node status heartbeats
//! ([`heartbeat`]), the moment a file reaches new content on every node ([`disk`]), API
//! requests counted from the API server's audit log ([`audit`]), and the operator as a
//! release-built process ([`operator_process`]).

pub mod agents;
pub mod audit;
pub mod disk;
pub mod heartbeat;
pub mod operator_process;

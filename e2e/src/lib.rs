//! The real test environment: upstream etcd, kube-apiserver and kube-controller-manager built
//! from the Go module proxy (see `e2e/testenv/`), started on loopback as plain processes.
//!
//! Rule for test authors: one control plane per test binary, shared through
//! [`ControlPlane::shared`]. Each test makes its own namespace, nodes and host roots with
//! unique names ([`unique_name`]) and its own kube `Client` ([`ControlPlane::client`]), so
//! tests in one binary run in parallel without seeing each other.
//!
//! Tests that need pods to really run use [`ControlPlane::shared_for_real_nodes`] (with
//! kube-scheduler and the workload controllers) and start their own [`node::RealNode`]s:
//! the upstream kubelet with containerd and runc.
#![forbid(unsafe_code)]

/// Marks an end-to-end test: an `async` one runs on a two-worker tokio runtime, and every
/// one holds a test slot ([`test_slot!`]) while it runs.
pub use multus_e2e_macros::test;

pub mod agent;
pub mod agent_node;
pub mod audit;
pub mod bench;
pub mod bench_cluster;
pub mod binaries;
pub mod binaries_local;
pub mod chart;
pub mod cluster;
pub mod control_plane;
pub mod crds;
pub mod error;
pub mod fixtures;
pub mod fleet;
pub mod http;
pub mod identities;
pub mod node;
pub mod oci;
pub mod operator;
pub mod operator_process;
pub mod pki;
pub mod pod_node;
pub mod podnet;
pub mod process;
pub mod release;
pub mod replica;
pub mod scale;
pub mod scenario;
pub mod side_by_side;
pub mod slot;
pub mod test_env;
pub mod thick;
pub mod upstream;
pub mod upstream_daemonset;
pub mod upstream_node;

pub use control_plane::ControlPlane;
pub use error::E2eError;
pub use fixtures::unique_name;

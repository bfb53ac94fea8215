//! Runs last: cargo runs a package's test binaries one after another in name order, so by
//! now every other e2e binary has exited. None of their processes may remain, and what
//! their shared nodes and control planes left on the host is removed.

use std::time::Duration;

use multus_e2e::node::host;
use multus_e2e::process::{leftovers, remove_stale_state_dirs, stale_state_dirs, wait_until};

/// A control plane whose test binary just exited gets its watchdogs' grace period (they
/// poll every 0.5 s and give each process 10 s after SIGTERM).
const WATCHDOGS: Duration = Duration::from_secs(30);

#[multus_e2e::test]
fn no_e2e_process_outlives_the_test_binaries() {
    let clean = wait_until(WATCHDOGS, || leftovers().is_empty());
    assert!(clean, "leftover e2e processes: {:?}", leftovers());
}

/// A shared node or control plane lives in a static, which Rust never drops: once its
/// binary has exited, its bridge, cgroups and state directory stay until the next one
/// starts. Here the suite removes them, and nothing of a finished binary may remain.
#[multus_e2e::test]
fn no_bridge_cgroup_or_state_dir_of_a_finished_test_binary_remains() {
    wait_until(WATCHDOGS, || leftovers().is_empty());
    host::remove_stale();
    remove_stale_state_dirs();
    let mut left = host::stale();
    left.extend(stale_state_dirs().iter().map(|d| d.display().to_string()));
    assert!(left.is_empty(), "left on the host: {left:?}");
}

//! Runs last: cargo runs a package's test binaries one after another in name order, so by
//! now every other e2e binary has exited. None of their processes may remain.

use std::time::Duration;

use multus_e2e::process::{leftovers, wait_until};

#[multus_e2e::test]
fn no_e2e_process_outlives_the_test_binaries() {
    // A control plane whose test binary just exited gets its watchdogs' grace period (they
    // poll every 0.5 s and give each process 10 s after SIGTERM).
    let clean = wait_until(Duration::from_secs(30), || leftovers().is_empty());
    assert!(clean, "leftover e2e processes: {:?}", leftovers());
}

//! Bounded parallelism and timings for end-to-end tests. Each test holds a slot while it
//! runs: at most `MULTUS_E2E_PARALLEL` (default 2) tests of one test binary run at once,
//! whatever libtest's thread count, so a machine with many cores does not start more
//! operators and agents than the shared control plane serves in time, and a 2-core machine
//! stays predictable. When `MULTUS_E2E_TIMINGS` names a file, each test appends
//! `<seconds>\t<test>\t<ok|FAILED>` to it when it ends (`.ci/run` prints the slowest).

use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

/// Default number of end-to-end tests running at once in one test binary.
const DEFAULT_PARALLEL: usize = 2;

struct Slots {
    /// The tests holding a slot; at most `limit`.
    running: Mutex<Vec<String>>,
    limit: usize,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::env::var("MULTUS_E2E_PARALLEL")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_PARALLEL);
        Slots {
            running: Mutex::new(Vec::with_capacity(n)),
            limit: n,
            freed: Condvar::new(),
        }
    })
}

/// A running test's slot; released (and the test's time recorded) on drop.
#[must_use = "the slot is released when this guard is dropped"]
pub struct TestSlot {
    test: String,
    started: Instant,
}

/// Waits for a free slot. Call it first in a test (through [`crate::test_slot!`]); the
/// wait happens on the test's own thread, before it starts anything.
pub fn acquire(test: &str) -> TestSlot {
    let slots = slots();
    let mut running = lock(&slots.running);
    while running.len() >= slots.limit {
        running = slots.freed.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    running.push(test.to_string());
    TestSlot {
        test: test.to_string(),
        started: Instant::now(),
    }
}

impl Drop for TestSlot {
    fn drop(&mut self) {
        let slots = slots();
        {
            let mut running = lock(&slots.running);
            if let Some(at) = running.iter().position(|t| *t == self.test) {
                running.swap_remove(at);
            }
        }
        slots.freed.notify_one();
        let Some(path) = std::env::var_os("MULTUS_E2E_TIMINGS") else {
            return;
        };
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        let line = format!(
            "{:.1}\t{}\t{outcome}\n",
            self.started.elapsed().as_secs_f64(),
            self.test
        );
        // One short append per test; lines of concurrent tests never interleave.
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// The tests of this binary that hold a slot now.
pub fn running() -> Vec<String> {
    lock(&slots().running).clone()
}

/// A test that panicked while holding the lock has left the list whole: it changes only in
/// one push or one removal.
fn lock(running: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    running.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a test slot named after the calling test function (`crate::test_name`).
#[macro_export]
macro_rules! test_slot {
    () => {{
        fn here() {}
        $crate::slot::acquire(&$crate::slot::test_name(std::any::type_name_of_val(&here)))
    }};
}

/// `binary::test_fn` from the type name of a function item declared inside the test
/// (`agent::my_test::{{closure}}::here`).
pub fn test_name(type_name: &str) -> String {
    type_name
        .trim_end_matches("::here")
        .split("::")
        .filter(|part| *part != "{{closure}}")
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_names_drop_closures_and_the_marker_function() {
        assert_eq!(
            super::test_name("agent::my_test::{{closure}}::here"),
            "agent::my_test"
        );
        assert_eq!(super::test_name("operator::plain::here"), "operator::plain");
    }

    #[test]
    fn the_macro_names_the_calling_function() {
        let slot = crate::test_slot!();
        assert_eq!(
            slot.test,
            "multus_e2e::slot::tests::the_macro_names_the_calling_function"
        );
        assert!(super::running().contains(&slot.test));
        let test = slot.test.clone();
        drop(slot);
        assert!(!super::running().contains(&test));
    }
}

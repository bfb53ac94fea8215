//! When the agent loop wakes by itself, decided from what is due: token work, a retry of a
//! pass that failed on the disk, the check of the token in use, or the periodic resync.
//! Pure: the callers pass the seconds until each is due.

use std::time::Duration;

use crate::wake::Trigger;

/// How often the agent re-checks the disk even without events.
pub const RESYNC: Duration = Duration::from_secs(60);

/// The agent's clock: Unix seconds now. Read by the loop and handed to what it calls
/// (token schedule, reports), so that those can be tested at any time.
pub fn now_secs() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// What the loop does when its timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimer {
    /// A pass with this trigger.
    Pass(Trigger),
    /// Check that the token in use still authenticates; a pass only when it does not.
    CheckToken,
}

/// Back-off after `failures` consecutive disk failures: 1 s doubling to 30 s; none without.
pub fn disk_retry(failures: u32) -> Option<Duration> {
    (failures > 0).then(|| Duration::from_secs((1u64 << (failures - 1).min(5)).min(30)))
}

/// The earliest of what is due, and what to do then. `token_work` and `token_check` are
/// seconds from now (absent when no bundle wants a kubeconfig); each waits at least a
/// second, so a due time in the past cannot spin the loop.
pub fn next(
    token_work: Option<u64>,
    disk_failures: u32,
    token_check: Option<u64>,
) -> (Duration, OnTimer) {
    let mut next = match token_work {
        Some(s) if s < RESYNC.as_secs() => {
            (Duration::from_secs(s.max(1)), OnTimer::Pass(Trigger::Token))
        }
        _ => (RESYNC, OnTimer::Pass(Trigger::Resync)),
    };
    if let Some(retry) = disk_retry(disk_failures)
        && retry < next.0
    {
        next = (retry, OnTimer::Pass(Trigger::Retry));
    }
    if let Some(s) = token_check
        && Duration::from_secs(s.max(1)) < next.0
    {
        next = (Duration::from_secs(s.max(1)), OnTimer::CheckToken);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_failures_are_retried_after_a_back_off_doubling_to_thirty_seconds() {
        let seconds: Vec<Option<u64>> =
            (0..9).map(|n| disk_retry(n).map(|d| d.as_secs())).collect();
        assert_eq!(
            seconds,
            vec![
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(30),
                Some(30),
                Some(30)
            ]
        );
    }

    #[test]
    fn the_earliest_due_wins_and_nothing_waits_less_than_a_second() {
        use OnTimer::{CheckToken, Pass};
        // (token work due, disk failures, token check due) -> seconds to wait, what then.
        let table = [
            ((None, 0, None), 60, Pass(Trigger::Resync)),
            ((Some(90), 0, None), 60, Pass(Trigger::Resync)),
            ((Some(20), 0, None), 20, Pass(Trigger::Token)),
            ((Some(0), 0, None), 1, Pass(Trigger::Token)),
            ((Some(20), 3, None), 4, Pass(Trigger::Retry)),
            ((Some(20), 0, Some(10)), 10, CheckToken),
            ((Some(5), 0, Some(10)), 5, Pass(Trigger::Token)),
        ];
        for ((work, failures, check), seconds, then) in table {
            assert_eq!(
                next(work, failures, check),
                (Duration::from_secs(seconds), then),
                "token work {work:?}, {failures} disk failures, token check {check:?}"
            );
        }
    }
}

//! When the token is replaced, retried and checked, as pure functions of the token's times,
//! the settings and `now` (Unix seconds): the one place the token schedule is decided. The
//! agent's loop asks [`crate::rotation::Rotation`], which keeps the state and calls these.

use multus_crds::contract::RefreshBefore;

use super::Token;

/// Shortest wait between attempts when a request failed.
pub const RETRY_FLOOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait between two requests while they keep failing.
pub const RETRY_CEILING: i64 = 300;

/// How often the token in use is checked with a SelfSubjectReview: a token can stop
/// authenticating long before it expires (its ServiceAccount deleted and recreated), and
/// Multus would then fail every pod until the next refresh.
pub const RECHECK_SECONDS: i64 = 30;

/// When to replace a token: `refresh_before` ahead of expiry, plus up to a tenth of that
/// again as jitter (`jitter` in [0, 1)) so that nodes spread out; never sooner than the
/// retry floor after issue.
pub fn refresh_at(token: &Token, refresh_before: RefreshBefore, jitter: f64) -> i64 {
    // Saturating: the times come from the API server's answer or a token's claims.
    let lifetime = token.expires_at.saturating_sub(token.issued_at).max(1);
    let before = refresh_before.seconds(lifetime);
    let jitter = (before as f64 * 0.1 * jitter.clamp(0.0, 1.0)) as i64;
    let floor = token.issued_at.saturating_add(RETRY_FLOOR.as_secs() as i64);
    token
        .expires_at
        .saturating_sub(before)
        .saturating_sub(jitter)
        .max(floor)
}

/// Seconds to wait after `failures` failed requests in a row: doubling from the floor up to
/// five minutes, but back at the floor when the token in use expires within that wait (or
/// there is none), so a token is never left to expire for want of a retry.
pub fn retry_delay(failures: u32, expires_in: Option<i64>) -> i64 {
    let floor = RETRY_FLOOR.as_secs() as i64;
    let doubled = floor.saturating_mul(1_i64 << failures.saturating_sub(1).min(16));
    let delay = doubled.min(RETRY_CEILING);
    match expires_in {
        Some(left) if left > 2 * delay => delay,
        _ => floor,
    }
}

/// When a token needs attention: its refresh point (`refresh`, absent when there is no
/// token for the current settings), but not before a scheduled retry. A retry scheduled
/// further ahead than the longest back-off means the clock went back since: it is due at
/// once rather than an hour late.
pub fn due_at(refresh: Option<i64>, retry_at: i64, now: i64) -> i64 {
    let retry_at = if retry_at > now + RETRY_CEILING {
        now
    } else {
        retry_at
    };
    refresh.map_or(retry_at, |r| r.max(retry_at))
}

/// When the token in use is next checked, given the last check (never later than `now`:
/// the clock may have gone back).
pub fn recheck_at(checked_at: i64, now: i64) -> i64 {
    checked_at.min(now) + RECHECK_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_token;

    #[test]
    fn refresh_points_follow_percentages_durations_and_jitter() {
        let t = test_token(0, 3600);
        let at = |text: &str, jitter| refresh_at(&t, text.parse().unwrap(), jitter);
        assert_eq!(at("20%", 0.0), 2880);
        assert_eq!(at("10m", 0.0), 3000);
        assert_eq!(at("20%", 1.0), 2880 - 72);
        // Never sooner than the retry floor after issue, whatever the setting.
        assert_eq!(at("3600s", 1.0), 5);
    }

    #[test]
    fn extreme_token_times_give_a_refresh_point_between_floor_and_expiry() {
        // The kubeconfig_writer fuzz target's finding, minimised: 20% of this lifetime
        // overflowed.
        let t = test_token(262_143, 7_803_172_840_524_808_192);
        assert_eq!(
            refresh_at(&t, "20%".parse().unwrap(), 0.0),
            6_242_538_272_419_898_983
        );
        for (issued, expires) in [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (0, i64::MAX)] {
            let t = test_token(issued, expires);
            for refresh in ["1%", "99%", "999999999h"] {
                let at = refresh_at(&t, refresh.parse().unwrap(), 0.99);
                let floor = issued.saturating_add(RETRY_FLOOR.as_secs() as i64);
                assert!(
                    at >= floor && at <= expires.max(floor),
                    "{issued} {expires} {refresh}"
                );
            }
        }
    }

    #[test]
    fn retries_back_off_but_return_to_the_floor_near_expiry() {
        let far = Some(3600);
        let delays: Vec<i64> = (1..=8).map(|n| retry_delay(n, far)).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
        // A token expiring soon, or none at all: every floor interval.
        assert_eq!(retry_delay(6, Some(200)), 5);
        assert_eq!(retry_delay(6, Some(0)), 5);
        assert_eq!(retry_delay(6, None), 5);
        assert_eq!(retry_delay(u32::MAX, far), 300);
    }

    #[test]
    fn a_retry_scheduled_beyond_the_longest_back_off_is_due_at_once() {
        assert_eq!(due_at(Some(100), 0, 50), 100);
        assert_eq!(due_at(Some(100), 120, 50), 120);
        assert_eq!(due_at(None, 60, 50), 60);
        // The clock went back an hour after a retry was scheduled.
        assert_eq!(due_at(Some(10), 3_700, 100), 100);
        assert_eq!(recheck_at(3_700, 100), 130);
    }
}

//! The pure rules of leader election: when a standby may take the Lease, how often the
//! leader renews, and until when it may write. Time is passed in (monotonic instants), so
//! the rules are tested with a fake clock; nothing here compares two machines' clocks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timings derived from the lease duration D.
///
/// - The leader renews every D/4, and retries a failed renewal every D/8.
/// - It writes only until D*2/3 after sending its last successful renewal (the safety
///   margin D/3 covers request latency and clock-rate drift), then steps down.
/// - A standby takes over only after it has seen the Lease unchanged for D by its own
///   clock, so no earlier than D after that renewal reached the API server.
///
/// Between the leader's last possible write and a takeover lie at least D/3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub duration: Duration,
}

impl Timings {
    pub fn new(duration: Duration) -> Self {
        Self { duration }
    }
    pub fn renew_every(&self) -> Duration {
        self.duration / 4
    }
    pub fn retry_every(&self) -> Duration {
        self.duration / 8
    }
    /// How often a standby looks at the Lease.
    pub fn standby_poll(&self) -> Duration {
        self.duration / 4
    }
    /// How long after sending a successful renewal the leader may write.
    pub fn write_window(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// What a standby reads of the Lease.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub holder: Option<&'a str>,
    /// `metadata.resourceVersion`: changes with every renewal.
    pub version: &'a str,
    /// `spec.leaseDurationSeconds` as the holder announced it.
    pub duration: Option<Duration>,
}

/// What to do with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, holding it.
    Create,
    /// Free, ours, or unchanged for its whole duration: take it (conditional on the
    /// version read, so a concurrent change makes the write fail).
    Take,
    /// Another replica holds it and renewed it within its duration, as far as we know.
    Wait,
}

/// A standby's memory of the Lease: the version it last saw and when (its own clock) it
/// first saw that version.
#[derive(Debug, Default)]
pub struct Standby {
    seen: Option<(String, Instant)>,
}

impl Standby {
    /// Judges the Lease read at `now`. `own` is this replica's lease duration, used when
    /// the Lease announces none.
    pub fn judge(
        &mut self,
        record: Option<Record<'_>>,
        me: &str,
        now: Instant,
        own: Duration,
    ) -> Decision {
        let Some(record) = record else {
            self.seen = None;
            return Decision::Create;
        };
        match record.holder {
            None | Some("") => return Decision::Take,
            Some(holder) if holder == me => return Decision::Take,
            Some(_) => {}
        }
        let since = match &self.seen {
            Some((version, at)) if version == record.version => *at,
            _ => {
                self.seen = Some((record.version.to_string(), now));
                now
            }
        };
        let duration = record.duration.unwrap_or(own);
        if now.saturating_duration_since(since) >= duration {
            Decision::Take
        } else {
            Decision::Wait
        }
    }
}

/// Whether this replica may write now: shared by the lease holder (which arms and disarms
/// it) and every write path (which asks it). Without leader election it always holds.
#[derive(Clone, Debug)]
pub struct LeaderGuard(Option<Arc<Mutex<Option<Instant>>>>);

impl Default for LeaderGuard {
    fn default() -> Self {
        Self::always()
    }
}

impl LeaderGuard {
    /// A guard that always holds: a single replica without leader election.
    pub fn always() -> Self {
        Self(None)
    }
    /// A guard for leader election; it holds nothing until armed.
    pub fn elected() -> Self {
        Self(Some(Arc::new(Mutex::new(None))))
    }
    /// Whether writes are allowed at `now`.
    pub fn holds_at(&self, now: Instant) -> bool {
        match &self.0 {
            None => true,
            Some(until) => self.read(until).is_some_and(|u| now < u),
        }
    }
    /// Whether writes are allowed now (monotonic clock).
    pub fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }
    /// Allows writes until `until`.
    pub fn arm(&self, until: Instant) {
        if let Some(cell) = &self.0 {
            *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        }
    }
    /// Stops writes at once.
    pub fn disarm(&self) {
        if let Some(cell) = &self.0 {
            *cell.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
    /// Until when writes are allowed; `None` when not leading (or never bounded).
    pub fn deadline(&self) -> Option<Instant> {
        self.0.as_ref().and_then(|cell| self.read(cell))
    }
    fn read(&self, cell: &Mutex<Option<Instant>>) -> Option<Instant> {
        *cell.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(6);

    fn held(by: &str, version: &str) -> Option<Record<'static>> {
        let (by, version) = (by.to_string().leak(), version.to_string().leak());
        Some(Record {
            holder: Some(by),
            version,
            duration: Some(D),
        })
    }

    #[test]
    fn a_standby_takes_over_only_after_the_lease_stayed_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let mut s = Standby::default();
        assert_eq!(s.judge(held("a", "1"), "b", t0, D), Decision::Wait);
        assert_eq!(
            s.judge(held("a", "1"), "b", t0 + D - Duration::from_millis(1), D),
            Decision::Wait
        );
        // A renewal restarts the count, whatever renewTime the holder wrote.
        assert_eq!(s.judge(held("a", "2"), "b", t0 + D, D), Decision::Wait);
        assert_eq!(
            s.judge(
                held("a", "2"),
                "b",
                t0 + D * 2 - Duration::from_millis(1),
                D
            ),
            Decision::Wait
        );
        assert_eq!(s.judge(held("a", "2"), "b", t0 + D * 2, D), Decision::Take);
    }

    #[test]
    fn a_standby_that_just_started_waits_a_full_duration_even_for_an_old_lease() {
        // It cannot tell how old the last renewal is without trusting the holder's clock.
        let t0 = Instant::now();
        let mut s = Standby::default();
        assert_eq!(s.judge(held("a", "7"), "b", t0, D), Decision::Wait);
        assert_eq!(s.judge(held("a", "7"), "b", t0 + D, D), Decision::Take);
    }

    #[test]
    fn a_free_missing_or_own_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let mut s = Standby::default();
        assert_eq!(s.judge(None, "b", t0, D), Decision::Create);
        let free = Record {
            holder: Some(""),
            version: "3",
            duration: Some(D),
        };
        assert_eq!(s.judge(Some(free), "b", t0, D), Decision::Take);
        assert_eq!(s.judge(held("b", "4"), "b", t0, D), Decision::Take);
    }

    #[test]
    fn the_lease_s_announced_duration_wins_over_the_standby_s_own() {
        let t0 = Instant::now();
        let mut s = Standby::default();
        let long = Record {
            holder: Some("a"),
            version: "1",
            duration: Some(D * 2),
        };
        assert_eq!(s.judge(Some(long), "b", t0, D), Decision::Wait);
        assert_eq!(s.judge(Some(long), "b", t0 + D, D), Decision::Wait);
        assert_eq!(s.judge(Some(long), "b", t0 + D * 2, D), Decision::Take);
    }

    #[test]
    fn the_leader_stops_writing_a_third_of_the_duration_before_a_standby_may_take_over() {
        let t = Timings::new(D);
        let sent = Instant::now();
        let guard = LeaderGuard::elected();
        assert!(!guard.holds_at(sent), "unarmed");
        guard.arm(sent + t.write_window());
        assert!(guard.holds_at(sent + t.write_window() - Duration::from_millis(1)));
        assert!(!guard.holds_at(sent + t.write_window()));
        // The standby saw the renewal no earlier than it was sent.
        let mut s = Standby::default();
        assert_eq!(s.judge(held("a", "9"), "b", sent, D), Decision::Wait);
        let takeover = sent + D;
        assert_eq!(s.judge(held("a", "9"), "b", takeover, D), Decision::Take);
        assert!(takeover - (sent + t.write_window()) >= D / 3);
        // Renewals come well before the window closes: two can fail in a row.
        assert!(t.renew_every() * 2 < t.write_window());
        guard.disarm();
        assert!(!guard.holds_at(sent));
    }

    #[test]
    fn without_election_the_guard_always_holds() {
        let g = LeaderGuard::always();
        g.disarm();
        assert!(g.holds());
        assert_eq!(g.deadline(), None);
    }
}

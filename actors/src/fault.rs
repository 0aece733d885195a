//! Fault injection for the end-to-end tests (off in real runs): a fault that
//! fires once, so a test can crash an actor at a chosen point of its work and
//! check that the run restarts it and redoes the work exactly once.
//!
//! The fault lives outside the actor (the spawner holds it), so its count
//! runs on across restarts and a restarted actor does not fire it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Fires once: at the `at`-th event counted by [`Fault::count`], or the
/// first time [`Fault::matches`] sees `at`. `at = None`: never.
#[derive(Debug, Default)]
pub struct Fault {
    at: Option<u64>,
    /// Fires at every event from the `at`-th on, not once.
    sticky: bool,
    count: AtomicU64,
    fired: AtomicBool,
}

impl Fault {
    pub fn at(at: Option<u64>) -> Self {
        Self {
            at,
            ..Default::default()
        }
    }

    /// Fires at the `at`-th event counted by [`Fault::count`] and at every one after it
    /// (a disk that stays full).
    pub fn from(at: Option<u64>) -> Self {
        Self {
            at,
            sticky: true,
            ..Default::default()
        }
    }

    /// Counts one event (from 1); true exactly once, at the `at`-th (or, for
    /// [`Fault::from`], at it and every later one).
    pub fn count(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if self.sticky {
            return self.at.is_some_and(|at| n >= at);
        }
        self.matches(n)
    }

    /// True exactly once, the first time `value` is `at` (for faults keyed by
    /// an id, such as a batch id, rather than a count).
    pub fn matches(&self, value: u64) -> bool {
        self.at == Some(value) && !self.fired.swap(true, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_at_the_nth_event_or_value() {
        let f = Fault::at(Some(3));
        let fired: Vec<bool> = (0..6).map(|_| f.count()).collect();
        assert_eq!(fired, [false, false, true, false, false, false]);
        let g = Fault::at(Some(7));
        assert!(!g.matches(6));
        assert!(g.matches(7));
        assert!(!g.matches(7));
        assert!(!Fault::default().count());
        let h = Fault::from(Some(2));
        let fired: Vec<bool> = (0..4).map(|_| h.count()).collect();
        assert_eq!(fired, [false, true, true, true]);
        assert!(!Fault::from(None).count());
    }
}

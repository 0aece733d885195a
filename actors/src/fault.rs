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

    /// Counts one event (from 1); true exactly once, at the `at`-th.
    pub fn count(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
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
    }
}

//! Per-prompt statistics and rolling windows of graded responses.
//!
//! [`PromptStats`] keeps `(correct, attempts)` for every prompt, updated online from each
//! graded group, plus the outcomes of the last 64 attempts as bits, which is what retirement
//! ("all correct over the last k attempts") needs. [`Window`] is a fixed-size rolling window
//! of pass/fail outcomes, the evidence behind pass-rate and truncation-rate rules.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Online statistics of one prompt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptStats {
    /// Correct responses, ever.
    pub correct: u64,
    /// Graded responses, ever.
    pub attempts: u64,
    /// Outcomes of the most recent attempts, newest in bit 0 (1 = correct).
    recent: u64,
    /// How many bits of `recent` are valid (≤ 64).
    recent_len: u8,
}

impl PromptStats {
    /// Records one graded response.
    pub fn record(&mut self, correct: bool) {
        self.attempts += 1;
        self.correct += u64::from(correct);
        self.recent = (self.recent << 1) | u64::from(correct);
        self.recent_len = (self.recent_len + 1).min(64);
    }

    /// Empirical pass rate, or `None` before the first attempt.
    pub fn pass_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.correct as f64 / self.attempts as f64)
    }

    /// Whether the last `k` attempts (k ≤ 64) were all correct.
    pub fn last_all(&self, k: u32, correct: bool) -> bool {
        if k == 0 || u32::from(self.recent_len) < k {
            return false;
        }
        let mask = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
        let bits = self.recent & mask;
        if correct { bits == mask } else { bits == 0 }
    }
}

/// A rolling window over the last `capacity` boolean outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    capacity: u32,
    outcomes: VecDeque<bool>,
    hits: u32,
    /// Outcomes ever pushed (not just those still in the window).
    seen: u64,
}

impl Window {
    /// An empty window of `capacity` ≥ 1 outcomes.
    pub fn new(capacity: u32) -> Self {
        Window {
            capacity: capacity.max(1),
            outcomes: VecDeque::new(),
            hits: 0,
            seen: 0,
        }
    }

    /// Adds an outcome, dropping the oldest once full.
    pub fn push(&mut self, hit: bool) {
        if self.outcomes.len() as u32 == self.capacity
            && let Some(old) = self.outcomes.pop_front()
        {
            self.hits -= u32::from(old);
        }
        self.outcomes.push_back(hit);
        self.hits += u32::from(hit);
        self.seen += 1;
    }

    /// Outcomes currently in the window.
    pub fn len(&self) -> u32 {
        self.outcomes.len() as u32
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The window's size limit.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Hits in the window.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    /// Outcomes ever pushed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Fraction of hits in the window, `None` when empty.
    pub fn rate(&self) -> Option<f64> {
        (!self.outcomes.is_empty()).then(|| f64::from(self.hits) / f64::from(self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rolls() {
        let mut w = Window::new(3);
        for h in [true, true, false, false] {
            w.push(h);
        }
        assert_eq!((w.len(), w.hits(), w.seen()), (3, 1, 4));
        assert_eq!(w.rate(), Some(1.0 / 3.0));
    }

    #[test]
    fn recent_attempts_decide_mastery() {
        let mut s = PromptStats::default();
        for c in [false, true, true, true] {
            s.record(c);
        }
        assert!(s.last_all(3, true));
        assert!(!s.last_all(4, true));
        assert!(!s.last_all(5, true));
        assert_eq!(s.pass_rate(), Some(0.75));
        for _ in 0..70 {
            s.record(false);
        }
        assert!(s.last_all(64, false));
        assert_eq!((s.correct, s.attempts), (3, 74));
    }
}

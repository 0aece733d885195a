//! Advancement rules at runtime: what each rule collects ([`RuleState`]) and how it is judged
//! ([`evaluate`]), with the [`Evidence`] that goes into the `stage_advanced` event.
//!
//! A rule never holds on too few samples: pass-rate and truncation rules need `min_samples`
//! graded responses in their window, a plateau needs `steps` step values each taken over a
//! window of at least `min_samples` responses, plus a best value from before those steps.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::config::Rule;
use super::stats::Window;

/// What a rule has collected in the current stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleState {
    /// Pass-rate or truncation-rate window.
    Rate(Window),
    /// Plateau: the rolling window, the last `steps` per-step values, and the best value
    /// before them.
    Plateau {
        /// Rolling pass/fail window.
        window: Window,
        /// The last `steps` values of the window's rate (one per step with enough samples).
        recent: VecDeque<f64>,
        /// Best rate among values older than `recent`.
        best_before: Option<f64>,
    },
    /// `max_steps` reads the stage's step count.
    Steps,
}

impl RuleState {
    /// A fresh state for `rule`.
    pub fn new(rule: &Rule) -> Self {
        match rule {
            Rule::PassRate { window, .. } | Rule::TruncationRate { window, .. } => {
                RuleState::Rate(Window::new(*window))
            }
            Rule::Plateau { window, .. } => RuleState::Plateau {
                window: Window::new(*window),
                recent: VecDeque::new(),
                best_before: None,
            },
            Rule::MaxSteps { .. } => RuleState::Steps,
        }
    }

    /// Records one graded response from `bucket`.
    pub fn observe(&mut self, rule: &Rule, bucket: &str, correct: bool, truncated: bool) {
        let in_bucket = |b: &Option<String>| b.as_deref().is_none_or(|b| b == bucket);
        match (rule, self) {
            (Rule::PassRate { bucket: b, .. }, RuleState::Rate(w)) if in_bucket(b) => {
                w.push(correct)
            }
            (Rule::TruncationRate { .. }, RuleState::Rate(w)) => w.push(truncated),
            (Rule::Plateau { bucket: b, .. }, RuleState::Plateau { window, .. })
                if in_bucket(b) =>
            {
                window.push(correct)
            }
            _ => {}
        }
    }

    /// Closes a learner step (plateau rules take one value per step).
    pub fn end_step(&mut self, rule: &Rule) {
        if let (
            Rule::Plateau {
                steps, min_samples, ..
            },
            RuleState::Plateau {
                window,
                recent,
                best_before,
            },
        ) = (rule, self)
            && window.len() >= *min_samples
            && let Some(rate) = window.rate()
        {
            recent.push_back(rate);
            while recent.len() > *steps as usize {
                let old = recent.pop_front().unwrap_or(rate);
                *best_before = Some(best_before.map_or(old, |b: f64| b.max(old)));
            }
        }
    }
}

/// Why a rule holds or not, with the numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Position in the stage's `advance.rules`.
    pub index: usize,
    /// The rule, in words.
    pub rule: String,
    /// Whether it holds.
    pub holds: bool,
    /// The measured value (pass rate, truncation rate, plateau gain, or steps), if any yet.
    pub value: Option<f64>,
    /// What the value is compared with (target, at_least, delta, or steps).
    pub threshold: f64,
    /// Samples (responses; for a plateau, step values) the value is taken over.
    pub samples: u64,
    /// The window size (responses; for a plateau and max_steps, steps).
    pub window: u64,
    /// Samples needed before the rule may hold.
    pub min_samples: u64,
}

/// Judges `rule` on its state after `stage_steps` learner steps.
pub fn evaluate(index: usize, rule: &Rule, state: &RuleState, stage_steps: u64) -> Evidence {
    let mut e = Evidence {
        index,
        rule: rule.to_string(),
        holds: false,
        value: None,
        threshold: 0.0,
        samples: 0,
        window: 0,
        min_samples: 0,
    };
    match (rule, state) {
        (
            Rule::PassRate {
                target: t,
                min_samples,
                ..
            },
            RuleState::Rate(w),
        )
        | (
            Rule::TruncationRate {
                at_least: t,
                min_samples,
                ..
            },
            RuleState::Rate(w),
        ) => {
            e.value = w.rate();
            e.threshold = *t;
            e.samples = u64::from(w.len());
            e.window = u64::from(w.capacity());
            e.min_samples = u64::from(*min_samples);
            e.holds = w.len() >= *min_samples && e.value.is_some_and(|v| v >= *t);
        }
        (
            Rule::Plateau { delta, steps, .. },
            RuleState::Plateau {
                recent,
                best_before,
                ..
            },
        ) => {
            let best_recent = recent
                .iter()
                .copied()
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            e.value = best_recent.zip(*best_before).map(|(r, b)| r - b);
            e.threshold = *delta;
            e.samples = recent.len() as u64;
            e.window = u64::from(*steps);
            e.min_samples = u64::from(*steps);
            e.holds = recent.len() == *steps as usize && e.value.is_some_and(|g| g < *delta);
        }
        (Rule::MaxSteps { steps }, _) => {
            e.value = Some(stage_steps as f64);
            e.threshold = *steps as f64;
            e.samples = stage_steps;
            e.window = *steps;
            e.min_samples = *steps;
            e.holds = stage_steps >= *steps;
        }
        _ => {}
    }
    e
}

#[cfg(test)]
mod tests;

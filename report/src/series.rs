//! Curves derived from a run: pass rates per bucket (held-out when the run
//! has `eval.jsonl`, the training window otherwise) and per-step figures, plus
//! the rolling mean that makes noisy per-step figures readable.

use std::collections::BTreeMap;

use crate::run::{Run, StepRow};

/// Where pass rates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `eval.jsonl`: held-out evaluation of every bucket.
    Eval,
    /// `metrics.jsonl` `pass_rates`: the windowed pass rate of training
    /// responses (what the advancement rules see; only buckets being sampled
    /// move).
    Training,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Eval => "held-out evaluation (eval.jsonl)",
            Source::Training => "training window (metrics.jsonl pass_rates; no eval.jsonl)",
        }
    }
}

/// One point of a pass-rate curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePoint {
    pub step: u64,
    /// Samples (graded responses) spent so far.
    pub samples: u64,
    pub rate: f64,
}

/// Pass-rate curves per bucket (`"math/add1"`), from one source.
#[derive(Debug, Clone)]
pub struct PassRates {
    pub source: Source,
    pub curves: BTreeMap<String, Vec<RatePoint>>,
}

impl PassRates {
    /// The preferred curves of `run`: held-out when there are any, else training.
    pub fn of(run: &Run) -> PassRates {
        if run.evals.is_empty() {
            Self::training(run)
        } else {
            Self::eval(run)
        }
    }

    /// Held-out curves from `eval.jsonl`.
    pub fn eval(run: &Run) -> PassRates {
        let cumulative = run.cumulative_samples();
        let mut curves: BTreeMap<String, Vec<RatePoint>> = BTreeMap::new();
        for e in &run.evals {
            let samples = e.samples.unwrap_or_else(|| samples_at(&cumulative, e.step));
            for (bucket, b) in &e.buckets {
                curves.entry(bucket.clone()).or_default().push(RatePoint {
                    step: e.step,
                    samples,
                    rate: b.pass_rate,
                });
            }
        }
        PassRates {
            source: Source::Eval,
            curves,
        }
    }

    /// Training-window curves from `metrics.jsonl`; a bucket's window only
    /// counts once it holds a response.
    pub fn training(run: &Run) -> PassRates {
        let mut curves: BTreeMap<String, Vec<RatePoint>> = BTreeMap::new();
        let mut samples = 0;
        for s in &run.steps {
            samples += s.responses.unwrap_or(0);
            for (bucket, w) in &s.pass_rates {
                if let (Some(rate), true) = (w.rate, w.n.unwrap_or(1) > 0) {
                    curves.entry(bucket.clone()).or_default().push(RatePoint {
                        step: s.step,
                        samples,
                        rate,
                    });
                }
            }
        }
        PassRates {
            source: Source::Training,
            curves,
        }
    }

    /// Each bucket's last pass rate.
    pub fn last(&self) -> BTreeMap<String, f64> {
        self.curves
            .iter()
            .filter_map(|(b, c)| Some((b.clone(), c.last()?.rate)))
            .collect()
    }

    /// Each bucket's pass rate at the last point at or before `step`.
    pub fn at_step(&self, step: u64) -> BTreeMap<String, f64> {
        self.curves
            .iter()
            .filter_map(|(b, c)| {
                let p = c.iter().rev().find(|p| p.step <= step)?;
                Some((b.clone(), p.rate))
            })
            .collect()
    }
}

/// Samples spent by `step`, from the running total.
fn samples_at(cumulative: &[(u64, u64)], step: u64) -> u64 {
    let i = cumulative.partition_point(|(s, _)| *s <= step);
    if i == 0 { 0 } else { cumulative[i - 1].1 }
}

/// `(step, value)` for every step where `f` has a value.
pub fn per_step(run: &Run, f: impl Fn(&StepRow) -> Option<f64>) -> Vec<(f64, f64)> {
    run.steps
        .iter()
        .filter_map(|s| Some((s.step as f64, f(s).filter(|v| v.is_finite())?)))
        .collect()
}

/// Trailing rolling mean over `window` points (the first points average what
/// there is). A window of 1 returns the input.
pub fn rolling_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// The first step of every stage after the first: where a rolling mean
/// restarts, so no stage's average leaks into the next.
pub fn stage_starts(run: &Run) -> Vec<f64> {
    run.steps
        .windows(2)
        .filter(|w| w[0].stage != w[1].stage)
        .map(|w| w[1].step as f64)
        .collect()
}

/// [`rolling_mean`] restarted at each x in `cuts` (sorted).
pub fn rolling_mean_within(points: &[(f64, f64)], window: usize, cuts: &[f64]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&f64::INFINITY)) {
        let end = start + points[start..].partition_point(|p| p.0 < cut);
        out.extend(rolling_mean(&points[start..end], window));
        start = end;
    }
    out
}

/// A smoothing window that suits `n` points: about 1/40 of the run, 1 to 50.
pub fn smoothing_window(n: usize) -> usize {
    (n / 40).clamp(1, 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_mean_averages_the_trailing_window() {
        let pts = [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0), (4.0, 7.0)];
        let m = rolling_mean(&pts, 2);
        assert_eq!(m, vec![(1.0, 1.0), (2.0, 2.0), (3.0, 4.0), (4.0, 6.0)]);
        assert_eq!(rolling_mean(&pts, 1), pts.to_vec());
    }

    #[test]
    fn the_rolling_mean_restarts_at_stage_starts() {
        let pts = [(1.0, 1.0), (2.0, 3.0), (3.0, 10.0), (4.0, 20.0)];
        let m = rolling_mean_within(&pts, 4, &[3.0]);
        assert_eq!(m, vec![(1.0, 1.0), (2.0, 2.0), (3.0, 10.0), (4.0, 15.0)]);
        assert_eq!(rolling_mean_within(&pts, 4, &[]), rolling_mean(&pts, 4));
    }

    #[test]
    fn samples_at_uses_the_last_step_at_or_before() {
        let c = [(1, 16), (2, 32), (5, 96)];
        assert_eq!(samples_at(&c, 0), 0);
        assert_eq!(samples_at(&c, 2), 32);
        assert_eq!(samples_at(&c, 4), 32);
        assert_eq!(samples_at(&c, 9), 96);
    }
}

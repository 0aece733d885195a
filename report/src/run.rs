//! One run directory, loaded for reading: its events, per-step metrics and
//! held-out evaluations, as typed rows.
//!
//! The reader is lenient where a live run needs it and loud where data is
//! wrong: fields may be null or missing (older runs, SFT steps without a
//! reward), unknown fields and unknown event kinds are kept or ignored, a torn
//! last line is skipped, and a malformed line is set aside with a `file:line`
//! warning. Steps logged twice (a run resumed from a checkpoint redoes the
//! steps after it) keep their last record, which is the one the run went on
//! from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::jsonl;

/// A windowed training pass rate of one bucket, as in `metrics.jsonl`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WindowRate {
    pub rate: Option<f64>,
    pub n: Option<u64>,
}

/// One learner step (`metrics.jsonl`). Every figure is optional.
#[derive(Debug, Clone, Deserialize)]
pub struct StepRow {
    pub step: u64,
    pub time: Option<f64>,
    pub stage: Option<String>,
    pub stage_index: Option<u64>,
    /// `"sft"` or `"grpo"`.
    pub kind: Option<String>,
    pub loss: Option<f64>,
    pub mean_reward: Option<f64>,
    pub approx_kl: Option<f64>,
    pub clip_fraction: Option<f64>,
    pub entropy: Option<f64>,
    pub grad_norm: Option<f64>,
    pub lr: Option<f64>,
    #[serde(default)]
    pub pass_rates: BTreeMap<String, WindowRate>,
    /// Responses graded in this step, kept or dropped by dynamic sampling:
    /// the runtime's sample count (`--max-samples` spends these).
    pub responses: Option<u64>,
    /// Responses in this step that hit the length limit.
    pub truncated: Option<u64>,
    pub tokens_generated: Option<u64>,
    /// Mean response length in tokens, when the runtime logs it.
    #[serde(alias = "mean_response_length", alias = "mean_response_len")]
    pub mean_response_tokens: Option<f64>,
    pub generate_tokens_per_s: Option<f64>,
    pub learner_seconds: Option<f64>,
    pub step_seconds: Option<f64>,
    pub groups_kept: Option<u64>,
    pub groups_dropped: Option<u64>,
    pub redone: Option<u64>,
}

impl StepRow {
    /// Mean response length in tokens: the logged figure, else tokens
    /// generated over responses (both count dropped groups too).
    pub fn response_tokens(&self) -> Option<f64> {
        self.mean_response_tokens.or_else(|| {
            let (t, r) = (self.tokens_generated?, self.responses?);
            (r > 0).then(|| t as f64 / r as f64)
        })
    }

    /// Fraction of this step's responses that were truncated.
    pub fn truncation_rate(&self) -> Option<f64> {
        let (t, r) = (self.truncated?, self.responses?);
        (r > 0).then(|| t as f64 / r as f64)
    }
}

/// One bucket's result in a held-out evaluation.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalBucket {
    pub pass_rate: f64,
    pub n: Option<u64>,
}

/// One held-out evaluation (`eval.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct EvalRow {
    pub step: u64,
    /// Samples (graded responses) spent before this evaluation.
    pub samples: Option<u64>,
    pub stage: Option<String>,
    pub time: Option<f64>,
    pub buckets: BTreeMap<String, EvalBucket>,
}

/// One rule's evidence in a `stage_advanced` event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Evidence {
    pub rule: Option<String>,
    pub holds: Option<bool>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub samples: Option<u64>,
    pub window: Option<u64>,
    pub min_samples: Option<u64>,
    pub index: Option<u64>,
}

/// A `stage_advanced` event.
#[derive(Debug, Clone, Deserialize)]
pub struct Advance {
    pub step: u64,
    pub time: Option<f64>,
    pub from: Option<String>,
    /// `None` when the last stage finished.
    pub to: Option<String>,
    /// The rule that fired, as text, e.g. `any(max_steps 400)`.
    pub rule: Option<String>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    pub stage_steps: Option<u64>,
}

/// Any event: its kind, time and step, and the whole object.
#[derive(Debug, Clone)]
pub struct Event {
    pub line: usize,
    pub kind: String,
    pub time: Option<f64>,
    pub step: Option<u64>,
    pub raw: Value,
}

/// `stopped` reasons that mean the run ended as planned (not a signal or an
/// error): its stages ran out, or `--max-samples` / `[run] max_steps` was reached.
const PLANNED_ENDS: &[&str] = &["finished", "max_samples", "max_steps"];

/// How far the run got.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// No `stopped` or `finished` event yet: still going, or killed.
    Running,
    /// Ended as planned: its curriculum ran out (`finished`), or its sample
    /// or step budget was spent (`max_samples`, `max_steps`). Holds the reason.
    Finished(String),
    /// Stopped for another reason (signal, error), named as logged.
    Stopped(String),
}

/// A loaded run directory.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub events: Vec<Event>,
    pub advances: Vec<Advance>,
    /// One row per step, sorted by step.
    pub steps: Vec<StepRow>,
    /// One row per evaluation, sorted by step; empty when the run has no eval.jsonl.
    pub evals: Vec<EvalRow>,
    /// Lines set aside and other oddities, `file:line: ...`.
    pub warnings: Vec<String>,
    /// Files whose last line was torn (still being written).
    pub torn: Vec<&'static str>,
}

impl Status {
    /// Whether the run ended as planned (the only runs an experiment counts).
    pub fn is_finished(&self) -> bool {
        matches!(self, Status::Finished(_))
    }
}

impl Run {
    /// Loads the run directory at `dir`.
    pub fn load(dir: &Path) -> Result<Run> {
        let events = jsonl::read_log::<Value>(dir, "events.jsonl")?;
        let metrics = jsonl::read_log::<StepRow>(dir, "metrics.jsonl")?;
        if events.is_none() && metrics.is_none() {
            return Err(Error::NotARunDir(dir.to_path_buf()));
        }
        let evals = jsonl::read_log::<EvalRow>(dir, "eval.jsonl")?;
        let mut run = Run {
            dir: dir.to_path_buf(),
            events: Vec::new(),
            advances: Vec::new(),
            steps: Vec::new(),
            evals: Vec::new(),
            warnings: Vec::new(),
            torn: Vec::new(),
        };
        if let Some(rows) = events {
            run.take_events(rows);
        }
        if let Some(rows) = metrics {
            run.note("metrics.jsonl", rows.torn_tail, rows.warnings);
            run.steps = last_per_step(rows.rows.into_iter().map(|r| r.1), |r| r.step);
        }
        if let Some(rows) = evals {
            run.note("eval.jsonl", rows.torn_tail, rows.warnings);
            run.evals = last_per_step(rows.rows.into_iter().map(|r| r.1), |r| r.step);
        }
        Ok(run)
    }

    fn note(&mut self, file: &'static str, torn: bool, warnings: Vec<String>) {
        if torn {
            self.torn.push(file);
        }
        self.warnings.extend(warnings);
    }

    fn take_events(&mut self, rows: jsonl::Rows<Value>) {
        let path = self.dir.join("events.jsonl");
        self.note("events.jsonl", rows.torn_tail, rows.warnings);
        for (line, raw) in rows.rows {
            let Some(kind) = raw.get("event").and_then(Value::as_str) else {
                self.warnings.push(format!(
                    "{}:{line}: set aside: no \"event\" field",
                    path.display()
                ));
                continue;
            };
            if kind == "stage_advanced" {
                match Advance::deserialize(&raw) {
                    Ok(a) => self.advances.push(a),
                    Err(e) => {
                        self.warnings.push(format!(
                            "{}:{line}: stage_advanced set aside: {e}",
                            path.display()
                        ));
                        continue;
                    }
                }
            }
            self.events.push(Event {
                line,
                kind: kind.to_string(),
                time: raw.get("time").and_then(Value::as_f64),
                step: raw.get("step").and_then(Value::as_u64),
                raw,
            });
        }
        // A resumed run may log an advance again; keep the last of each.
        let mut seen = std::collections::BTreeSet::new();
        let mut kept: Vec<Advance> = Vec::new();
        for a in self.advances.drain(..).rev() {
            if seen.insert((a.step, a.from.clone(), a.to.clone())) {
                kept.push(a);
            }
        }
        kept.reverse();
        kept.sort_by_key(|a| a.step);
        self.advances = kept;
    }

    /// How far the run got, from its last `stopped`/`finished` event.
    pub fn status(&self) -> Status {
        let last_start = self
            .events
            .iter()
            .rposition(|e| e.kind == "started" || e.kind == "resumed");
        let after = &self.events[last_start.map_or(0, |i| i + 1)..];
        for e in after.iter().rev() {
            match e.kind.as_str() {
                "finished" => return Status::Finished("finished".into()),
                "stopped" => {
                    let reason = e.raw.get("reason").and_then(Value::as_str).unwrap_or("");
                    return if PLANNED_ENDS.contains(&reason) {
                        Status::Finished(reason.to_string())
                    } else {
                        Status::Stopped(reason.to_string())
                    };
                }
                _ => {}
            }
        }
        // A fatal error: the last event is an error and nothing was logged after it.
        if let Some(e) = after.last().filter(|e| e.kind == "error") {
            let later = self.steps.last().and_then(|s| s.time).zip(e.time);
            if later.is_none_or(|(step_t, err_t)| step_t <= err_t) {
                let msg = e.raw.get("error").and_then(Value::as_str).unwrap_or("");
                return Status::Stopped(format!("error: {msg}"));
            }
        }
        Status::Running
    }

    /// Unix time the run (first) started, if logged.
    pub fn start_time(&self) -> Option<f64> {
        self.events
            .iter()
            .find(|e| e.kind == "started")
            .and_then(|e| e.time)
            .or_else(|| self.steps.first().and_then(|s| s.time))
    }

    /// Unix time of the last thing the run logged.
    pub fn last_time(&self) -> Option<f64> {
        let times = self.events.iter().filter_map(|e| e.time);
        let times = times.chain(self.steps.last().and_then(|s| s.time));
        let times = times.chain(self.evals.last().and_then(|e| e.time));
        times.reduce(f64::max)
    }

    /// Wall seconds from start to the last logged record (restarts included).
    pub fn wall_seconds(&self) -> Option<f64> {
        Some(self.last_time()? - self.start_time()?)
    }

    /// Samples (graded responses) spent up to and including each step.
    pub fn cumulative_samples(&self) -> Vec<(u64, u64)> {
        let mut total = 0;
        self.steps
            .iter()
            .map(|s| {
                total += s.responses.unwrap_or(0);
                (s.step, total)
            })
            .collect()
    }

    /// Samples spent in the whole run: the largest of the metrics' running
    /// total, the last evaluation's count and the `stopped` event's count.
    pub fn samples(&self) -> u64 {
        let from_steps = self.cumulative_samples().last().map_or(0, |s| s.1);
        let from_eval = self.evals.last().and_then(|e| e.samples).unwrap_or(0);
        let from_stop = self
            .events
            .iter()
            .filter(|e| e.kind == "stopped" || e.kind == "finished")
            .filter_map(|e| e.raw.get("samples").and_then(Value::as_u64))
            .max()
            .unwrap_or(0);
        from_steps.max(from_eval).max(from_stop)
    }

    /// Events that a reader of the summary should see: everything except the
    /// routine `started` and `stage_advanced` (which the timeline shows).
    pub fn notable_events(&self) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(|e| !matches!(e.kind.as_str(), "started" | "stage_advanced"))
    }
}

/// Sorts rows by step and keeps the last row logged for each step.
fn last_per_step<T>(rows: impl Iterator<Item = T>, step: impl Fn(&T) -> u64) -> Vec<T> {
    let mut by_step = BTreeMap::new();
    for r in rows {
        by_step.insert(step(&r), r);
    }
    by_step.into_values().collect()
}

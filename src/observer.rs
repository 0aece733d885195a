//! Where a run's reports go: events.jsonl and metrics.jsonl in the run
//! directory, the Prometheus metrics, the `/status` snapshot and the terminal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gradus_actors::data::Domain;
use gradus_actors::trainer::{EvalReport, Observer, StepReport};
use serde_json::json;

use crate::http::StatusBoard;
use crate::metrics::Metrics;
use crate::progress::{Progress, StepView};
use crate::run_dir::{RunDir, unix_time};

/// The daemon's [`Observer`].
pub struct RunObserver {
    run_dir: RunDir,
    metrics: Arc<Metrics>,
    status: StatusBoard,
    progress: Progress,
    stages: usize,
    started: Instant,
    /// Supervised actors shown in `/status`, with their restarts so far.
    actors: BTreeMap<String, u64>,
}

impl RunObserver {
    pub fn new(run_dir: RunDir, metrics: Arc<Metrics>, status: StatusBoard, stages: usize) -> Self {
        Self {
            run_dir,
            metrics,
            status,
            progress: Progress::new(),
            stages,
            started: Instant::now(),
            actors: BTreeMap::new(),
        }
    }

    /// The supervised actors whose health `/status` shows.
    pub fn watch_actors(&mut self, names: impl IntoIterator<Item = String>) {
        self.actors = names.into_iter().map(|n| (n, 0)).collect();
        self.refresh_actors();
    }

    /// Actor `name` was restarted by the supervisor.
    pub fn actor_restarted(&mut self, name: &str) {
        *self.actors.entry(name.to_string()).or_default() += 1;
        self.refresh_actors();
    }

    /// Each actor's health in `/status`: "running" while it is registered
    /// under its name, "down" while a restart is pending, with its restarts.
    fn refresh_actors(&self) {
        let mut s = self.status.write().expect("status lock");
        for (name, restarts) in &self.actors {
            let up = ractor::registry::where_is(name.clone()).is_some();
            let health = if up { "running" } else { "down" };
            let text = match restarts {
                0 => health.to_string(),
                n => format!("{health} ({n} restarts)"),
            };
            s.actors.insert(name.clone(), text);
        }
    }

    /// Marks the run finished in `/status`.
    pub fn finish(&mut self) {
        self.status.write().expect("status lock").finished = true;
    }

    /// One held-out evaluation: eval.jsonl, the eval gauges and a progress line.
    pub fn evaluation(&mut self, r: &EvalReport, samples: u64) {
        let mut shown = Vec::new();
        for (key, b) in &r.buckets {
            let (domain, bucket) = key.split_once('/').unwrap_or(("", key));
            self.metrics
                .eval_pass_rate
                .with_label_values(&[domain, bucket])
                .set(b.pass_rate);
            shown.push(format!("{bucket} {:.2}", b.pass_rate));
        }
        self.progress.line(&format!(
            "[step {}] eval ({:.1} s): {}",
            r.step,
            r.seconds,
            shown.join("  ")
        ));
        let line = json!({
            "step": r.step,
            "samples": samples,
            "stage": r.stage,
            "time": unix_time(),
            "seconds": r.seconds,
            "buckets": r.buckets,
        });
        if let Err(e) = self.run_dir.eval(&line) {
            self.warn("eval.jsonl", e);
        }
    }

    /// A failed append (a full disk, an I/O error): said on the display and
    /// counted in `gradus_log_write_failures_total{file}`, never dropped silently.
    fn warn(&mut self, what: &str, e: anyhow::Error) {
        self.metrics
            .log_write_failures
            .with_label_values(&[what])
            .inc();
        self.progress
            .line(&format!("gradus: warning: cannot write {what}: {e:#}"));
    }

    /// The length of each run log now, for a checkpoint; first, with
    /// `rotate_mb` set, each log over it is rotated (said on the display).
    pub fn log_lengths(
        &mut self,
        rotate_mb: f64,
        keep: usize,
    ) -> std::collections::BTreeMap<String, u64> {
        if rotate_mb > 0.0 {
            match self.run_dir.rotate((rotate_mb * 1_048_576.0) as u64, keep) {
                Ok(files) => {
                    for f in files {
                        self.progress.line(&format!("gradus: log rotated to {f}"));
                    }
                }
                Err(e) => self.warn("a rotated log", e),
            }
        }
        let (lengths, errors) = self.run_dir.lengths();
        for (file, e) in errors {
            self.warn(&file, e);
        }
        lengths
    }

    /// A line for the operator, through the progress display.
    pub fn warn_line(&mut self, text: &str) {
        self.progress.line(text);
    }
}

impl Observer for RunObserver {
    fn event(&mut self, name: &str, step: u64, fields: serde_json::Value) {
        let line = match name {
            "stage_advanced" => format!(
                "[step {step}] stage advanced: {} -> {} ({})",
                fields["from"].as_str().unwrap_or("?"),
                fields["to"].as_str().unwrap_or("end"),
                fields["rule"].as_str().unwrap_or("?"),
            ),
            _ => format!("[step {step}] {name} {fields}"),
        };
        self.progress.line(&line);
        if name == "stage_advanced" {
            self.metrics.stage_transitions.inc();
        }
        if let Err(e) = self.run_dir.event(name, step, fields) {
            self.warn("events.jsonl", e);
        }
    }

    fn step(&mut self, r: &StepReport) {
        let m = &self.metrics;
        m.stage_index.set(r.stage_index as i64);
        // A step whose update is still running (async mode) or that kept no
        // group has no learner figures.
        let updated = r.stats.step > 0;
        if updated {
            m.policy_version.set(r.stats.policy_version as i64);
            m.learner_step_seconds.observe(r.stats.seconds);
            m.last_step_timestamp.set(unix_time());
            if let Some(gap) = r.stats.approx_kl {
                m.behaviour_logprob_gap.set(f64::from(gap));
            }
        }
        // Staleness of what was learned: versions between the behaviour policy
        // and the policy the update started from (0 in on-policy runs).
        for (domain, lag) in &r.learned_staleness {
            m.staleness
                .with_label_values(&[domain.as_str()])
                .observe(*lag as f64);
        }
        m.stale_dropped.inc_by(r.stale_dropped as u64);
        m.tokens_generated.inc_by(r.tokens_generated);
        for (verdict, n) in &r.verdicts {
            m.responses.with_label_values(&[verdict]).inc_by(*n);
        }
        for (domain, secs) in &r.grade_seconds {
            match domain {
                Domain::Math => m.grader_seconds.observe(*secs),
                Domain::Code => m.sandbox_seconds.observe(*secs),
            }
        }
        for (key, (rate, _)) in &r.pass_rates {
            let (domain, bucket) = key.split_once('/').unwrap_or((key, ""));
            m.pass_rate.with_label_values(&[domain, bucket]).set(*rate);
            // Rewards are binary unless partial credit is on, so the pass rate
            // is also the mean reward of the window.
            m.mean_reward
                .with_label_values(&[domain, bucket])
                .set(*rate);
        }
        {
            let mut s = self.status.write().expect("status lock");
            s.stage = r.stage.clone();
            s.stage_index = r.stage_index;
            s.step = r.step + 1;
            if updated {
                s.policy_version = r.stats.policy_version;
            }
            s.pass_rates = r
                .pass_rates
                .iter()
                .map(|(k, (v, _))| (k.clone(), *v))
                .collect();
        }
        self.refresh_actors();
        let tokens_per_s = r.tokens_generated as f64 / r.generate_seconds.max(1e-9);
        let line = json!({
            "time": unix_time(),
            "step": r.step + 1,
            "stage": r.stage,
            "stage_index": r.stage_index,
            "kind": r.stats.kind,
            "loss": r.stats.loss,
            "mean_reward": r.stats.mean_reward,
            "entropy": r.stats.entropy,
            "approx_kl": r.stats.approx_kl,
            "clip_fraction": r.stats.clip_fraction,
            "grad_norm": r.stats.grad_norm,
            "lr": r.stats.lr,
            "pass_rates": r.pass_rates.iter().map(|(k, (v, n))| (k.clone(), json!({"rate": v, "n": n}))).collect::<serde_json::Map<_, _>>(),
            "responses": r.responses,
            "truncated": r.truncated,
            "groups_kept": r.groups_kept,
            "groups_dropped": r.groups_dropped,
            "groups_unscorable": r.groups_unscorable,
            "tokens_generated": r.tokens_generated,
            "generate_tokens_per_s": tokens_per_s,
            "learner_seconds": r.stats.seconds,
            "step_seconds": r.wall_seconds,
            "redone": r.redone,
            "staleness_max": r.learned_staleness.iter().map(|(_, lag)| *lag).max(),
            "stale_dropped": r.stale_dropped,
        });
        if let Err(e) = self.run_dir.metrics(&line) {
            self.warn("metrics.jsonl", e);
        }
        self.progress.step(&StepView {
            stage: r.stage.clone(),
            stage_index: r.stage_index,
            stages: self.stages,
            step: r.step + 1,
            pass_rates: r.pass_rates.clone(),
            mean_reward: f64::from(r.stats.mean_reward.unwrap_or(0.0)),
            loss: f64::from(r.stats.loss),
            tokens_per_s,
            step_seconds: r.wall_seconds,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        });
    }

    fn rollout(&mut self, line: serde_json::Value) {
        if let Err(e) = self.run_dir.rollout(&line) {
            self.warn("rollouts.jsonl", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: a failed append (here a full disk: the log is /dev/full) is
    /// said and counted per file, never dropped silently; the run goes on.
    #[test]
    fn a_failed_log_append_is_reported_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("rollouts.jsonl")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let run_dir = RunDir::open(dir.path()).unwrap();
        let mut obs = RunObserver::new(run_dir, metrics.clone(), StatusBoard::default(), 1);
        obs.rollout(json!({"step": 1, "reward": 0.0}));
        obs.rollout(json!({"step": 2, "reward": 1.0}));
        let count = |file: &str| metrics.log_write_failures.with_label_values(&[file]).get();
        assert_eq!(count("rollouts.jsonl"), 2);
        assert_eq!(count("events.jsonl"), 0);
        obs.event("started", 0, json!({}));
        assert_eq!(count("events.jsonl"), 0, "the other logs still write");
        assert!(
            metrics
                .render()
                .contains("gradus_log_write_failures_total{file=\"rollouts.jsonl\"} 2")
        );
    }
}

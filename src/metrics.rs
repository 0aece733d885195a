//! Every Prometheus metric gradus exports, declared in one place with its help
//! text.
//!
//! Names follow `gradus_<component>_<what>_<unit>`: counters end in `_total`,
//! durations are in seconds, and labels come from a small fixed set (`domain`,
//! `bucket`, `verdict`, `actor`, `result`, `queue`) so the series count stays
//! bounded however long a run lasts.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for the sandbox (one job: milliseconds to seconds).
const SANDBOX_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Latency buckets for the math grader (one answer: microseconds to milliseconds).
const GRADER_BUCKETS: &[f64] = &[1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1];
/// Latency buckets for one learner step (tenths of a second to minutes).
const STEP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The metrics of one gradus process, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Index of the running curriculum stage (0-based).
    pub stage_index: IntGauge,
    /// Stage transitions, automatic or by config.
    pub stage_transitions: IntCounter,
    /// Windowed pass rate per domain and bucket (0..1).
    pub pass_rate: GaugeVec,
    /// Windowed mean reward per domain and bucket.
    pub mean_reward: GaugeVec,
    /// Held-out evaluation pass rate per domain and bucket (0..1), from the last evaluation.
    pub eval_pass_rate: GaugeVec,
    /// Graded responses by verdict (correct, wrong, truncated, time_limit, ...).
    pub responses: IntCounterVec,
    /// Wall time of one sandbox job.
    pub sandbox_seconds: Histogram,
    /// Wall time of grading one math answer.
    pub grader_seconds: Histogram,
    /// Wall time of one learner step (forward, backward, optimizer).
    pub learner_step_seconds: Histogram,
    /// Response tokens generated.
    pub tokens_generated: IntCounter,
    /// Version of the policy the learner last published.
    pub policy_version: IntGauge,
    /// Policy versions between the behaviour policy of a learned batch and the learner.
    pub staleness: HistogramVec,
    /// Groups dropped because they were older than the staleness bound.
    pub stale_dropped: IntCounter,
    /// Mean behaviour log-prob minus the learner's recomputed log-prob over
    /// the last GRPO batch's trained tokens, before the update: how far the
    /// sampler (local or an inference server) and the learner disagree.
    pub behaviour_logprob_gap: Gauge,
    /// Actor restarts by the supervisor.
    pub actor_restarts: IntCounterVec,
    /// Config reloads by result (applied, invalid, unchanged).
    pub config_reloads: IntCounterVec,
    /// Items waiting per queue.
    pub queue_depth: IntGaugeVec,
    /// Unix time of the last finished learner step, for "trainer stuck" alerts.
    pub last_step_timestamp: Gauge,
    /// Checkpoint writes that failed (the previous checkpoint stayed in force).
    pub checkpoint_failures: IntCounter,
    /// Lines that could not be appended to a run log, by file.
    pub log_write_failures: IntCounterVec,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            stage_index: IntGauge::new(
                "gradus_curriculum_stage_index",
                "Index of the running curriculum stage (0-based).",
            )
            .expect("valid metric"),
            stage_transitions: IntCounter::new(
                "gradus_curriculum_stage_transitions_total",
                "Curriculum stage transitions, automatic or by config.",
            )
            .expect("valid metric"),
            pass_rate: GaugeVec::new(
                Opts::new(
                    "gradus_curriculum_pass_rate_ratio",
                    "Pass rate over the advancement window, per domain and bucket (0..1).",
                ),
                &["domain", "bucket"],
            )
            .expect("valid metric"),
            eval_pass_rate: GaugeVec::new(
                Opts::new(
                    "gradus_eval_pass_rate_ratio",
                    "Pass rate of the last held-out evaluation, per domain and bucket (0..1).",
                ),
                &["domain", "bucket"],
            )
            .expect("valid metric"),
            mean_reward: GaugeVec::new(
                Opts::new(
                    "gradus_curriculum_mean_reward",
                    "Mean reward over the advancement window, per domain and bucket.",
                ),
                &["domain", "bucket"],
            )
            .expect("valid metric"),
            responses: IntCounterVec::new(
                Opts::new(
                    "gradus_rollout_responses_total",
                    "Graded responses by verdict.",
                ),
                &["verdict"],
            )
            .expect("valid metric"),
            sandbox_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gradus_sandbox_job_seconds",
                    "Wall time of one sandbox job, from submission to verdict.",
                )
                .buckets(SANDBOX_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            grader_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gradus_grader_grade_seconds",
                    "Wall time of grading one math answer.",
                )
                .buckets(GRADER_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            learner_step_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gradus_learner_step_seconds",
                    "Wall time of one learner step (forward, backward and optimizer).",
                )
                .buckets(STEP_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
            tokens_generated: IntCounter::new(
                "gradus_generator_tokens_total",
                "Response tokens generated.",
            )
            .expect("valid metric"),
            policy_version: IntGauge::new(
                "gradus_learner_policy_version",
                "Version of the policy the learner last published.",
            )
            .expect("valid metric"),
            staleness: HistogramVec::new(
                HistogramOpts::new(
                    "gradus_learner_staleness_versions",
                    "Policy versions between a learned group's behaviour policy and the learner.",
                )
                .buckets(vec![0.0, 1.0, 2.0, 4.0, 8.0, 16.0]),
                &["domain"],
            )
            .expect("valid metric"),
            behaviour_logprob_gap: Gauge::new(
                "gradus_behaviour_logprob_gap",
                "Mean behaviour minus learner log-prob of the last GRPO batch's tokens, before the update",
            )
            .expect("valid metric"),
            stale_dropped: IntCounter::new(
                "gradus_learner_stale_groups_dropped_total",
                "Groups dropped because they were older than the staleness bound.",
            )
            .expect("valid metric"),
            actor_restarts: IntCounterVec::new(
                Opts::new(
                    "gradus_supervisor_actor_restarts_total",
                    "Actor restarts by the supervisor.",
                ),
                &["actor"],
            )
            .expect("valid metric"),
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "gradus_config_reloads_total",
                    "Config reloads by result (applied, invalid, unchanged).",
                ),
                &["result"],
            )
            .expect("valid metric"),
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "gradus_runtime_queue_depth_items",
                    "Items waiting per queue.",
                ),
                &["queue"],
            )
            .expect("valid metric"),
            last_step_timestamp: Gauge::new(
                "gradus_learner_last_step_timestamp_seconds",
                "Unix time of the last finished learner step.",
            )
            .expect("valid metric"),
            checkpoint_failures: IntCounter::new(
                "gradus_checkpoint_failures_total",
                "Checkpoint writes that failed; the previous checkpoint stayed in force.",
            )
            .expect("valid metric"),
            log_write_failures: IntCounterVec::new(
                Opts::new(
                    "gradus_log_write_failures_total",
                    "Lines that could not be appended to a run log, by file.",
                ),
                &["file"],
            )
            .expect("valid metric"),
            registry,
        };
        m.register_all();
        // Series with a known, fixed label set start at 0, so they exist
        // (and alerts on them work) before the first event.
        for result in ["applied", "invalid", "unchanged"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for file in [
            "events.jsonl",
            "metrics.jsonl",
            "rollouts.jsonl",
            "eval.jsonl",
        ] {
            m.log_write_failures.with_label_values(&[file]);
        }
        for actor in ["learner", "generator", "executor", "grader"] {
            m.actor_restarts.with_label_values(&[actor]);
            m.queue_depth.with_label_values(&[actor]);
        }
        m
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 20] = [
            Box::new(self.stage_index.clone()),
            Box::new(self.stage_transitions.clone()),
            Box::new(self.pass_rate.clone()),
            Box::new(self.mean_reward.clone()),
            Box::new(self.eval_pass_rate.clone()),
            Box::new(self.responses.clone()),
            Box::new(self.sandbox_seconds.clone()),
            Box::new(self.grader_seconds.clone()),
            Box::new(self.learner_step_seconds.clone()),
            Box::new(self.tokens_generated.clone()),
            Box::new(self.policy_version.clone()),
            Box::new(self.staleness.clone()),
            Box::new(self.stale_dropped.clone()),
            Box::new(self.behaviour_logprob_gap.clone()),
            Box::new(self.actor_restarts.clone()),
            Box::new(self.config_reloads.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.last_step_timestamp.clone()),
            Box::new(self.checkpoint_failures.clone()),
            Box::new(self.log_write_failures.clone()),
        ];
        for c in collectors {
            self.registry.register(c).expect("metric names are unique");
        }
    }

    /// The registry in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buf).expect("prometheus text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_follows_the_naming_scheme_and_renders() {
        let m = Metrics::new();
        m.pass_rate.with_label_values(&["math", "easy"]).set(0.5);
        m.responses.with_label_values(&["correct"]).inc();
        m.actor_restarts.with_label_values(&["executor"]).inc();
        m.config_reloads.with_label_values(&["invalid"]).inc();
        m.queue_depth.with_label_values(&["grader"]).set(3);
        m.staleness.with_label_values(&["math"]).observe(1.0);
        let text = m.render();
        for family in m.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("gradus_"), "{name}");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} lacks help"
            );
        }
        assert!(
            text.contains("gradus_curriculum_pass_rate_ratio{bucket=\"easy\",domain=\"math\"} 0.5")
        );
    }
}

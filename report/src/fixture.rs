//! Small run directories for tests, written the way `gradus train` writes
//! them: a three-stage run (SFT warm-up, an easy RL stage that ends on its
//! pass-rate rule, a hard RL stage), held-out evaluations every other step,
//! and the odd unknown event.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

/// What the fixture run looks like.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Learner steps written (the stages run 1..=4, 5..=10, 11..).
    pub steps: u64,
    /// Responses learned per step.
    pub responses: u64,
    /// Write `eval.jsonl` (every 2 steps).
    pub eval: bool,
    /// Held-out pass rate of the hard bucket gained per 100 samples.
    pub hard_slope: f64,
    /// End with a `stopped` event; otherwise the run is still going.
    pub finished: bool,
    /// The `stopped` event's reason (`max_samples`, as a budgeted run ends).
    pub stop_reason: &'static str,
    /// Leave a torn last line in events.jsonl and metrics.jsonl.
    pub torn: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            steps: 14,
            responses: 16,
            eval: true,
            hard_slope: 0.01,
            finished: true,
            stop_reason: "max_samples",
            torn: false,
        }
    }
}

const T0: f64 = 1_795_374_000.0;

/// The easy bucket's pass rate at `step`.
pub fn easy_rate(step: u64) -> f64 {
    (0.1 + 0.05 * step as f64).min(1.0)
}

/// The hard bucket's pass rate after `samples` learned responses.
pub fn hard_rate(spec: &Spec, samples: u64) -> f64 {
    (spec.hard_slope * samples as f64 / 100.0).min(1.0)
}

fn stage_of(step: u64) -> (&'static str, u64, &'static str) {
    match step {
        1..=4 => ("warmup", 0, "sft"),
        5..=10 => ("easy", 1, "grpo"),
        _ => ("hard", 2, "grpo"),
    }
}

/// Writes the fixture run into `dir` (created if needed).
pub fn write(dir: &Path, spec: &Spec) {
    std::fs::create_dir_all(dir).unwrap();
    let mut events = String::new();
    let mut ev = |v: serde_json::Value| writeln!(events, "{v}").unwrap();
    ev(
        json!({"event": "started", "time": T0, "step": 0, "config": "configs/fixture.toml",
              "http": "127.0.0.1:1", "checkpoint": null}),
    );
    ev(json!({"event": "a_kind_from_the_future", "time": T0 + 0.5, "step": 0, "payload": [1, 2]}));
    if spec.steps >= 4 {
        ev(
            json!({"event": "stage_advanced", "time": T0 + 4.0, "step": 4, "from": "warmup",
                  "to": "easy", "rule": "any(max_steps 4)", "stage_steps": 4,
                  "evidence": [{"rule": "max_steps 4", "holds": true, "value": 4.0,
                                "threshold": 4.0, "samples": 4, "window": 4,
                                "min_samples": 4, "index": 0}]}),
        );
    }
    if spec.steps >= 7 {
        ev(json!({"event": "actor_restarted", "time": T0 + 7.0, "step": 7, "actor": "grader"}));
    }
    if spec.steps >= 10 {
        ev(
            json!({"event": "stage_advanced", "time": T0 + 10.0, "step": 10, "from": "easy",
                  "to": "hard", "rule": "any(pass_rate(add1) >= 0.5 over last 32 (min 16))",
                  "stage_steps": 6,
                  "evidence": [{"rule": "pass_rate(add1) >= 0.5 over last 32 (min 16)",
                                "holds": true, "value": 0.625, "threshold": 0.5, "samples": 32,
                                "window": 32, "min_samples": 16, "index": 0},
                               {"rule": "max_steps 50", "holds": false, "value": 6.0,
                                "threshold": 50.0, "samples": 6, "window": 50,
                                "min_samples": 50, "index": 1}]}),
        );
    }
    if spec.finished {
        ev(
            json!({"event": "stopped", "time": T0 + spec.steps as f64 + 0.5, "step": spec.steps,
                  "reason": spec.stop_reason, "elapsed_s": spec.steps as f64 + 0.5,
                  "samples": spec.steps * spec.responses}),
        );
    }
    let mut metrics = String::new();
    let mut evals = String::new();
    let mut samples = 0;
    for step in 1..=spec.steps {
        samples += spec.responses;
        let (stage, index, kind) = stage_of(step);
        let rl = kind == "grpo";
        let row = json!({
            "step": step, "time": T0 + step as f64, "stage": stage, "stage_index": index,
            "kind": kind, "loss": if rl { 0.01 } else { 4.0 - 0.5 * step as f64 },
            "mean_reward": if rl { Some(easy_rate(step)) } else { None },
            "approx_kl": if rl { Some(1e-4 * step as f64) } else { None },
            "clip_fraction": if rl { Some(0.0) } else { None },
            "entropy": 2.0 - 0.1 * step as f64, "grad_norm": 1.0, "lr": 1e-3,
            "pass_rates": {"math/add1": {"rate": easy_rate(step), "n": step * 4},
                           "math/add2": {"rate": hard_rate(spec, samples), "n": step * 2}},
            "responses": spec.responses, "truncated": step % 3, "tokens_generated": 10 * spec.responses + step,
            "generate_tokens_per_s": 1000.0 + step as f64, "learner_seconds": 0.2, "step_seconds": 0.5,
            "groups_kept": 2, "groups_dropped": 0, "redone": 0, "a_field_from_the_future": 1,
        });
        writeln!(metrics, "{row}").unwrap();
        if step % 2 == 0 || step == spec.steps {
            let e = json!({"step": step, "samples": samples, "stage": stage, "time": T0 + step as f64 + 0.2,
                "buckets": {"math/add1": {"pass_rate": easy_rate(step), "n": 32},
                            "math/add2": {"pass_rate": hard_rate(spec, samples), "n": 32}}});
            writeln!(evals, "{e}").unwrap();
        }
    }
    if spec.torn {
        events.push_str("{\"event\":\"stage_adv");
        metrics.push_str("{\"step\":99,\"time\":17953");
    }
    std::fs::write(dir.join("events.jsonl"), events).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    if spec.eval {
        std::fs::write(dir.join("eval.jsonl"), evals).unwrap();
    }
}

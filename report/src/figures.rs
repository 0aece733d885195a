//! The figures of `gradus report`, built from a loaded run: pass rates,
//! reward, response length and truncation, learner health, throughput.
//! Noisy per-step figures are drawn raw (pale) under a rolling mean.

use crate::plot::{Figure, Panel, Series, Style};
use crate::run::{Run, StepRow};
use crate::series::{self, PassRates, Source};
use crate::timeline::Timeline;

/// Every figure of the report that has data.
pub fn all(run: &Run, timeline: &Timeline) -> Vec<Figure> {
    let boundaries: Vec<(f64, String)> = timeline
        .boundaries()
        .into_iter()
        .map(|(s, l)| (s as f64, l))
        .collect();
    let mut figs = vec![pass_rate_figure("pass_rate", &PassRates::of(run))];
    if !run.evals.is_empty() {
        figs.push(pass_rate_figure(
            "training_pass_rate",
            &PassRates::training(run),
        ));
    }
    figs.push(Figure {
        stem: "reward".into(),
        title: "Mean reward per step (RL steps)".into(),
        x_label: "learner step".into(),
        panels: vec![noisy_panel(run, "Mean reward", "reward", |s| s.mean_reward)],
        boundaries: vec![],
    });
    figs.push(Figure {
        stem: "length".into(),
        title: "Response length and truncation".into(),
        x_label: "learner step".into(),
        panels: vec![
            noisy_panel(
                run,
                "Mean response length",
                "tokens",
                StepRow::response_tokens,
            ),
            noisy_panel(
                run,
                "Truncation rate (responses that hit the limit)",
                "fraction",
                StepRow::truncation_rate,
            ),
        ],
        boundaries: vec![],
    });
    let sft = |f: fn(&StepRow) -> Option<f64>| {
        move |s: &StepRow| f(s).filter(|_| s.kind.as_deref() == Some("sft"))
    };
    let rl = |f: fn(&StepRow) -> Option<f64>| {
        move |s: &StepRow| f(s).filter(|_| s.kind.as_deref() != Some("sft"))
    };
    figs.push(Figure {
        stem: "learner".into(),
        title: "Learner: loss, KL, entropy, gradient norm".into(),
        x_label: "learner step".into(),
        panels: vec![
            noisy_panel(run, "SFT loss", "loss", sft(|s| s.loss)),
            noisy_panel(run, "RL (GRPO) loss", "loss", rl(|s| s.loss)),
            noisy_panel(run, "Approximate KL to the behaviour policy", "KL", |s| {
                s.approx_kl
            }),
            noisy_panel(run, "Entropy", "nats/token", |s| s.entropy),
            noisy_panel(run, "Gradient norm", "L2 norm", |s| s.grad_norm),
        ],
        boundaries: vec![],
    });
    figs.push(Figure {
        stem: "throughput".into(),
        title: "Throughput".into(),
        x_label: "learner step".into(),
        panels: vec![
            noisy_panel(run, "Generation", "tokens/s", |s| s.generate_tokens_per_s),
            noisy_panel(run, "Graded responses per second", "responses/s", |s| {
                let (r, t) = (s.responses?, s.step_seconds?);
                (t > 0.0).then(|| r as f64 / t)
            }),
            step_time_panel(run),
        ],
        boundaries: vec![],
    });
    for f in &mut figs {
        f.panels
            .retain(|p| p.series.iter().any(|s| !s.points.is_empty()));
        f.boundaries = boundaries.clone();
    }
    figs.retain(Figure::has_data);
    figs
}

fn pass_rate_figure(stem: &str, rates: &PassRates) -> Figure {
    let style = match rates.source {
        Source::Eval => Style::Markers,
        Source::Training => Style::Line,
    };
    let series = rates
        .curves
        .iter()
        .enumerate()
        .map(|(i, (bucket, pts))| Series {
            name: bucket.clone(),
            points: pts.iter().map(|p| (p.step as f64, p.rate)).collect(),
            color: i,
            style,
        })
        .collect();
    Figure {
        stem: stem.into(),
        title: format!("Pass rate per bucket: {}", rates.source.describe()),
        x_label: "learner step".into(),
        panels: vec![Panel {
            title: "Pass rate".into(),
            y_label: "pass rate".into(),
            series,
            y_range: Some((0.0, 1.0)),
        }],
        boundaries: vec![],
    }
}

/// A panel with the raw per-step values (pale) and their rolling mean.
fn noisy_panel(
    run: &Run,
    title: &str,
    y_label: &str,
    f: impl Fn(&StepRow) -> Option<f64>,
) -> Panel {
    let raw = series::per_step(run, f);
    let w = series::smoothing_window(raw.len());
    let mut series = vec![];
    if w > 1 {
        series.push(Series {
            name: String::new(),
            points: raw.clone(),
            color: 0,
            style: Style::Thin,
        });
        series.push(Series {
            name: format!("mean of {w} steps"),
            points: series::rolling_mean_within(&raw, w, &series::stage_starts(run)),
            color: 0,
            style: Style::Line,
        });
    } else {
        series.push(Series {
            name: String::new(),
            points: raw,
            color: 0,
            style: Style::Line,
        });
    }
    Panel {
        title: title.into(),
        y_label: y_label.into(),
        series,
        y_range: None,
    }
}

fn step_time_panel(run: &Run) -> Panel {
    let step = series::per_step(run, |s| s.step_seconds);
    let learner = series::per_step(run, |s| s.learner_seconds);
    let w = series::smoothing_window(step.len());
    Panel {
        title: format!("Step time (mean of {w} steps)"),
        y_label: "seconds".into(),
        series: vec![
            Series {
                name: "whole step".into(),
                points: series::rolling_mean_within(&step, w, &series::stage_starts(run)),
                color: 0,
                style: Style::Line,
            },
            Series {
                name: "learner update".into(),
                points: series::rolling_mean_within(&learner, w, &series::stage_starts(run)),
                color: 1,
                style: Style::Line,
            },
        ],
        y_range: None,
    }
}

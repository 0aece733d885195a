//! The experiment's table as Markdown (printed and written), as JSON (every
//! run's figures, for scripts), and its plot: pass rate on the hardest bucket
//! against samples spent, per config a bold mean over seeds with each seed
//! as a pale line.

use std::fmt::Write;

use super::aggregate::{Stat, Table, mean_curve};
use crate::plot::{Figure, Panel, Series, Style};
use crate::summary::duration;

/// The table as Markdown.
pub fn markdown(t: &Table, budget: u64, seeds: u32) -> String {
    let mut w = String::new();
    let hardest = t.hardest.as_deref().unwrap_or("(none)");
    let _ = writeln!(w, "# Experiment\n");
    let _ = writeln!(
        w,
        "- budget: {budget} samples per run (graded responses, as `gradus train --max-samples` counts them); seeds 0..{}",
        seeds.saturating_sub(1)
    );
    let _ = writeln!(w, "- hardest bucket: `{hardest}` ({})", t.hardest_reason);
    let sources: Vec<&str> = t.sources.iter().map(|s| s.describe()).collect();
    let _ = writeln!(
        w,
        "- pass rates from: {}",
        if sources.is_empty() {
            "–".into()
        } else {
            sources.join("; ")
        }
    );
    let _ = writeln!(w, "\n## Final pass rate per bucket\n");
    let _ = writeln!(w, "Mean ± standard deviation over seeds [min–max].\n");
    let mut buckets: Vec<&String> = t
        .configs
        .iter()
        .flat_map(|c| c.final_rates.keys())
        .collect();
    buckets.sort();
    buckets.dedup();
    let _ = write!(w, "| bucket |");
    for c in &t.configs {
        let _ = write!(w, " {} |", c.config);
    }
    let _ = writeln!(w, "\n|---|{}", "---|".repeat(t.configs.len()));
    for b in buckets {
        let _ = write!(w, "| {b} |");
        for c in &t.configs {
            let cell = c.final_rates.get(b).map_or("–".into(), |s| stat(s, 3));
            let _ = write!(w, " {cell} |");
        }
        w.push('\n');
    }
    let _ = writeln!(w, "\n## Samples to {} on `{hardest}`, and cost\n", t.target);
    let _ = writeln!(
        w,
        "| config | runs ok | samples to reach {} | samples spent | wall time |",
        t.target
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for c in &t.configs {
        let reach = match &c.samples_to_target {
            Some(s) => format!("{} ({}/{} seeds reached)", stat(s, 0), c.reached, c.ok),
            None => format!("not reached (0/{} seeds)", c.ok),
        };
        let samples = c.samples.as_ref().map_or("–".into(), |s| stat(s, 0));
        let wall = c.wall_s.as_ref().map_or("–".into(), |s| {
            if s.n == 1 {
                duration(s.mean)
            } else {
                format!("{} ± {}", duration(s.mean), duration(s.std))
            }
        });
        let _ = writeln!(
            w,
            "| {} | {}/{} | {reach} | {samples} | {wall} |",
            c.config, c.ok, c.runs
        );
    }
    let _ = writeln!(w, "\n## Runs\n");
    let _ = writeln!(
        w,
        "| config | seed | samples to {} | final `{hardest}` | samples | wall time | run dir |",
        t.target
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for r in &t.runs {
        let reach = r
            .samples_to_target
            .map_or("not reached".into(), |s| s.to_string());
        let fin = t
            .hardest
            .as_ref()
            .and_then(|h| r.final_rates.get(h))
            .map_or("–".into(), |v| format!("{v:.3}"));
        let wall = r.wall_s.map_or("–".into(), duration);
        let _ = writeln!(
            w,
            "| {} | {} | {reach} | {fin} | {} | {wall} | `{}` |",
            r.config,
            r.seed,
            r.samples,
            r.dir.display()
        );
    }
    if !t.failures.is_empty() {
        let _ = writeln!(w, "\n## Failed runs (left out of the statistics)\n");
        for f in &t.failures {
            let _ = writeln!(
                w,
                "- {} seed {}: {} (`{}`)",
                f.config,
                f.seed,
                f.failure.as_deref().unwrap_or("failed"),
                f.dir.display()
            );
        }
    }
    w
}

/// `0.412 ± 0.031 [0.380–0.447]`, or just the value for one seed.
fn stat(s: &Stat, decimals: usize) -> String {
    if s.n == 1 {
        return format!("{:.decimals$}", s.mean);
    }
    format!(
        "{:.decimals$} ± {:.decimals$} [{:.decimals$}–{:.decimals$}]",
        s.mean, s.std, s.min, s.max
    )
}

/// The hardest bucket's pass rate against samples spent.
pub fn figure(t: &Table) -> Figure {
    let hardest = t.hardest.clone().unwrap_or_default();
    let mut series = Vec::new();
    let mut max_x: f64 = 0.0;
    for (i, c) in t.configs.iter().enumerate() {
        let curves: Vec<&[(f64, f64)]> = t
            .runs
            .iter()
            .filter(|r| r.config == c.config)
            .map(|r| r.hardest_curve.as_slice())
            .collect();
        for curve in &curves {
            max_x = curve.iter().map(|p| p.0).fold(max_x, f64::max);
            series.push(Series {
                name: String::new(),
                points: curve.to_vec(),
                color: i,
                style: Style::Thin,
            });
        }
        series.push(Series {
            name: match curves.len() {
                1 => format!("{} (1 seed)", c.config),
                n => format!("{} (mean of {n} seeds)", c.config),
            },
            points: mean_curve(&curves),
            color: i,
            style: Style::Line,
        });
    }
    series.push(Series {
        name: format!("target {}", t.target),
        points: vec![(0.0, t.target), (max_x, t.target)],
        color: 0,
        style: Style::Reference,
    });
    Figure {
        stem: "hardest_bucket".into(),
        title: format!("Pass rate on {hardest} vs samples"),
        x_label: "samples (graded responses)".into(),
        panels: vec![Panel {
            title: hardest,
            y_label: "pass rate".into(),
            series,
            y_range: Some((0.0, 1.0)),
        }],
        boundaries: vec![],
    }
}

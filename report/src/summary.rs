//! The one-page Markdown summary of a run: status, the stage timeline with
//! the rule and evidence that ended each stage, final pass rates, pass rates
//! at the end of each stage, notable events, the plots, and any lines set
//! aside.

use std::fmt::Write;

use serde_json::Value;

use crate::run::{Evidence, Run, Status};
use crate::series::PassRates;
use crate::timeline::{Ending, Timeline};

/// Renders the summary. `plots` are file names relative to the summary.
pub fn render(run: &Run, timeline: &Timeline, plots: &[String]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Run report: `{}`\n", run.dir.display());
    status_lines(w, run, timeline);
    let _ = writeln!(w, "\n## Stage timeline\n");
    stage_table(w, timeline);
    let rates = PassRates::of(run);
    let heading = match timeline.status {
        Status::Running => "Latest pass rates (run still going)",
        _ => "Final pass rates",
    };
    let _ = writeln!(
        w,
        "\n## {heading}\n\nSource: {}.\n",
        rates.source.describe()
    );
    final_rates(w, run, &rates);
    stage_end_rates(w, timeline, &rates);
    events(w, run);
    if !plots.is_empty() {
        let _ = writeln!(w, "\n## Plots\n");
        for p in plots {
            let _ = writeln!(w, "![{p}]({p})\n");
        }
    }
    if !run.warnings.is_empty() {
        let _ = writeln!(w, "\n## Lines set aside\n");
        for warn in &run.warnings {
            let _ = writeln!(w, "- {warn}");
        }
    }
    md
}

fn status_lines(w: &mut String, run: &Run, timeline: &Timeline) {
    let status = match &timeline.status {
        Status::Finished(r) => format!("finished ({r})"),
        Status::Running => "still running (no `stopped` event yet), or killed".to_string(),
        Status::Stopped(r) => format!(
            "stopped ({})",
            if r.is_empty() { "no reason logged" } else { r }
        ),
    };
    let _ = writeln!(w, "- status: {status}");
    if let Some(cfg) = run
        .events
        .iter()
        .find(|e| e.kind == "started")
        .and_then(|e| e.raw.get("config"))
        .and_then(Value::as_str)
    {
        let _ = writeln!(w, "- config: `{cfg}`");
    }
    let last = run.steps.last().map_or(0, |s| s.step);
    let _ = writeln!(
        w,
        "- learner steps: {last}; samples (graded responses): {}",
        run.samples()
    );
    if let Some(s) = run.wall_seconds() {
        let _ = writeln!(w, "- wall time: {}", duration(s));
    }
    let _ = writeln!(w, "- held-out evaluations: {}", run.evals.len());
    for f in &run.torn {
        let _ = writeln!(w, "- `{f}`: last line incomplete (being written), skipped");
    }
}

fn stage_table(w: &mut String, timeline: &Timeline) {
    let _ = writeln!(
        w,
        "| # | stage | kind | first step | last step | ended by | evidence |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for (i, s) in timeline.spans.iter().enumerate() {
        let (first, last) = s.steps.map_or(("–".into(), "–".into()), |(f, l)| {
            (f.to_string(), l.to_string())
        });
        let (ended, evidence) = match &s.ending {
            Some(e @ Ending::Advanced(a)) => (
                format!("`{}` at step {}", e.rule(), a.step),
                a.evidence
                    .iter()
                    .map(evidence_text)
                    .collect::<Vec<_>>()
                    .join("<br>"),
            ),
            Some(e @ Ending::Changed { step }) => {
                (format!("{} at step {step}", e.rule()), String::new())
            }
            None if i + 1 == timeline.spans.len() => (running(&timeline.status), String::new()),
            None => ("–".into(), String::new()),
        };
        let kind = s.kind.as_deref().unwrap_or("–");
        let _ = writeln!(
            w,
            "| {} | {} | {kind} | {first} | {last} | {ended} | {evidence} |",
            i + 1,
            s.name
        );
    }
}

fn running(status: &Status) -> String {
    match status {
        Status::Running => "(running)".into(),
        Status::Finished(r) => format!("(run finished: {r})"),
        Status::Stopped(r) => format!("(run stopped: {r})"),
    }
}

/// `✓ pass_rate(add1) >= 0.5 over last 128 (min 96): 0.555 vs 0.5, 128 samples`.
pub fn evidence_text(e: &Evidence) -> String {
    let mark = match e.holds {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    };
    let mut s = format!("{mark} {}", e.rule.as_deref().unwrap_or("(rule)"));
    if let (Some(v), Some(t)) = (e.value, e.threshold) {
        let _ = write!(s, ": {} vs {}", num(v), num(t));
    }
    if let Some(n) = e.samples {
        let _ = write!(s, ", {n} samples");
    }
    s.replace('|', "\\|")
}

fn final_rates(w: &mut String, run: &Run, rates: &PassRates) {
    if rates.curves.is_empty() {
        let _ = writeln!(w, "No pass rates logged yet.");
        return;
    }
    let last_eval = run.evals.last();
    let _ = writeln!(w, "| bucket | pass rate | n | at step |");
    let _ = writeln!(w, "|---|---|---|---|");
    for (bucket, pts) in &rates.curves {
        let Some(p) = pts.last() else { continue };
        let n = last_eval
            .and_then(|e| e.buckets.get(bucket)?.n)
            .or_else(|| run.steps.last().and_then(|s| s.pass_rates.get(bucket)?.n))
            .map_or("–".into(), |n| n.to_string());
        let _ = writeln!(w, "| {bucket} | {:.3} | {n} | {} |", p.rate, p.step);
    }
}

/// Pass rates at the end of each stage that ran a step (the question "did
/// math RL lift code?" is read off this table).
fn stage_end_rates(w: &mut String, timeline: &Timeline, rates: &PassRates) {
    let ends: Vec<(String, u64)> = timeline
        .spans
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.steps?.1)))
        .collect();
    if ends.is_empty() || rates.curves.is_empty() {
        return;
    }
    let buckets: Vec<&String> = rates.curves.keys().collect();
    let _ = writeln!(w, "\n### Pass rate at the end of each stage\n");
    let _ = writeln!(
        w,
        "Last value at or before the stage's last step ({}).\n",
        rates.source.describe()
    );
    let _ = write!(w, "| after stage (step) |");
    for b in &buckets {
        let _ = write!(w, " {b} |");
    }
    let _ = writeln!(w, "\n|---|{}", "---|".repeat(buckets.len()));
    for (name, step) in ends {
        let at = rates.at_step(step);
        let _ = write!(w, "| {name} ({step}) |");
        for b in &buckets {
            match at.get(*b) {
                Some(r) => {
                    let _ = write!(w, " {r:.3} |");
                }
                None => w.push_str(" – |"),
            }
        }
        w.push('\n');
    }
}

fn events(w: &mut String, run: &Run) {
    let notable: Vec<_> = run.notable_events().collect();
    if notable.is_empty() {
        return;
    }
    let t0 = run.start_time();
    let _ = writeln!(w, "\n## Events\n");
    let _ = writeln!(w, "| line | step | time | event | details |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    for e in notable {
        let when = match (e.time, t0) {
            (Some(t), Some(t0)) => format!("+{}", duration(t - t0)),
            _ => "–".into(),
        };
        let step = e.step.map_or("–".into(), |s| s.to_string());
        let mut details = e.raw.clone();
        if let Value::Object(m) = &mut details {
            for k in ["event", "time", "step"] {
                m.remove(k);
            }
        }
        let mut d = details.to_string().replace('|', "\\|");
        if d.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|&i| d.is_char_boundary(i))
                .unwrap_or(0);
            d.truncate(cut);
            d.push('…');
        }
        let _ = writeln!(w, "| {} | {step} | {when} | {} | `{d}` |", e.line, e.kind);
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `2 min 07 s`, `1 h 03 min`, `41.2 s`.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!(
            "{} h {:02.0} min",
            (s / 3600.0).floor(),
            (s % 3600.0) / 60.0
        )
    }
}

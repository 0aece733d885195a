//! The stage timeline of a run: which stage ran over which steps, and what
//! ended it (the rule that fired and its evidence).
//!
//! The steps come from `metrics.jsonl` (each row names its stage), the reasons
//! from `stage_advanced` events. A stage change with no event behind it (a
//! config reload that jumped stages) is shown as such rather than invented; an
//! advance logged before its next stage ran a step still opens that stage.

use crate::run::{Advance, Run, Status};

/// Why a stage ended.
#[derive(Debug, Clone)]
pub enum Ending {
    /// Its advancement rules held (`stage_advanced`).
    Advanced(Advance),
    /// The stage changed without a `stage_advanced` event at `step`
    /// (a config reload that jumped stages).
    Changed { step: u64 },
}

impl Ending {
    /// The last step of the ended stage (where plots draw the boundary).
    pub fn step(&self) -> u64 {
        match self {
            Ending::Advanced(a) => a.step,
            Ending::Changed { step } => *step,
        }
    }

    /// The rule that fired, as logged (`any(max_steps 400)`).
    pub fn rule(&self) -> String {
        match self {
            Ending::Advanced(a) => a.rule.clone().unwrap_or_else(|| "(rule not logged)".into()),
            Ending::Changed { .. } => "changed by config (no stage_advanced event)".into(),
        }
    }

    /// The rule without its `any(...)`/`all(...)` wrapper when that holds one
    /// rule: the short label plots use.
    pub fn short_rule(&self) -> String {
        let rule = self.rule();
        for prefix in ["any(", "all("] {
            if let Some(inner) = rule.strip_prefix(prefix).and_then(|r| r.strip_suffix(')'))
                && balanced(inner)
                && !top_level_comma(inner)
            {
                return inner.to_string();
            }
        }
        rule
    }
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

fn top_level_comma(s: &str) -> bool {
    let mut depth = 0i32;
    s.chars().any(|c| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        c == ',' && depth == 0
    })
}

/// One stage as it ran.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    /// `"sft"` or `"grpo"`, from the stage's steps.
    pub kind: Option<String>,
    /// First and last learner step in the stage; `None` before its first step.
    pub steps: Option<(u64, u64)>,
    /// What ended it; `None` while it runs (or when the run stopped in it).
    pub ending: Option<Ending>,
}

/// The run's stages in order.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub spans: Vec<Span>,
    /// Whether the run is still going (no stopped/finished event).
    pub status: Status,
}

impl Timeline {
    /// Builds the timeline of `run`.
    pub fn of(run: &Run) -> Timeline {
        let mut spans: Vec<Span> = Vec::new();
        let mut advances = run.advances.iter().peekable();
        for row in &run.steps {
            let name = row.stage.clone().unwrap_or_else(|| "(unnamed)".into());
            // Advances logged before this step close the current stage.
            while let Some(a) = advances.next_if(|a| a.step < row.step) {
                close_with(&mut spans, a);
            }
            match spans.last_mut() {
                Some(s) if s.name == name && s.ending.is_none() => {
                    s.steps = Some(s.steps.map_or((row.step, row.step), |(f, _)| (f, row.step)));
                    if s.kind.is_none() {
                        s.kind = row.kind.clone();
                    }
                }
                last => {
                    if let Some(s) = last.filter(|s| s.ending.is_none()) {
                        let step = s.steps.map_or(row.step.saturating_sub(1), |(_, l)| l);
                        s.ending = Some(Ending::Changed { step });
                    }
                    // An advance opened a stage with no steps yet: fill it.
                    match spans.last_mut() {
                        Some(s) if s.name == name && s.steps.is_none() => {
                            s.steps = Some((row.step, row.step));
                            s.kind = row.kind.clone();
                        }
                        _ => spans.push(Span {
                            name,
                            kind: row.kind.clone(),
                            steps: Some((row.step, row.step)),
                            ending: None,
                        }),
                    }
                }
            }
        }
        for a in advances {
            close_with(&mut spans, a);
        }
        Timeline {
            spans,
            status: run.status(),
        }
    }

    /// Stage boundaries for plots: (step, label), e.g.
    /// `(400, "→ math-easy: max_steps 400")`.
    pub fn boundaries(&self) -> Vec<(u64, String)> {
        self.spans
            .iter()
            .filter_map(|s| {
                let end = s.ending.as_ref()?;
                let to = match end {
                    Ending::Advanced(a) => a.to.clone().unwrap_or_else(|| "end".into()),
                    Ending::Changed { .. } => "?".into(),
                };
                Some((end.step(), format!("→ {to}: {}", end.short_rule())))
            })
            .collect()
    }
}

/// Closes the running stage with advance `a`, and opens `a.to` (stepless
/// until its first metrics row arrives).
fn close_with(spans: &mut Vec<Span>, a: &Advance) {
    let from = a.from.clone().unwrap_or_else(|| "(unnamed)".into());
    match spans.last_mut() {
        Some(s) if s.ending.is_none() && s.name == from => {
            s.ending = Some(Ending::Advanced(a.clone()))
        }
        _ => spans.push(Span {
            name: from,
            kind: None,
            steps: None,
            ending: Some(Ending::Advanced(a.clone())),
        }),
    }
    if let Some(to) = &a.to {
        spans.push(Span {
            name: to.clone(),
            kind: None,
            steps: None,
            ending: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl;
    use crate::run::StepRow;
    use std::path::Path;

    fn run_with(steps: &[(u64, &str)], advances: &[&str]) -> Run {
        let metrics: String = steps
            .iter()
            .map(|(s, st)| format!("{{\"step\":{s},\"stage\":\"{st}\",\"kind\":\"grpo\"}}\n"))
            .collect();
        let rows = jsonl::parse::<StepRow>(Path::new("m"), metrics.as_bytes());
        let adv = advances.join("\n");
        let adv = jsonl::parse::<Advance>(Path::new("e"), adv.as_bytes());
        Run {
            dir: "r".into(),
            events: vec![],
            advances: adv.rows.into_iter().map(|r| r.1).collect(),
            steps: rows.rows.into_iter().map(|r| r.1).collect(),
            evals: vec![],
            warnings: vec![],
            torn: vec![],
        }
    }

    #[test]
    fn a_stage_change_without_an_event_is_shown_as_a_config_change() {
        let run = run_with(&[(1, "a"), (2, "a"), (3, "c"), (4, "c")], &[]);
        let t = Timeline::of(&run);
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.spans[0].steps, Some((1, 2)));
        assert!(matches!(
            t.spans[0].ending,
            Some(Ending::Changed { step: 2 })
        ));
        assert_eq!(
            t.boundaries(),
            vec![(
                2,
                "→ ?: changed by config (no stage_advanced event)".to_string()
            )]
        );
    }

    #[test]
    fn an_advance_before_the_next_stage_ran_opens_it_without_steps() {
        let run = run_with(
            &[(1, "a"), (2, "a")],
            &[r#"{"step":2,"from":"a","to":"b","rule":"all(max_steps 2, pass_rate(x) >= 0.5)"}"#],
        );
        let t = Timeline::of(&run);
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.spans[1].name, "b");
        assert_eq!(t.spans[1].steps, None);
        // Two rules under all(): the label keeps the combinator.
        assert_eq!(
            t.boundaries()[0].1,
            "→ b: all(max_steps 2, pass_rate(x) >= 0.5)"
        );
    }

    #[test]
    fn the_last_stage_finishing_is_a_boundary_to_the_end() {
        let run = run_with(
            &[(1, "a"), (2, "b")],
            &[
                r#"{"step":1,"from":"a","to":"b","rule":"any(max_steps 1)"}"#,
                r#"{"step":2,"from":"b","to":null,"rule":"any(max_steps 1)"}"#,
            ],
        );
        let t = Timeline::of(&run);
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.spans[1].steps, Some((2, 2)));
        let labels: Vec<_> = t.boundaries().into_iter().map(|b| b.1).collect();
        assert_eq!(labels, ["→ b: max_steps 1", "→ end: max_steps 1"]);
    }
}

//! Terminal progress for a training run.
//!
//! On a terminal, a small block (stage, step, per-bucket pass rates as bars,
//! reward, tokens/s, time per step) is redrawn in place after every step, and
//! events (stage advances, restarts, reloads) scroll above it. When stdout is
//! not a terminal (CI, `> log`), every step is one plain `key=value` line, so
//! logs stay greppable.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

/// One step's figures, as the progress display needs them.
#[derive(Debug, Clone, Default)]
pub struct StepView {
    pub stage: String,
    pub stage_index: usize,
    pub stages: usize,
    pub step: u64,
    /// Windowed pass rate and sample count per `domain/bucket`.
    pub pass_rates: BTreeMap<String, (f64, usize)>,
    pub mean_reward: f64,
    pub loss: f64,
    pub tokens_per_s: f64,
    pub step_seconds: f64,
    pub elapsed_s: f64,
}

/// Writes progress to stdout, redrawing in place on a terminal.
pub struct Progress {
    tty: bool,
    drawn_lines: usize,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
            drawn_lines: 0,
        }
    }

    /// Prints a line that stays (an event), above the live block.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Shows one step.
    pub fn step(&mut self, v: &StepView) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            self.erase(&mut out);
            let block = render_block(v);
            self.drawn_lines = block.lines().count();
            let _ = write!(out, "{block}");
        } else {
            let _ = writeln!(out, "{}", render_plain(v));
        }
        let _ = out.flush();
    }

    fn erase(&mut self, out: &mut impl Write) {
        if self.tty && self.drawn_lines > 0 {
            // Cursor up over the block, then clear to the end of the screen.
            let _ = write!(out, "\x1b[{}F\x1b[0J", self.drawn_lines);
            self.drawn_lines = 0;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn render_block(v: &StepView) -> String {
    let mut s = format!(
        "stage {}/{} {:<14} step {:>5}  reward {:>5.3}  loss {:>7.4}  {:>7.0} tok/s  {:>5.2} s/step  {:>6.0}s\n",
        v.stage_index + 1,
        v.stages,
        v.stage,
        v.step,
        v.mean_reward,
        v.loss,
        v.tokens_per_s,
        v.step_seconds,
        v.elapsed_s,
    );
    for (bucket, (rate, n)) in &v.pass_rates {
        let filled = (rate.clamp(0.0, 1.0) * 20.0).round() as usize;
        s.push_str(&format!(
            "  {bucket:<14} [{}{}] {:>5.1}%  (n={n})\n",
            "#".repeat(filled),
            ".".repeat(20 - filled),
            rate * 100.0
        ));
    }
    s
}

fn render_plain(v: &StepView) -> String {
    let rates: Vec<String> = v
        .pass_rates
        .iter()
        .map(|(b, (r, n))| format!("{b}={r:.3}/{n}"))
        .collect();
    format!(
        "step={} stage={} reward={:.3} loss={:.4} tok_s={:.0} step_s={:.2} pass=[{}]",
        v.step,
        v.stage,
        v.mean_reward,
        v.loss,
        v.tokens_per_s,
        v.step_seconds,
        rates.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StepView {
        let mut v = StepView {
            stage: "math-easy".into(),
            stages: 4,
            step: 7,
            ..Default::default()
        };
        v.pass_rates.insert("math/add1".into(), (0.5, 64));
        v
    }

    #[test]
    fn plain_lines_are_greppable() {
        let line = render_plain(&view());
        assert!(line.starts_with("step=7 stage=math-easy "), "{line}");
        assert!(line.contains("math/add1=0.500/64"), "{line}");
    }

    #[test]
    fn the_block_draws_a_bar_per_bucket() {
        let block = render_block(&view());
        assert!(block.contains("stage 1/4 math-easy"), "{block}");
        assert!(
            block.contains("[##########..........]  50.0%  (n=64)"),
            "{block}"
        );
    }
}

//! Grader settings: what to extract, how to read percentages, the numeric
//! tolerance, and the caps that bound time and memory.
//!
//! Two layers, as everywhere in gradus: [`GradeConfig`] is the raw serde form
//! (unknown fields are errors, so a typo in a run config's `[grader]` table
//! fails loudly) and [`GradeConfig::validate`] checks every field and reports
//! all problems at once. The defaults are the strict training settings.

use serde::{Deserialize, Serialize};

/// Everything [`crate::grade`] needs besides the two strings.
///
/// ```toml
/// [grader]
/// percent = "either"        # "either" | "fraction" | "number"
/// rel_tol = 1e-6
/// [grader.fallbacks]        # all off by default (strict: \boxed{} only)
/// answer_phrase = true
/// [grader.limits]
/// max_answer_bytes = 4096
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradeConfig {
    /// Where else to look for an answer when the response has no `\boxed{}`
    /// (or `\fbox{}`). All off by default: a training reward must not credit an
    /// answer the model did not commit to.
    pub fallbacks: Fallbacks,
    /// How `50\%` compares with `0.5` and `50`. Default: `either`.
    pub percent: PercentMode,
    /// Relative tolerance, used only where exactness is impossible: an
    /// irrational constant or function is involved, or a side was written as a
    /// decimal. Default 1e-6, so `0.333` is not `1/3`. Must lie in [0, 0.01].
    pub rel_tol: f64,
    /// Caps that turn pathological inputs into "unparseable" quickly.
    pub limits: Limits,
}

impl Default for GradeConfig {
    fn default() -> Self {
        GradeConfig {
            fallbacks: Fallbacks::default(),
            percent: PercentMode::Either,
            rel_tol: 1e-6,
            limits: Limits::default(),
        }
    }
}

impl GradeConfig {
    /// The training setting: `\boxed{}` only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// The evaluation setting: every extraction fallback on.
    pub fn lenient() -> Self {
        GradeConfig {
            fallbacks: Fallbacks::all(),
            ..Self::default()
        }
    }

    /// Checks every field; returns all problems, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(self.rel_tol.is_finite() && (0.0..=0.01).contains(&self.rel_tol)) {
            problems.push(format!(
                "rel_tol must lie in [0, 0.01], got {}",
                self.rel_tol
            ));
        }
        let l = &self.limits;
        let checks: [(&str, u64, u64, u64); 8] = [
            (
                "limits.max_response_bytes",
                l.max_response_bytes as u64,
                1,
                64 << 20,
            ),
            (
                "limits.max_answer_bytes",
                l.max_answer_bytes as u64,
                1,
                1 << 20,
            ),
            ("limits.max_depth", l.max_depth as u64, 1, 200),
            ("limits.max_items", l.max_items as u64, 1, 10_000),
            ("limits.max_exponent", l.max_exponent, 1, 1_000_000),
            ("limits.max_integer_bits", l.max_integer_bits, 64, 1 << 22),
            ("limits.fuel", l.fuel, 1, 100_000_000),
            ("limits.eval_points", l.eval_points as u64, 1, 64),
        ];
        for (name, value, lo, hi) in checks {
            if !(lo..=hi).contains(&value) {
                problems.push(format!("{name} must lie in [{lo}, {hi}], got {value}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Every problem found in a [`GradeConfig`], one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid grader config:\n  {}", problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Extraction fallbacks, tried in this order after `\boxed{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fallbacks {
    /// "The final answer is X", "the answer is X", "Answer: X" (the last one).
    pub answer_phrase: bool,
    /// The last inline or display math span (`$..$`, `\(..\)`, `\[..\]`).
    pub last_latex: bool,
    /// The whole response, when all of it parses as an answer (`-5`, `7/3`).
    pub whole_response: bool,
    /// The last number in the final clause (a truncated response whose last
    /// clause has no number gets nothing).
    pub last_number: bool,
}

impl Fallbacks {
    pub fn all() -> Self {
        Fallbacks {
            answer_phrase: true,
            last_latex: true,
            whole_response: true,
            last_number: true,
        }
    }

    pub fn any(&self) -> bool {
        self.answer_phrase || self.last_latex || self.whole_response || self.last_number
    }
}

/// How a percentage on one side compares with a bare number on the other.
/// When both sides carry `%`, the numbers before the signs are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PercentMode {
    /// `50\%` equals both `0.5` and `50` (graders disagree on this convention).
    Either,
    /// `50\%` means `0.5` only.
    Fraction,
    /// `50\%` means `50` only (the sign is a unit).
    Number,
}

/// Caps on work and size. Hitting any of them makes the answer unparseable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest response scanned, in bytes (default 1 MiB); longer is unparseable.
    pub max_response_bytes: usize,
    /// Longest extracted answer parsed, in bytes (default 4096).
    pub max_answer_bytes: usize,
    /// Deepest nesting of groups and operators (default 64).
    pub max_depth: usize,
    /// Most elements in a list, set, tuple or matrix (default 256).
    pub max_items: usize,
    /// Largest integer exponent evaluated exactly (default 100000).
    pub max_exponent: u64,
    /// Largest exact integer, in bits (default 65536, about 19700 digits).
    pub max_integer_bits: u64,
    /// Evaluation steps per grade call (default 200000); bounds time.
    pub fuel: u64,
    /// Random points for expressions with variables (default 6, plus 3 integer points).
    pub eval_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: 1 << 20,
            max_answer_bytes: 4096,
            max_depth: 64,
            max_items: 256,
            max_exponent: 100_000,
            max_integer_bits: 65_536,
            fuel: 200_000,
            eval_points: 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_table_round_trips_and_rejects_unknown_fields() {
        let cfg: GradeConfig =
            toml::from_str("percent = \"fraction\"\n[fallbacks]\nanswer_phrase = true\n").unwrap();
        assert_eq!(cfg.percent, PercentMode::Fraction);
        assert!(cfg.fallbacks.answer_phrase && !cfg.fallbacks.last_number);
        assert!(toml::from_str::<GradeConfig>("rel_tol2 = 1.0").is_err());
        assert!(toml::from_str::<GradeConfig>("[limits]\nmax_dpth = 3").is_err());
    }

    #[test]
    fn validate_reports_every_problem() {
        let mut cfg = GradeConfig::lenient();
        cfg.rel_tol = 0.5;
        cfg.limits.max_depth = 0;
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("limits.max_depth"));
        assert!(GradeConfig::default().validate().is_ok());
    }
}

//! Stage config: the `[curriculum]` part of a run config, in two layers.
//!
//! [`raw`] is what serde reads (unknown fields are errors); [`CurriculumConfig`] is the
//! validated layer, the only one the runtime sees: defaults applied, generation and learner
//! settings inherited from the previous stage, bucket names resolved, every rule checked.
//! Validation reports every problem, each as `file:line: field.path: message` (see
//! [`ConfigError`]). The README's "Stage config reference" documents each field.

mod locate;
pub mod raw;
mod validate;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use locate::Locator;
pub use raw::RawCurriculum;
pub use validate::validate;

use crate::data::Domain;

/// The validated curriculum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurriculumConfig {
    /// Seeds the sampler; fixed for a run.
    pub seed: u64,
    /// Difficulty buckets; fixed for a run (pools and statistics depend on them).
    pub buckets: Vec<Bucket>,
    /// Bucket for problems without a difficulty (`None`: such problems are left out).
    pub unrated_bucket: Option<String>,
    /// When prompts stop being sampled.
    pub retire: Retire,
    /// Stages, in order.
    pub stages: Vec<Stage>,
}

/// A difficulty bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Its name, referred to by stages and rules.
    pub name: String,
    /// Which problems it holds.
    pub rule: BucketRule,
}

/// How problems fall into a bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BucketRule {
    /// Prior pass rate in `[lo, hi)`, or `[lo, 1]` when `hi` is 1.
    PassRate {
        /// Inclusive lower bound.
        lo: f64,
        /// Exclusive upper bound (inclusive when 1).
        hi: f64,
    },
    /// Problems whose difficulty label is one of these.
    Labels(Vec<String>),
    /// Conditions on reference models' pass rates (`metadata.curate.pass_rates`, written by
    /// `gradus curate --model NAME`), as the difficulty-staged paper buckets by a 1.5B, a 7B
    /// and a 32B model. Unlike the exclusive `PassRate` and `Labels` buckets these may
    /// overlap: a problem is in every such bucket whose rule holds for it.
    Models(ModelRule),
}

/// A [`BucketRule::Models`] rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRule {
    /// A problem holds when any entry holds: each entry names models and the range each
    /// one's pass rate must lie in (all of them).
    pub any: Vec<Vec<(String, Range)>>,
    /// Of the rest (problems rated by every model `any` names that hold no entry), this
    /// fraction per domain is in the bucket too, chosen by a hash of the run's seed and the
    /// problem id (empty: none). The count is exact: ⌊fraction × rest⌉ per domain.
    pub sample_rest: Vec<(Domain, f64)>,
}

impl ModelRule {
    /// Every model the rule names, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut m: Vec<&str> = self.any.iter().flatten().map(|(n, _)| n.as_str()).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// Whether the entries hold for these pass rates (`None`: a named model is missing).
    pub fn holds(&self, rates: &std::collections::BTreeMap<String, f64>) -> Option<bool> {
        let mut all_known = true;
        for entry in &self.any {
            let mut ok = true;
            for (model, range) in entry {
                match rates.get(model) {
                    Some(r) => ok &= range.contains(*r),
                    None => {
                        ok = false;
                        all_known = false;
                    }
                }
            }
            if ok {
                return Some(true);
            }
        }
        all_known.then_some(false)
    }
}

/// An interval of pass rates, each end open or closed (`lo == hi`, both closed: one value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Lower end.
    pub lo: f64,
    /// Whether `lo` itself is in.
    pub lo_closed: bool,
    /// Upper end.
    pub hi: f64,
    /// Whether `hi` itself is in.
    pub hi_closed: bool,
}

impl Range {
    /// Whether `x` lies in the range.
    pub fn contains(&self, x: f64) -> bool {
        let above = if self.lo_closed {
            x >= self.lo
        } else {
            x > self.lo
        };
        let below = if self.hi_closed {
            x <= self.hi
        } else {
            x < self.hi
        };
        above && below
    }

    /// Reads `0`, `1`, `0.5` (one value) or `(0, 1)`, `[0, 0.5)`, `(0.5, 1]` (an interval);
    /// ends in `[0, 1]`, a non-empty range.
    pub fn parse(text: &str) -> Result<Range, String> {
        let t = text.trim();
        let num = |s: &str| -> Result<f64, String> {
            let x: f64 = s
                .trim()
                .parse()
                .map_err(|_| format!("'{}' is not a number", s.trim()))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(format!("{x} is outside [0, 1]"));
            }
            Ok(x)
        };
        let r = match (t.chars().next(), t.chars().last()) {
            (Some(open @ ('(' | '[')), Some(close @ (')' | ']'))) if t.len() >= 2 => {
                let inner = &t[1..t.len() - 1];
                let (a, b) = inner
                    .split_once(',')
                    .ok_or_else(|| format!("'{t}' needs two ends: (lo, hi)"))?;
                Range {
                    lo: num(a)?,
                    lo_closed: open == '[',
                    hi: num(b)?,
                    hi_closed: close == ']',
                }
            }
            _ => {
                let x = num(t)?;
                Range {
                    lo: x,
                    lo_closed: true,
                    hi: x,
                    hi_closed: true,
                }
            }
        };
        let empty = r.lo > r.hi || (r.lo == r.hi && !(r.lo_closed && r.hi_closed));
        if empty {
            return Err(format!("'{t}' holds no pass rate"));
        }
        Ok(r)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            return write!(f, "{}", self.lo);
        }
        let open = if self.lo_closed { '[' } else { '(' };
        let close = if self.hi_closed { ']' } else { ')' };
        write!(f, "{open}{}, {}{close}", self.lo, self.hi)
    }
}

impl BucketRule {
    /// Whether a prior pass rate falls in this bucket.
    pub fn holds_rate(&self, p: f64) -> bool {
        match self {
            BucketRule::PassRate { lo, hi } => p >= *lo && (p < *hi || (*hi >= 1.0 && p <= 1.0)),
            BucketRule::Labels(_) | BucketRule::Models(_) => false,
        }
    }

    /// Whether a difficulty label names this bucket.
    pub fn holds_label(&self, label: &str) -> bool {
        matches!(self, BucketRule::Labels(ls) if ls.iter().any(|l| l == label))
    }
}

/// Retirement of prompts from sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retire {
    /// Retire a prompt once its last k attempts were all correct (`None`: never).
    pub mastered_after: Option<u32>,
    /// Retire a prompt once its last k attempts were all wrong (`None`: never).
    pub hopeless_after: Option<u32>,
}

/// One stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique name; mid-run changes find the running stage by it.
    pub name: String,
    /// RL, or a supervised warm-up on reference solutions.
    pub kind: StageKind,
    /// Domains and their sampling weights (> 0).
    pub domains: Vec<(Domain, f64)>,
    /// Buckets (by name) and their sampling weights (> 0).
    pub buckets: Vec<(String, f64)>,
    /// Rollout settings.
    pub generation: Generation,
    /// Optimiser and loss settings.
    pub learner: Learner,
    /// DAPO-style dynamic sampling (`None`: off).
    pub dynamic_sampling: Option<DynamicSampling>,
    /// Fraction of draws taken from earlier stages' buckets, in `[0, 1)`.
    pub replay_fraction: f64,
    /// When the stage ends.
    pub advance: Advance,
    /// Prompts per learner step in this stage (`None`: the run's `batch_prompts`).
    pub batch_prompts: Option<usize>,
}

/// What a stage trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageKind {
    /// GRPO on graded groups.
    Rl,
    /// Supervised fine-tuning on problems' reference solutions.
    Sft,
}

/// Rollout settings of a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Response length limit, in tokens; a response that reaches it is truncated.
    pub max_response_tokens: u32,
    /// Sampling temperature (> 0).
    pub temperature: f64,
    /// Nucleus sampling mass, in `(0, 1]`.
    pub top_p: f64,
    /// Responses sampled per prompt (GRPO's group), ≥ 2.
    pub group_size: u32,
}

/// Learner settings of a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Learner {
    /// Learning rate (> 0).
    pub lr: f64,
    /// KL penalty coefficient against the reference policy (≥ 0; 0 turns it off).
    pub kl_coef: f64,
    /// Entropy bonus coefficient (≥ 0).
    pub entropy_coef: f64,
    /// Leave truncated responses out of the loss (DAPO's overlong filtering).
    pub mask_truncated: bool,
}

/// DAPO dynamic sampling: drop groups whose rewards are all equal and draw more prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicSampling {
    /// Consecutive refills that keep no group before the run stops with an error.
    pub max_refills: u32,
    /// Prompts drawn per missing group when refilling (≥ 1).
    pub oversample: f64,
}

/// Advancement: rules and how they combine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advance {
    /// All rules must hold, or any one.
    pub combine: Combine,
    /// The rules; empty only on the last stage (which then runs until stopped).
    pub rules: Vec<Rule>,
}

/// How advancement rules combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    /// Every rule holds.
    All,
    /// At least one rule holds.
    Any,
}

/// An advancement rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    /// Pass rate of `bucket` (all the stage's buckets when `None`) over its last `window`
    /// graded responses ≥ `target`, once at least `min_samples` were seen.
    PassRate {
        /// Bucket name, or the whole stage.
        bucket: Option<String>,
        /// Target pass rate in `[0, 1]`.
        target: f64,
        /// Responses in the rolling window.
        window: u32,
        /// Responses needed before the rule may hold (1 ≤ min_samples ≤ window).
        min_samples: u32,
    },
    /// Fraction of the stage's last `window` responses that were truncated ≥ `at_least`.
    TruncationRate {
        /// Threshold in `[0, 1]`.
        at_least: f64,
        /// Responses in the rolling window.
        window: u32,
        /// Responses needed before the rule may hold.
        min_samples: u32,
    },
    /// The rolling pass rate (as in `PassRate`) gained less than `delta` over the last
    /// `steps` learner steps, compared with its best before them.
    Plateau {
        /// Bucket name, or the whole stage.
        bucket: Option<String>,
        /// Smallest gain that counts as progress.
        delta: f64,
        /// Steps without such a gain.
        steps: u32,
        /// Responses in the rolling window.
        window: u32,
        /// Responses needed for a step's value to count.
        min_samples: u32,
    },
    /// The stage has run `steps` learner steps.
    MaxSteps {
        /// Steps.
        steps: u64,
    },
}

impl Rule {
    /// The rule's `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::PassRate { .. } => "pass_rate",
            Rule::TruncationRate { .. } => "truncation_rate",
            Rule::Plateau { .. } => "plateau",
            Rule::MaxSteps { .. } => "max_steps",
        }
    }

    /// The part of a rule that defines what its window collects: rules with the same key
    /// keep their evidence across a config change.
    pub fn window_key(&self) -> String {
        match self {
            Rule::PassRate { bucket, window, .. } => format!("pass_rate/{bucket:?}/{window}"),
            Rule::TruncationRate { window, .. } => format!("truncation_rate/{window}"),
            Rule::Plateau {
                bucket,
                window,
                steps,
                min_samples,
                ..
            } => {
                format!("plateau/{bucket:?}/{window}/{steps}/{min_samples}")
            }
            Rule::MaxSteps { .. } => "max_steps".into(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = |b: &Option<String>| b.clone().unwrap_or_else(|| "stage".into());
        match self {
            Rule::PassRate {
                bucket,
                target,
                window,
                min_samples,
            } => write!(
                f,
                "pass_rate({}) >= {target} over last {window} (min {min_samples})",
                b(bucket)
            ),
            Rule::TruncationRate {
                at_least,
                window,
                min_samples,
            } => {
                write!(
                    f,
                    "truncation_rate >= {at_least} over last {window} (min {min_samples})"
                )
            }
            Rule::Plateau {
                bucket,
                delta,
                steps,
                ..
            } => {
                write!(
                    f,
                    "plateau({}): gain < {delta} over {steps} steps",
                    b(bucket)
                )
            }
            Rule::MaxSteps { steps } => write!(f, "max_steps {steps}"),
        }
    }
}

/// One problem found in a config.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// `file:line` (or `line N`) when known.
    pub location: Option<String>,
    /// Field path relative to `[curriculum]`, e.g. `stages[1].advance.rules[0].target`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// One or more problems, all reported.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The issues (empty for I/O errors).
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Invalid(v) => v,
            ConfigError::Io { .. } => &[],
        }
    }
}

impl CurriculumConfig {
    /// Reads and validates the curriculum of the TOML file at `path`.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&src, Some(path))
    }

    /// Parses and validates a TOML document: a run config with a `[curriculum]` table (other
    /// tables are left to their owners), or a file that is the curriculum table itself.
    /// `origin` names the file in error locations.
    pub fn from_toml_str(src: &str, origin: Option<&Path>) -> Result<Self, ConfigError> {
        let nested = src
            .parse::<toml::Table>()
            .map(|t| t.contains_key("curriculum"))
            .unwrap_or(true);
        Self::from_toml_in(src, origin, nested)
    }

    /// The `[curriculum]` table of a run config: the document is never read as a
    /// curriculum of its own (a run config without the table is told so, not
    /// reported against the curriculum's fields).
    pub fn from_run_toml_str(src: &str, origin: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_toml_in(src, origin, true)
    }

    fn from_toml_in(src: &str, origin: Option<&Path>, nested: bool) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Doc {
            curriculum: RawCurriculum,
        }
        let root: &[&str] = if nested { &["curriculum"] } else { &[] };
        let locator = Locator::new(src, origin, root);
        let parsed = if nested {
            toml::from_str::<Doc>(src).map(|d| d.curriculum)
        } else {
            toml::from_str::<RawCurriculum>(src)
        };
        match parsed {
            Ok(raw) => validate(&raw, &locator),
            Err(e) => {
                let offset = e.span().map(|s| s.start);
                Err(ConfigError::Invalid(vec![Issue {
                    location: offset.map(|o| locator.at(o)),
                    field: offset.and_then(|o| locator.path_at(o)).unwrap_or_default(),
                    message: e.message().trim().to_string(),
                }]))
            }
        }
    }
}

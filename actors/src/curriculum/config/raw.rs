//! The raw `[curriculum]` table exactly as written: serde with `deny_unknown_fields`, every
//! optional field an `Option`, so typos fail loudly and defaults are applied in one place
//! ([`super::validate`]). Nothing at runtime sees these types.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[curriculum]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCurriculum {
    pub seed: Option<u64>,
    #[serde(default)]
    pub buckets: Vec<RawBucket>,
    pub unrated_bucket: Option<String>,
    pub retire: Option<RawRetire>,
    #[serde(default)]
    pub stages: Vec<RawStage>,
}

/// `[[curriculum.buckets]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub name: String,
    pub pass_rate: Option<Vec<f64>>,
    pub labels: Option<Vec<String>>,
    /// `[{ model = "(0, 1)", other = 0 }, ...]`: any row, all of its models.
    pub pass_rates: Option<Vec<BTreeMap<String, RawRange>>>,
    /// A fraction of the rest, one for every domain or per domain.
    pub sample_rest: Option<RawFraction>,
}

/// A pass-rate range: a number (one value) or interval text.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRange {
    Number(f64),
    Text(String),
}

/// `0.5` or `{ math = 0.5, code = 0.25 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawFraction {
    All(f64),
    PerDomain(BTreeMap<String, f64>),
}

/// `[curriculum.retire]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetire {
    pub mastered_after: Option<u32>,
    pub hopeless_after: Option<u32>,
}

/// `[[curriculum.stages]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub name: String,
    pub kind: Option<RawStageKind>,
    #[serde(default)]
    pub domains: BTreeMap<String, f64>,
    #[serde(default)]
    pub buckets: BTreeMap<String, f64>,
    pub generation: Option<RawGeneration>,
    pub learner: Option<RawLearner>,
    pub dynamic_sampling: Option<RawDynamicSampling>,
    pub replay: Option<RawReplay>,
    pub advance: Option<RawAdvance>,
    pub batch_prompts: Option<usize>,
}

/// `kind = "rl" | "sft"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawStageKind {
    Rl,
    Sft,
}

/// `[curriculum.stages.generation]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeneration {
    pub max_response_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub group_size: Option<u32>,
}

/// `[curriculum.stages.learner]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearner {
    pub lr: Option<f64>,
    pub kl_coef: Option<f64>,
    pub entropy_coef: Option<f64>,
    pub mask_truncated: Option<bool>,
}

/// `[curriculum.stages.dynamic_sampling]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDynamicSampling {
    pub enabled: Option<bool>,
    pub max_refills: Option<u32>,
    pub oversample: Option<f64>,
}

/// `[curriculum.stages.replay]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    pub fraction: f64,
}

/// `[curriculum.stages.advance]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvance {
    pub combine: Option<RawCombine>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `combine = "all" | "any"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawCombine {
    All,
    Any,
}

/// `[[curriculum.stages.advance.rules]]`, tagged by `kind`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawRule {
    PassRate {
        bucket: Option<String>,
        target: f64,
        window: u32,
        min_samples: Option<u32>,
    },
    TruncationRate {
        at_least: f64,
        window: u32,
        min_samples: Option<u32>,
    },
    Plateau {
        bucket: Option<String>,
        delta: f64,
        steps: u32,
        window: u32,
        min_samples: Option<u32>,
    },
    MaxSteps {
        steps: u64,
    },
}

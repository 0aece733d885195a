//! The curriculum's whole mutable state, and its exact save/restore.
//!
//! [`State`] holds the stage, step counters, the stage's rule windows, every prompt's
//! statistics, the sampler's cursors and RNG, the dynamic-sampling round and the event
//! history. It is written with bincode (fixed, exact, compact); restoring it onto the same
//! dataset and a compatible config continues with exactly the draws and decisions the
//! original would have made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::change::{ChangeRefused, carry_rules};
use super::config::{Bucket, CurriculumConfig, Rule};
use super::engine::{BuildError, Curriculum, StageAdvanced, fingerprint};
use super::rules::RuleState;
use super::sampler::SamplerState;
use super::stats::PromptStats;
use crate::data::Problem;

/// Bumped when [`State`]'s layout changes; an old file is refused, not misread.
pub const STATE_FORMAT: u32 = 1;

/// Everything that changes during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_FORMAT`] of the writer.
    pub format: u32,
    /// Fingerprint of the dataset's ids and domains.
    pub dataset: u64,
    /// Settings fixed for a run, checked on restore and on config changes.
    pub fixed: Fixed,
    /// Index of the current stage.
    pub stage: usize,
    /// Its name (a config change or restore finds the stage by name).
    pub stage_name: String,
    /// Learner steps since the start of the run.
    pub step: u64,
    /// Learner steps in the current stage.
    pub stage_step: u64,
    /// The stage's rules the windows in `rules` belong to (a changed config keeps the
    /// windows of rules that collect the same evidence).
    pub rule_defs: Vec<Rule>,
    /// What each of the stage's rules has collected.
    pub rules: Vec<RuleState>,
    /// Per-prompt statistics, by id.
    pub prompts: BTreeMap<String, PromptStats>,
    /// Sampler cursors and RNG.
    pub sampler: SamplerState,
    /// Dynamic sampling in the current batch.
    pub round: Round,
    /// Stage advances so far.
    pub events: Vec<StageAdvanced>,
    /// The last stage's rules have held.
    pub finished: bool,
}

/// Settings that may not change during a run: the sampler's orders follow from the seed,
/// and pools and statistics from the buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fixed {
    /// `curriculum.seed`.
    pub seed: u64,
    /// `curriculum.buckets`.
    pub buckets: Vec<Bucket>,
    /// `curriculum.unrated_bucket`.
    pub unrated_bucket: Option<String>,
}

impl Fixed {
    /// The fixed part of `config`.
    pub fn of(config: &CurriculumConfig) -> Self {
        Fixed {
            seed: config.seed,
            buckets: config.buckets.clone(),
            unrated_bucket: config.unrated_bucket.clone(),
        }
    }
}

/// Refuses a config whose fixed settings differ from the running ones.
pub(super) fn check_fixed(fixed: &Fixed, config: &CurriculumConfig) -> Result<(), ChangeRefused> {
    let new = Fixed::of(config);
    if new.seed != fixed.seed {
        return Err(ChangeRefused::Fixed {
            field: "seed".into(),
            running: fixed.seed.to_string(),
            new: new.seed.to_string(),
        });
    }
    if new.buckets != fixed.buckets {
        return Err(ChangeRefused::Fixed {
            field: "buckets".into(),
            running: format!("{:?}", fixed.buckets),
            new: format!("{:?}", new.buckets),
        });
    }
    if new.unrated_bucket != fixed.unrated_bucket {
        return Err(ChangeRefused::Fixed {
            field: "unrated_bucket".into(),
            running: format!("{:?}", fixed.unrated_bucket),
            new: format!("{:?}", new.unrated_bucket),
        });
    }
    Ok(())
}

/// Dynamic-sampling progress within one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// Groups kept since the last refill.
    pub kept_since_refill: u64,
    /// Refills in a row that kept nothing.
    pub fruitless: u32,
    /// Per bucket, groups dropped (all correct, all wrong) during the fruitless refills.
    pub dropped: BTreeMap<String, (u64, u64)>,
}

/// Why a saved state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not a state file, or a corrupt one.
    #[error("curriculum state is unreadable: {0}")]
    Decode(String),
    /// Written by an incompatible version.
    #[error("curriculum state has format {found}, this gradus reads format {STATE_FORMAT}")]
    Format {
        /// The file's format.
        found: u32,
    },
    /// The dataset differs from the one the state was saved with.
    #[error(
        "the dataset changed since the state was saved (fingerprint {saved:016x}, now {now:016x}); per-prompt statistics and sampler cursors would no longer match. Resume with the same data, or start a new run"
    )]
    DatasetChanged {
        /// Fingerprint in the state.
        saved: u64,
        /// Fingerprint of the data given.
        now: u64,
    },
    /// The config given cannot continue the saved state.
    #[error("the config cannot continue the saved state: {0}")]
    Config(#[from] ChangeRefused),
    /// The config and data cannot form a curriculum.
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl Curriculum {
    /// The state as bytes (bincode, standard config).
    pub fn save(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(&self.state, bincode::config::standard())
            .expect("the curriculum state serialises")
    }

    /// Continues from saved bytes with `config` and `problems`. The config may differ from the
    /// one in force when saving as far as a mid-run change may ([`Curriculum::request_change`]):
    /// the seed and buckets must match, the running stage must still exist (by name), and
    /// rule windows carry over to rules that collect the same evidence.
    pub fn restore(
        config: CurriculumConfig,
        problems: Vec<Problem>,
        bytes: &[u8],
    ) -> Result<Self, RestoreError> {
        let (mut state, _): (State, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| RestoreError::Decode(e.to_string()))?;
        if state.format != STATE_FORMAT {
            return Err(RestoreError::Format {
                found: state.format,
            });
        }
        let now = fingerprint(&problems);
        if state.dataset != now {
            return Err(RestoreError::DatasetChanged {
                saved: state.dataset,
                now,
            });
        }
        check_fixed(&state.fixed, &config)?;
        state.stage = config
            .stages
            .iter()
            .position(|s| s.name == state.stage_name)
            .ok_or_else(|| ChangeRefused::StageRemoved {
                name: state.stage_name.clone(),
            })?;
        let (mut c, _) = Curriculum::assemble(config, problems, state)?;
        let rules = c.config.stages[c.state.stage].advance.rules.clone();
        let (carried, _) = carry_rules(&rules, &c.state.rule_defs, &c.state.rules);
        c.state.rules = carried;
        c.state.rule_defs = rules;
        Ok(c)
    }
}

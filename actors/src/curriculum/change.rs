//! Config changes in the middle of a run: jump to a stage, change a target, add or remove
//! stages. A change is validated against the running state when requested, validated again
//! and applied at the next batch boundary ([`Curriculum::end_step`]), or refused with a
//! reason, leaving everything as it was.

use super::config::{CurriculumConfig, Rule};
use super::engine::Curriculum;
use super::rules::RuleState;
use super::state::check_fixed;

/// A requested change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    /// A new (validated) config to run under.
    pub config: Option<CurriculumConfig>,
    /// Stage to (re)start, by name, with fresh windows.
    pub jump_to: Option<String>,
}

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ChangeRefused {
    /// Neither a config nor a jump.
    #[error("the change has neither a new config nor jump_to")]
    Nothing,
    /// A setting fixed for the run differs.
    #[error("curriculum.{field} is fixed for a run (running: {running}; new: {new})")]
    Fixed {
        /// The field.
        field: String,
        /// Its running value.
        running: String,
        /// The value asked for.
        new: String,
    },
    /// The running stage is gone and no jump says where to go.
    #[error(
        "the running stage '{name}' is not in the new config; name the stage to continue in with jump_to"
    )]
    StageRemoved {
        /// The running stage.
        name: String,
    },
    /// `jump_to` names no stage.
    #[error("jump_to names no stage: '{name}' (stages: {known})")]
    UnknownStage {
        /// The name asked for.
        name: String,
        /// The stages there are.
        known: String,
    },
    /// A stage would have nothing to draw from the dataset.
    #[error("{0}")]
    EmptyStage(String),
}

/// What an applied change did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Stage before.
    pub from: String,
    /// Stage after.
    pub to: String,
    /// Whether the stage was (re)started by `jump_to`.
    pub jumped: bool,
    /// Rules whose windows carried over.
    pub rules_kept: usize,
    /// Rules that start with empty windows.
    pub rules_reset: usize,
}

struct Plan {
    config: CurriculumConfig,
    stage: usize,
    jumped: bool,
}

impl Curriculum {
    /// Validates `change` against the running state and queues it for the next batch
    /// boundary (replacing any change still pending). Refused changes leave nothing queued.
    pub fn request_change(&mut self, change: Change) -> Result<(), ChangeRefused> {
        self.plan(&change)?;
        self.pending = Some(change);
        Ok(())
    }

    /// The change waiting for the next batch boundary.
    pub fn pending_change(&self) -> Option<&Change> {
        self.pending.as_ref()
    }

    fn plan(&self, change: &Change) -> Result<Plan, ChangeRefused> {
        if change.config.is_none() && change.jump_to.is_none() {
            return Err(ChangeRefused::Nothing);
        }
        let config = change.config.clone().unwrap_or_else(|| self.config.clone());
        check_fixed(&self.state.fixed, &config)?;
        let find = |name: &str| config.stages.iter().position(|s| s.name == name);
        let stage = match &change.jump_to {
            Some(name) => find(name).ok_or_else(|| ChangeRefused::UnknownStage {
                name: name.clone(),
                known: config
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
            None => find(&self.state.stage_name).ok_or_else(|| ChangeRefused::StageRemoved {
                name: self.state.stage_name.clone(),
            })?,
        };
        let empty = self.empty_stages(&config);
        if !empty.is_empty() {
            return Err(ChangeRefused::EmptyStage(empty.join("; ")));
        }
        Ok(Plan {
            config,
            stage,
            jumped: change.jump_to.is_some(),
        })
    }

    /// Re-validates (the state may have moved since the request) and applies.
    pub(super) fn apply_change(&mut self, change: Change) -> Result<Applied, ChangeRefused> {
        let plan = self.plan(&change)?;
        let from = self.state.stage_name.clone();
        self.config = plan.config;
        let rules = self.config.stages[plan.stage].advance.rules.clone();
        let (kept, reset) = if plan.jumped {
            self.enter_stage(plan.stage);
            (0, rules.len())
        } else {
            let (carried, kept) = carry_rules(&rules, &self.state.rule_defs, &self.state.rules);
            self.state.stage = plan.stage;
            self.state.rules = carried;
            self.state.rule_defs = rules.clone();
            if plan.stage + 1 < self.config.stages.len() {
                self.state.finished = false;
            }
            (kept, rules.len() - kept)
        };
        self.refresh_retired();
        Ok(Applied {
            from,
            to: self.state.stage_name.clone(),
            jumped: plan.jumped,
            rules_kept: kept,
            rules_reset: reset,
        })
    }
}

/// States for `new` rules: the saved window of an old rule that collects the same evidence
/// (same [`Rule::window_key`]), else empty. Returns the states and how many carried over.
pub(super) fn carry_rules(
    new: &[Rule],
    old: &[Rule],
    states: &[RuleState],
) -> (Vec<RuleState>, usize) {
    let mut used = vec![false; old.len()];
    let mut kept = 0;
    let out = new
        .iter()
        .map(|r| {
            let key = r.window_key();
            let found = old
                .iter()
                .enumerate()
                .find(|(j, o)| !used[*j] && o.window_key() == key && *j < states.len());
            match found {
                Some((j, _)) => {
                    used[j] = true;
                    kept += 1;
                    states[j].clone()
                }
                None => RuleState::new(r),
            }
        })
        .collect();
    (out, kept)
}

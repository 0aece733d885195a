//! [`Curriculum`]: the whole curriculum decision logic as one plain value.
//!
//! The curriculum actor owns one and calls, per learner batch:
//! 1. [`Curriculum::next_batch`] for the prompts to roll out;
//! 2. [`Curriculum::record_group`] for each graded group (statistics, rule windows, and the
//!    dynamic-sampling verdict), then [`Curriculum::refill`] while groups are missing;
//! 3. [`Curriculum::end_step`] at the batch boundary: advancement is judged and a pending
//!    config change is applied there, never mid-batch.
//!
//! Everything that changes lives in [`State`], which [`Curriculum::save`] writes exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{Combine, CurriculumConfig, Stage, StageKind};
use super::rules::{Evidence, RuleState, evaluate};
use super::sampler::{Pools, SamplerState, pick_weighted};
use super::state::{Round, STATE_FORMAT, State};
use super::stats::PromptStats;
use crate::data::import::fields::fnv1a64;
use crate::data::{Domain, Problem};

/// One prompt to roll out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    /// Index into [`Curriculum::problems`].
    pub index: u32,
    /// The problem's id.
    pub id: String,
    /// Its domain.
    pub domain: Domain,
    /// Its bucket.
    pub bucket: String,
    /// Drawn to replay an earlier stage (its samples update statistics but not this stage's
    /// advancement windows).
    pub replay: bool,
}

/// One graded response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Graded {
    /// The grader's verdict.
    pub correct: bool,
    /// The response hit `max_response_tokens`.
    pub truncated: bool,
}

/// What dynamic sampling does with a graded group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupVerdict {
    /// Train on it.
    Keep,
    /// Every response was correct: no learning signal.
    DropAllCorrect,
    /// Every response was wrong: no learning signal.
    DropAllWrong,
}

/// A stage change by its rules, as logged: `{"event": "stage_advanced", "from", "to", "rule", "evidence"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageAdvanced {
    /// The stage left.
    pub from: String,
    /// The stage entered (`None`: the last stage completed).
    pub to: Option<String>,
    /// Global learner step at which it happened.
    pub step: u64,
    /// Steps spent in `from`.
    pub stage_steps: u64,
    /// The rules that held, combined as configured (`all(...)` or `any(...)`).
    pub rule: String,
    /// Every rule's numbers at that moment.
    pub evidence: Vec<Evidence>,
}

impl StageAdvanced {
    /// The event as the runtime logs it.
    pub fn to_event(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "stage_advanced",
            "from": self.from,
            "to": self.to,
            "step": self.step,
            "stage_steps": self.stage_steps,
            "rule": self.rule,
            "evidence": self.evidence,
        })
    }
}

/// Why no prompts could be drawn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// Every prompt of the stage's pools is retired (or, in an SFT stage, has no solution).
    #[error(
        "stage '{stage}': no prompt left to sample in its buckets (all retired or without a solution)"
    )]
    Exhausted {
        /// The stage.
        stage: String,
    },
    /// DAPO dynamic sampling gave up.
    #[error(
        "stage '{stage}': dynamic sampling kept no group in {refills} consecutive refills; bucket '{bucket}' gave {dropped} groups with all-equal rewards ({all_correct} all correct, {all_wrong} all wrong); the stage's data no longer separates good from bad responses: lower its weight, retire prompts, or advance"
    )]
    Fruitless {
        /// The stage.
        stage: String,
        /// The bucket that gave the most dropped groups in those refills.
        bucket: String,
        /// Refills that kept nothing.
        refills: u32,
        /// Groups of `bucket` dropped in them.
        dropped: u64,
        /// Of which every response was correct.
        all_correct: u64,
        /// Of which every response was wrong.
        all_wrong: u64,
    },
}

/// Why a dataset and config cannot start a curriculum.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Some stages would have nothing to sample.
    #[error("{}", .0.join("\n"))]
    EmptyStages(Vec<String>),
}

/// What the build found, for the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildReport {
    /// Problems per pool (`math/easy`).
    pub pools: BTreeMap<String, usize>,
    /// Problems that fall in no bucket (no matching label or interval, and no unrated bucket).
    pub unassigned: Vec<String>,
    /// Per `pass_rates` bucket, problems it cannot judge: a model it names has not rated them.
    pub unjudged: BTreeMap<String, Vec<String>>,
}

/// What a batch boundary did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutcome {
    /// Set when the stage's rules held.
    pub advanced: Option<StageAdvanced>,
    /// The pending config change, applied or refused.
    pub change: Option<Result<super::change::Applied, super::change::ChangeRefused>>,
}

/// The curriculum: config, problems, derived pools, and [`State`].
#[derive(Debug)]
pub struct Curriculum {
    pub(super) config: CurriculumConfig,
    pub(super) problems: Vec<Problem>,
    pub(super) pools: Pools,
    /// Derived from statistics and `config.retire`; rebuilt on restore.
    pub(super) retired: Vec<bool>,
    pub(super) state: State,
    pub(super) pending: Option<super::change::Change>,
}

/// `math/easy`.
pub(super) fn pool_name(domain: Domain, bucket: &str) -> String {
    format!("{domain}/{bucket}")
}

impl Curriculum {
    /// Starts a curriculum at the first stage.
    pub fn new(
        config: CurriculumConfig,
        problems: Vec<Problem>,
    ) -> Result<(Self, BuildReport), BuildError> {
        let state = State {
            format: STATE_FORMAT,
            dataset: fingerprint(&problems),
            fixed: super::state::Fixed::of(&config),
            stage: 0,
            stage_name: config.stages[0].name.clone(),
            step: 0,
            stage_step: 0,
            rule_defs: config.stages[0].advance.rules.clone(),
            rules: config.stages[0]
                .advance
                .rules
                .iter()
                .map(RuleState::new)
                .collect(),
            prompts: BTreeMap::new(),
            sampler: SamplerState::new(config.seed),
            round: Round::default(),
            events: Vec::new(),
            finished: false,
        };
        Self::assemble(config, problems, state)
    }

    /// Builds the derived parts around `state` and checks every stage has something to draw.
    pub(super) fn assemble(
        config: CurriculumConfig,
        problems: Vec<Problem>,
        state: State,
    ) -> Result<(Self, BuildReport), BuildError> {
        let mut report = BuildReport::default();
        let assignment = super::buckets::assign(&config, &problems);
        let bucket_of = &assignment.of;
        report.unjudged = assignment.unjudged;
        let mut order: Vec<u32> = (0..problems.len() as u32).collect();
        order.sort_by(|a, b| problems[*a as usize].id.cmp(&problems[*b as usize].id));
        let mut members: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (p, b) in problems.iter().zip(bucket_of) {
            if b.is_empty() {
                report.unassigned.push(p.id.clone());
            }
        }
        for i in order {
            for b in &bucket_of[i as usize] {
                members
                    .entry(pool_name(problems[i as usize].domain, b))
                    .or_default()
                    .push(i);
            }
        }
        report.pools = members.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        let c = Curriculum {
            pools: Pools::new(config.seed, members),
            retired: vec![false; problems.len()],
            config,
            problems,
            state,
            pending: None,
        };
        let empty = c.empty_stages(&c.config);
        if !empty.is_empty() {
            return Err(BuildError::EmptyStages(empty));
        }
        let mut c = c;
        c.refresh_retired();
        Ok((c, report))
    }

    /// Stages of `config` with nothing to draw from this dataset, as messages.
    pub(super) fn empty_stages(&self, config: &CurriculumConfig) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in config.stages.iter().enumerate() {
            let usable: usize = stage_pools(s)
                .iter()
                .map(|(pool, _)| {
                    let m = self.pools.members(pool);
                    match s.kind {
                        StageKind::Rl => m.len(),
                        StageKind::Sft => m
                            .iter()
                            .filter(|i| self.problems[**i as usize].solution.is_some())
                            .count(),
                    }
                })
                .sum();
            if usable == 0 {
                let pools: Vec<String> = stage_pools(s).into_iter().map(|(p, _)| p).collect();
                let what = if s.kind == StageKind::Sft {
                    "problems with a reference solution"
                } else {
                    "problems"
                };
                out.push(format!(
                    "stages[{i}] ('{}'): no {what} in its pools ({})",
                    s.name,
                    pools.join(", ")
                ));
            }
        }
        out
    }

    /// The config in force.
    pub fn config(&self) -> &CurriculumConfig {
        &self.config
    }

    /// The current stage.
    pub fn stage(&self) -> &Stage {
        &self.config.stages[self.state.stage]
    }

    /// The state (what [`Curriculum::save`] writes).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The problems, indexed by [`Draw::index`].
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Gives the problems back (to restore a saved state onto them without a copy).
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// A fixed evaluation sample of every pool (`domain/bucket`): up to
    /// `per_bucket` members, evenly spaced in id order, so every evaluation of
    /// a run (and of runs on the same data) sees the same problems.
    pub fn evaluation_set(&self, per_bucket: usize) -> Vec<(String, Vec<u32>)> {
        self.pools
            .iter()
            .map(|(pool, members)| {
                let n = members.len();
                let k = per_bucket.min(n);
                let picked = (0..k).map(|i| members[i * n / k]).collect();
                (pool.clone(), picked)
            })
            .filter(|(_, m): &(String, Vec<u32>)| !m.is_empty())
            .collect()
    }

    /// Statistics of a prompt, by id.
    pub fn prompt_stats(&self, id: &str) -> Option<&PromptStats> {
        self.state.prompts.get(id)
    }

    /// Whether the last stage's rules have held.
    pub fn is_finished(&self) -> bool {
        self.state.finished
    }

    /// Whether a problem is retired from (non-replay) sampling.
    pub fn is_retired(&self, index: u32) -> bool {
        self.retired[index as usize]
    }

    /// Draws the prompts of a new batch (starts a new dynamic-sampling round).
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Draw>, SampleError> {
        self.state.round = Round::default();
        self.draw(n)
    }

    /// Draws `missing × oversample` more prompts after dynamic sampling dropped groups, or
    /// stops with [`SampleError::Fruitless`] after `max_refills` refills in a row kept nothing.
    pub fn refill(&mut self, missing: usize) -> Result<Vec<Draw>, SampleError> {
        let stage = self.stage().clone();
        let round = &mut self.state.round;
        if round.kept_since_refill == 0 {
            round.fruitless += 1;
        } else {
            round.fruitless = 0;
            round.dropped.clear();
        }
        round.kept_since_refill = 0;
        if let Some(ds) = &stage.dynamic_sampling
            && round.fruitless >= ds.max_refills
        {
            let (bucket, &(all_correct, all_wrong)) = round
                .dropped
                .iter()
                .max_by_key(|(_, (c, w))| c + w)
                .map_or((String::new(), &(0, 0)), |(b, n)| (b.clone(), n));
            return Err(SampleError::Fruitless {
                stage: stage.name,
                bucket,
                refills: round.fruitless,
                dropped: all_correct + all_wrong,
                all_correct,
                all_wrong,
            });
        }
        let factor = stage
            .dynamic_sampling
            .as_ref()
            .map_or(1.0, |d| d.oversample);
        self.draw((missing as f64 * factor).ceil() as usize)
    }

    fn draw(&mut self, n: usize) -> Result<Vec<Draw>, SampleError> {
        let stage = self.stage().clone();
        let current = stage_pools(&stage);
        let replay = replay_pools(&self.config, self.state.stage);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let is_replay = !replay.is_empty()
                && self
                    .state
                    .sampler
                    .rng
                    .random_bool_f64(stage.replay_fraction);
            let drawn = if is_replay {
                self.draw_from(&replay, true, StageKind::Rl)
            } else {
                self.draw_from(&current, false, stage.kind)
            };
            match drawn {
                Some(d) => out.push(d),
                None => return Err(SampleError::Exhausted { stage: stage.name }),
            }
        }
        Ok(out)
    }

    fn draw_from(
        &mut self,
        pools: &[(String, f64)],
        replay: bool,
        kind: StageKind,
    ) -> Option<Draw> {
        let problems = &self.problems;
        let retired = &self.retired;
        // SFT stages teach from references: a prompt the model already answers
        // is still taught (retiring it there makes the model forget it), and a
        // prompt without a reference cannot be.
        let skip = |i: u32| {
            let p = &problems[i as usize];
            match kind {
                StageKind::Rl => !replay && retired[i as usize],
                StageKind::Sft => p.solution.is_none(),
            }
        };
        let mut weights: Vec<f64> = pools
            .iter()
            .map(|(pool, w)| {
                if self.pools.members(pool).iter().any(|i| !skip(*i)) {
                    *w
                } else {
                    0.0
                }
            })
            .collect();
        loop {
            let k = pick_weighted(&mut self.state.sampler.rng, &weights)?;
            let pool = &pools[k].0;
            let walk = if replay {
                format!("replay:{pool}")
            } else {
                pool.clone()
            };
            if let Some(i) = self.pools.next(&mut self.state.sampler, pool, &walk, &skip) {
                let p = &self.problems[i as usize];
                return Some(Draw {
                    index: i,
                    id: p.id.clone(),
                    domain: p.domain,
                    // The pool's bucket: a problem in overlapping buckets counts
                    // towards the one it was drawn for.
                    bucket: pool.split_once('/').map_or("", |(_, b)| b).to_string(),
                    replay,
                });
            }
            weights[k] = 0.0;
        }
    }

    /// Records a graded group: per-prompt statistics, the stage's rule windows (not for
    /// replay draws), retirement, and the dynamic-sampling verdict.
    pub fn record_group(&mut self, draw: &Draw, group: &[Graded]) -> GroupVerdict {
        let stats = self.state.prompts.entry(draw.id.clone()).or_default();
        for g in group {
            stats.record(g.correct);
        }
        let stage = &self.config.stages[self.state.stage];
        if !draw.replay {
            for (rule, st) in stage.advance.rules.iter().zip(&mut self.state.rules) {
                for g in group {
                    st.observe(rule, &draw.bucket, g.correct, g.truncated);
                }
            }
        }
        let dynamic = stage.dynamic_sampling.is_some();
        self.update_retired(draw.index);
        let all_correct = !group.is_empty() && group.iter().all(|g| g.correct);
        let all_wrong = !group.is_empty() && group.iter().all(|g| !g.correct);
        let verdict = match (dynamic, all_correct, all_wrong) {
            (true, true, _) => GroupVerdict::DropAllCorrect,
            (true, _, true) => GroupVerdict::DropAllWrong,
            _ => GroupVerdict::Keep,
        };
        let round = &mut self.state.round;
        match verdict {
            GroupVerdict::Keep => round.kept_since_refill += 1,
            GroupVerdict::DropAllCorrect => {
                round.dropped.entry(draw.bucket.clone()).or_default().0 += 1
            }
            GroupVerdict::DropAllWrong => {
                round.dropped.entry(draw.bucket.clone()).or_default().1 += 1
            }
        }
        verdict
    }

    fn update_retired(&mut self, index: u32) {
        let id = &self.problems[index as usize].id;
        let r = match self.state.prompts.get(id) {
            Some(s) => {
                self.config
                    .retire
                    .mastered_after
                    .is_some_and(|k| s.last_all(k, true))
                    || self
                        .config
                        .retire
                        .hopeless_after
                        .is_some_and(|k| s.last_all(k, false))
            }
            None => false,
        };
        self.retired[index as usize] = r;
    }

    pub(super) fn refresh_retired(&mut self) {
        for i in 0..self.problems.len() as u32 {
            self.update_retired(i);
        }
    }

    /// Closes a learner step at the batch boundary: judges the stage's rules (advancing when
    /// they hold), then applies a pending config change.
    pub fn end_step(&mut self) -> StepOutcome {
        let mut out = StepOutcome::default();
        self.state.step += 1;
        self.state.stage_step += 1;
        let stage = self.config.stages[self.state.stage].clone();
        for (rule, st) in stage.advance.rules.iter().zip(&mut self.state.rules) {
            st.end_step(rule);
        }
        if !self.state.finished && !stage.advance.rules.is_empty() {
            let evidence: Vec<Evidence> = stage
                .advance
                .rules
                .iter()
                .zip(&self.state.rules)
                .enumerate()
                .map(|(i, (r, s))| evaluate(i, r, s, self.state.stage_step))
                .collect();
            let fires = match stage.advance.combine {
                Combine::All => evidence.iter().all(|e| e.holds),
                Combine::Any => evidence.iter().any(|e| e.holds),
            };
            if fires {
                out.advanced = Some(self.advance(&stage, evidence));
            }
        }
        if let Some(change) = self.pending.take() {
            out.change = Some(self.apply_change(change));
        }
        out
    }

    fn advance(&mut self, stage: &Stage, evidence: Vec<Evidence>) -> StageAdvanced {
        let held: Vec<&str> = evidence
            .iter()
            .filter(|e| e.holds)
            .map(|e| e.rule.as_str())
            .collect();
        let combine = match stage.advance.combine {
            Combine::All => "all",
            Combine::Any => "any",
        };
        let next = self.state.stage + 1;
        let to = self.config.stages.get(next).map(|s| s.name.clone());
        let event = StageAdvanced {
            from: stage.name.clone(),
            to: to.clone(),
            step: self.state.step,
            stage_steps: self.state.stage_step,
            rule: format!("{combine}({})", held.join("; ")),
            evidence,
        };
        if to.is_some() {
            self.enter_stage(next);
        } else {
            self.state.finished = true;
        }
        self.state.events.push(event.clone());
        event
    }

    /// Enters stage `i` with fresh windows.
    pub(super) fn enter_stage(&mut self, i: usize) {
        let s = &self.config.stages[i];
        self.state.stage = i;
        self.state.stage_name = s.name.clone();
        self.state.stage_step = 0;
        self.state.rules = s.advance.rules.iter().map(RuleState::new).collect();
        self.state.rule_defs = s.advance.rules.clone();
        self.state.finished = false;
    }
}

/// The pools of a stage with their weights (domain weight × bucket weight).
pub(super) fn stage_pools(s: &Stage) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (d, wd) in &s.domains {
        for (b, wb) in &s.buckets {
            out.push((pool_name(*d, b), wd * wb));
        }
    }
    out
}

/// The pools of all stages before `stage`, weights summed where they repeat.
fn replay_pools(config: &CurriculumConfig, stage: usize) -> Vec<(String, f64)> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    for s in &config.stages[..stage] {
        if s.kind == StageKind::Rl {
            for (p, w) in stage_pools(s) {
                *sum.entry(p).or_default() += w;
            }
        }
    }
    sum.into_iter().collect()
}

/// Identifies a dataset by its ids and domains, so a resume on different data is caught
/// instead of silently skipping or repeating samples.
pub(super) fn fingerprint(problems: &[Problem]) -> u64 {
    let mut ids: Vec<(&str, Domain)> = problems.iter().map(|p| (p.id.as_str(), p.domain)).collect();
    ids.sort();
    let mut bytes = Vec::new();
    for (id, d) in ids {
        bytes.extend_from_slice(id.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(d.as_str().as_bytes());
        bytes.push(b'\n');
    }
    fnv1a64(&bytes)
}

/// `rng.random_bool(p)` for any `p` in `[0, 1]` without panicking on rounding.
trait RandomBool {
    fn random_bool_f64(&mut self, p: f64) -> bool;
}

impl RandomBool for rand_chacha::ChaCha8Rng {
    fn random_bool_f64(&mut self, p: f64) -> bool {
        use rand::Rng;
        p > 0.0 && self.random::<f64>() < p
    }
}

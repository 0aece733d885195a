//! The trainer: drives one step after another through the actors, and owns
//! the exactly-once ledger. It holds no other state of its own: the
//! curriculum actor owns the curriculum, the learner and generator engines
//! the model, and the checkpointer writes checkpoints.
//!
//! One step, as in the papers' on-policy setting:
//! 1. the curriculum actor draws prompts; each group is recorded as dispatched;
//! 2. the generator samples `group_size` responses per prompt;
//! 3. the reward assembler grades every response through the grader (math)
//!    and the executor (code), completes the groups and computes their
//!    advantages;
//! 4. the curriculum actor records the groups; dynamic sampling drops
//!    all-equal groups and refills;
//! 5. the learner updates (GRPO, or SFT in a warm-up stage) and the new weights
//!    are published to the generator (async mode: the update runs while the
//!    next batch rolls out, see [`Settings::max_staleness`]);
//! 6. the curriculum actor closes the step: it may advance the stage and
//!    applies a pending config change (the batch boundary);
//! 7. the daemon evaluates and checkpoints when due.
//!
//! Every actor call goes through [`crate::call::call_with_retry`]: when the
//! actor died (its reply port dropped), the call waits for the supervisor's
//! restart, looks the actor up again and redoes the work exactly once; the
//! ledger counts it. Work that changes state (a learner batch, a curriculum
//! operation) carries an id, so a redo of work applied before the crash is
//! answered from memory instead of applied twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gradus_policy::{
    Group, GrpoConfig, Response, SamplingConfig, SftExample, StepStats, Tokenizer,
};
use ractor::RpcReplyPort;
use serde_json::json;

pub use crate::call::QueueHook;
use crate::call::{CallError, call_with_retry};
use crate::curriculum::actor::{self, Answer, CurriculumView, Op, Shared};
use crate::curriculum::config::StageKind;
use crate::curriculum::engine::{Draw, Graded, GroupVerdict};
use crate::curriculum::stats::Window;
use crate::curriculum::{Change, ChangeRefused};
use crate::data::Domain;
use crate::ledger::{GroupId, Ledger};
use crate::rewards::{self, Assembled, Work};
use crate::rollout::{self, ResponseResult};
use crate::{generator, grader, learner};

/// Settings of the trainer that no stage overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prompts per learner step.
    pub batch_prompts: usize,
    /// The GRPO settings that stages do not override (clip range, aggregation).
    pub grpo: GrpoConfig,
    /// Longest wait for one actor call before it counts as failed.
    pub call_timeout: Duration,
    /// Responses kept per bucket for the displayed pass rates.
    pub display_window: u32,
    /// `None`: on-policy (generate, grade, update, publish, in turn). `Some(k)`:
    /// asynchronous: the next batch is generated while the learner updates on
    /// the last one, with weights at most `k` versions behind the learner;
    /// batches older than that are dropped and counted.
    pub max_staleness: Option<u64>,
}

/// What one step did, for the progress display, metrics and metrics.jsonl.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub step: u64,
    pub stage: String,
    pub stage_index: usize,
    pub stats: StepStats,
    /// Displayed pass rate and window fill per `domain/bucket`.
    pub pass_rates: BTreeMap<String, (f64, usize)>,
    /// Responses graded this step, by verdict.
    pub verdicts: BTreeMap<&'static str, u64>,
    pub tokens_generated: u64,
    /// Policy version that generated this step's responses (the behaviour policy).
    pub behaviour_version: Option<u64>,
    /// Groups learned in this step, by domain, with their staleness: policy
    /// versions between their behaviour policy and the learner's policy
    /// before the update (0 on-policy).
    pub learned_staleness: Vec<(Domain, u64)>,
    /// Groups dropped because they were more than `max_staleness` versions old.
    pub stale_dropped: usize,
    pub generate_seconds: f64,
    /// Per-response grading latency, by domain.
    pub grade_seconds: Vec<(Domain, f64)>,
    pub groups_kept: usize,
    pub groups_dropped: usize,
    /// Of those dropped: groups with a response the sandbox or the grader
    /// could not judge, not scored at all.
    pub groups_unscorable: usize,
    pub truncated: usize,
    pub responses: usize,
    pub redone: u64,
    pub wall_seconds: f64,
}

/// The periodic held-out evaluation (`[eval]` of the run config).
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Evaluate every this many steps (0: only at the start and the end).
    pub every: u64,
    /// Problems per bucket.
    pub per_bucket: usize,
    /// Responses per problem.
    pub samples: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Response length limit, the same for every bucket and stage.
    pub max_new_tokens: usize,
}

/// One bucket's evaluation result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalBucket {
    /// Fraction of responses graded correct.
    pub pass_rate: f64,
    /// Responses graded.
    pub n: usize,
    /// Fraction of responses cut at the length limit.
    pub truncation_rate: f64,
}

/// One evaluation of every bucket.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub step: u64,
    pub stage: String,
    /// Per `domain/bucket`.
    pub buckets: BTreeMap<String, EvalBucket>,
    pub seconds: f64,
}

/// Responses per generator call during an evaluation.
const EVAL_CHUNK: usize = 64;

impl StepReport {
    /// A report of step `step` with nothing done yet.
    pub fn empty(step: u64) -> Self {
        Self {
            step,
            stage: String::new(),
            stage_index: 0,
            stats: StepStats::empty(),
            pass_rates: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            tokens_generated: 0,
            behaviour_version: None,
            learned_staleness: Vec::new(),
            stale_dropped: 0,
            generate_seconds: 0.0,
            grade_seconds: Vec::new(),
            groups_kept: 0,
            groups_dropped: 0,
            groups_unscorable: 0,
            truncated: 0,
            responses: 0,
            redone: 0,
            wall_seconds: 0.0,
        }
    }
}

/// Where the trainer reports to (metrics, run dir, terminal).
pub trait Observer: Send {
    /// An event for events.jsonl (`stage_advanced`, `restart`, `reload`, `error`, ...).
    fn event(&mut self, name: &str, step: u64, fields: serde_json::Value);
    /// One finished step.
    fn step(&mut self, report: &StepReport);
    /// A sampled rollout for rollouts.jsonl.
    fn rollout(&mut self, line: serde_json::Value);
}

/// Why the run stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Actor(#[from] CallError),
    #[error("learner: {0}")]
    Learner(String),
    #[error("generator: {0}")]
    Generator(String),
    #[error(transparent)]
    Sample(#[from] crate::curriculum::engine::SampleError),
    #[error("curriculum: {0}")]
    Curriculum(String),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// The trainer's durable state besides the model: saved in checkpoints.
pub struct Trainer<T: Tokenizer> {
    /// The curriculum, changed only by the curriculum actor.
    curriculum: Arc<Shared>,
    /// Sequence number of the last curriculum operation.
    curriculum_seq: u64,
    pub ledger: Ledger,
    /// Next batch id (learner updates are deduplicated by it).
    pub next_batch: u64,
    /// Responses generated and graded so far, dropped groups included (what a
    /// sample budget counts).
    pub samples: u64,
    tokenizer: T,
    settings: Settings,
    display: BTreeMap<String, Window>,
    rollout_every: u64,
    queues: Option<QueueHook>,
    /// Async mode: the learner update running while the next batch rolls out.
    inflight: Option<InFlight>,
    /// Async mode: an update finished by [`Trainer::drain`] between steps,
    /// reported with the next step.
    carry: Option<StepReport>,
    /// Policy version of the learner after its last finished update.
    learner_version: u64,
    /// Policy version of the generator's weights.
    generator_version: u64,
}

/// A learner update running in the background (async mode).
struct InFlight {
    task: tokio::task::JoinHandle<(Result<StepStats, TrainError>, bool)>,
    /// The groups it learns, with their domains.
    groups: Vec<(GroupId, Domain)>,
    behaviour_version: u64,
    learner_version_before: u64,
}

/// One drawn prompt with its group id and (for RL) responses and results.
struct Slot {
    group: GroupId,
    draw: Draw,
    prompt: Vec<u32>,
    responses: Vec<Response>,
    results: Vec<ResponseResult>,
    /// Group-relative advantages, from reward assembly.
    advantages: Vec<f32>,
}

impl<T: Tokenizer> Trainer<T> {
    pub fn new(
        curriculum: Arc<Shared>,
        ledger: Ledger,
        next_batch: u64,
        tokenizer: T,
        settings: Settings,
    ) -> Self {
        Self {
            curriculum,
            curriculum_seq: 0,
            ledger,
            next_batch,
            samples: 0,
            tokenizer,
            settings,
            display: BTreeMap::new(),
            rollout_every: 10,
            queues: None,
            inflight: None,
            carry: None,
            learner_version: 0,
            generator_version: 0,
        }
    }

    /// A read-only view of the curriculum (do not hold it across an await).
    pub fn curriculum(&self) -> CurriculumView<'_> {
        self.curriculum.read()
    }

    /// Queues a config change for the next batch boundary, through the
    /// curriculum actor: the curriculum's verdict on the change, or why the
    /// actor could not be asked.
    pub async fn request_change(
        &mut self,
        change: Change,
    ) -> Result<Result<(), ChangeRefused>, TrainError> {
        match self.curriculum_op(Op::Change(change), &[]).await? {
            Answer::Changed(r) => Ok(r),
            other => Err(TrainError::Curriculum(format!(
                "unexpected answer to a change: {other:?}"
            ))),
        }
    }

    /// Applies `op` through the curriculum actor, exactly once (a call redone
    /// after a crash is answered from the actor's memory). `groups` are
    /// charged for a redo.
    async fn curriculum_op(&mut self, op: Op, groups: &[GroupId]) -> Result<Answer, TrainError> {
        self.curriculum_seq += 1;
        let seq = self.curriculum_seq;
        let items = match &op {
            Op::Next(n) | Op::Refill(n) => *n,
            Op::Record(g) => g.len(),
            Op::EndStep | Op::Change(_) => 1,
        };
        let answer = self
            .call::<actor::Msg, _>(actor::NAME, groups, items, |reply| actor::Msg::Apply {
                seq,
                op: op.clone(),
                reply,
            })
            .await?;
        match answer {
            Answer::OutOfOrder { seq, last } => Err(TrainError::Curriculum(format!(
                "operation {seq} arrived after operation {last}"
            ))),
            a => Ok(a),
        }
    }

    async fn draw(&mut self, op: Op) -> Result<Vec<Draw>, TrainError> {
        match self.curriculum_op(op, &[]).await? {
            Answer::Draws(d) => Ok(d?),
            other => Err(TrainError::Curriculum(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The policy version the learner and the generator start from.
    pub fn set_policy_version(&mut self, version: u64) {
        self.learner_version = version;
        self.generator_version = version;
    }

    /// Reports queue depths (items handed to an actor and not yet answered) to `hook`.
    pub fn set_queue_hook(&mut self, hook: QueueHook) {
        self.queues = Some(hook);
    }

    /// Runs one step; returns its report, or `None` once the curriculum is finished.
    pub async fn step(
        &mut self,
        observer: &mut dyn Observer,
    ) -> Result<Option<StepReport>, TrainError> {
        let (stage, step, stage_index) = {
            let c = self.curriculum.read();
            if c.is_finished() {
                return Ok(None);
            }
            (c.stage().clone(), c.state().step, c.state().stage)
        };
        let start = Instant::now();
        let sampling = SamplingConfig {
            temperature: stage.generation.temperature as f32,
            top_p: stage.generation.top_p as f32,
            max_new_tokens: stage.generation.max_response_tokens as usize,
            stop_tokens: self.tokenizer.stop_ids(),
        };
        let group_size = stage.generation.group_size as usize;
        let batch_prompts = stage.batch_prompts.unwrap_or(self.settings.batch_prompts);
        let mut report = StepReport::empty(step);
        report.stage = stage.name.clone();
        report.stage_index = stage_index;
        let redone_before = self.ledger.totals().redone;

        // Draw, roll out and grade until enough groups carry a learning signal.
        let mut kept: Vec<Slot> = Vec::new();
        // Groups no verdict could be had for: logged, never learned.
        let mut unjudged: Vec<Slot> = Vec::new();
        let mut draws = self.draw(Op::Next(batch_prompts)).await?;
        loop {
            let mut slots = self.dispatch(draws)?;
            self.generate(&mut slots, group_size, &sampling, &mut report)
                .await?;
            self.grade(&mut slots, &mut report).await?;
            let mut missing = 0;
            // A group with a response the sandbox or the grader could not
            // judge (it failed twice) is not scored: not against the policy
            // (it is not learned) and not in the pass rates. Its rollouts
            // are logged with their verdict.
            let unscorable: Vec<bool> = slots
                .iter()
                .map(|s| s.results.iter().any(|r| rollout::is_failure(r.verdict)))
                .collect();
            let mut record = Vec::with_capacity(slots.len());
            for (slot, _) in slots.iter().zip(&unscorable).filter(|(_, u)| !**u) {
                let graded: Vec<Graded> = slot
                    .results
                    .iter()
                    .map(|r| Graded {
                        correct: r.correct,
                        truncated: r.truncated,
                    })
                    .collect();
                self.note_display(&slot.draw, &graded);
                record.push((slot.draw.clone(), graded));
            }
            let ids: Vec<GroupId> = slots
                .iter()
                .zip(&unscorable)
                .filter(|(_, u)| !**u)
                .map(|(s, _)| s.group)
                .collect();
            let scored = ids.len();
            let mut verdicts = match self.curriculum_op(Op::Record(record), &ids).await? {
                Answer::Verdicts(v) if v.len() == scored => v.into_iter(),
                other => {
                    let why = format!("unexpected answer to a record: {other:?}");
                    return Err(TrainError::Curriculum(why));
                }
            };
            for (slot, unscorable) in slots.into_iter().zip(unscorable) {
                let verdict = if unscorable { None } else { verdicts.next() };
                // SFT stages learn from references; their samples only measure.
                let learn = match verdict {
                    None => false,
                    Some(v) => v == GroupVerdict::Keep || stage.kind == StageKind::Sft,
                };
                if learn {
                    kept.push(slot);
                } else {
                    self.ledger.dropped(slot.group)?;
                    report.groups_dropped += 1;
                    if verdict.is_none() {
                        report.groups_unscorable += 1;
                        unjudged.push(slot);
                    }
                    missing += 1;
                }
            }
            if missing == 0 || stage.dynamic_sampling.is_none() || kept.len() >= batch_prompts {
                break;
            }
            draws = self.draw(Op::Refill(missing)).await?;
        }
        report.groups_kept = kept.len();

        // Learn.
        let batch = self.next_batch;
        self.next_batch += 1;
        let update = match stage.kind {
            StageKind::Sft => learner::Update::Sft {
                examples: self.sft_examples(&kept)?,
            },
            StageKind::Rl => {
                let mut config = self.settings.grpo.clone();
                config.kl_coef = stage.learner.kl_coef as f32;
                config.entropy_coef = stage.learner.entropy_coef as f32;
                config.mask_truncated = stage.learner.mask_truncated;
                let groups = kept
                    .iter()
                    .map(|s| Group {
                        prompt: s.prompt.clone(),
                        responses: s.responses.clone(),
                        rewards: s.results.iter().map(|r| r.reward).collect(),
                        advantages: Some(s.advantages.clone()),
                        temperature: sampling.temperature,
                    })
                    .collect();
                learner::Update::Grpo { groups, config }
            }
        };
        let behaviour = report.behaviour_version.unwrap_or(self.generator_version);
        match self.settings.max_staleness {
            None if !kept.is_empty() => {
                let ids: Vec<GroupId> = kept.iter().map(|s| s.group).collect();
                let before = self.learner_version;
                let stats = self.learn(batch, update, stage.learner.lr, &ids).await?;
                for s in &kept {
                    self.ledger.learned(s.group, stats.step)?;
                    report
                        .learned_staleness
                        .push((s.draw.domain, before.saturating_sub(behaviour)));
                }
                self.learner_version = stats.policy_version;
                report.stats = stats;
                self.publish().await?;
            }
            None => {}
            Some(k) => {
                // The update started last step finishes now; this batch's
                // rollout ran while it did.
                if let Some(carry) = self.carry.take() {
                    report.stats = carry.stats;
                    report.learned_staleness = carry.learned_staleness;
                }
                if let Some(stats) = self.settle(&mut report).await? {
                    report.stats = stats;
                }
                if self.learner_version.saturating_sub(self.generator_version) >= k {
                    self.publish().await?;
                }
                let lag = self.learner_version.saturating_sub(behaviour);
                if lag > k {
                    for s in &kept {
                        self.ledger.dropped(s.group)?;
                    }
                    report.stale_dropped += kept.len();
                } else if !kept.is_empty() {
                    self.spawn_learn(batch, update, stage.learner.lr, &kept, behaviour);
                }
            }
        }
        self.log_rollouts(&kept, &unjudged, observer);

        // Close the step: the curriculum may advance.
        let outcome = match self.curriculum_op(Op::EndStep, &[]).await? {
            Answer::Ended(o) => o,
            other => {
                let why = format!("unexpected answer to a step end: {other:?}");
                return Err(TrainError::Curriculum(why));
            }
        };
        if let Some(adv) = outcome.advanced {
            let mut ev = adv.to_event();
            if let Some(obj) = ev.as_object_mut() {
                obj.remove("event");
                obj.remove("step");
            }
            observer.event("stage_advanced", adv.step, ev);
        }
        match outcome.change {
            Some(Ok(applied)) => observer.event(
                "config_applied",
                report.step,
                json!({"detail": format!("{applied:?}")}),
            ),
            Some(Err(refused)) => observer.event(
                "config_refused",
                report.step,
                json!({"reason": refused.to_string()}),
            ),
            None => {}
        }
        report.pass_rates = self.display_rates();
        report.redone = self.ledger.totals().redone - redone_before;
        report.wall_seconds = start.elapsed().as_secs_f64();
        self.samples += report.responses as u64;
        observer.step(&report);
        Ok(Some(report))
    }

    fn dispatch(&mut self, draws: Vec<Draw>) -> Result<Vec<Slot>, TrainError> {
        let curriculum = self.curriculum.read();
        draws
            .into_iter()
            .map(|draw| {
                let problem = &curriculum.problems()[draw.index as usize];
                let prompt = self
                    .tokenizer
                    .encode_prompt(&problem.prompt)
                    .map_err(|e| TrainError::Tokenizer(format!("problem {}: {e}", problem.id)))?;
                let group = self.ledger.dispatch(draw.id.clone());
                Ok(Slot {
                    group,
                    draw,
                    prompt,
                    responses: Vec::new(),
                    results: Vec::new(),
                    advantages: Vec::new(),
                })
            })
            .collect()
    }

    async fn generate(
        &mut self,
        slots: &mut [Slot],
        group_size: usize,
        sampling: &SamplingConfig,
        report: &mut StepReport,
    ) -> Result<(), TrainError> {
        let prompts: Vec<Vec<u32>> = slots
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.prompt.clone(), group_size))
            .collect();
        let t = Instant::now();
        let groups: Vec<GroupId> = slots.iter().map(|s| s.group).collect();
        let generated = self
            .call::<generator::Msg, _>(generator::NAME, &groups, prompts.len(), |reply| {
                generator::Msg::Generate {
                    prompts: prompts.clone(),
                    config: sampling.clone(),
                    reply,
                }
            })
            .await?
            .map_err(TrainError::Generator)?;
        report.generate_seconds += t.elapsed().as_secs_f64();
        report.behaviour_version = Some(generated.policy_version);
        let mut responses = generated.responses.into_iter();
        for slot in slots.iter_mut() {
            slot.responses = responses.by_ref().take(group_size).collect();
            report.tokens_generated += slot
                .responses
                .iter()
                .map(|r| r.tokens.len() as u64)
                .sum::<u64>();
            self.ledger.generated(slot.group)?;
        }
        Ok(())
    }

    async fn grade(
        &mut self,
        slots: &mut [Slot],
        report: &mut StepReport,
    ) -> Result<(), TrainError> {
        let groups = slots
            .iter()
            .map(|slot| {
                let responses = slot.responses.iter().enumerate();
                responses
                    .map(|(ri, resp)| {
                        let text = self.tokenizer.decode(&resp.tokens);
                        let job = format!("g{}-r{ri}", slot.group);
                        self.to_grade(slot.draw.index, text, resp.truncated, &job)
                    })
                    .collect()
            })
            .collect();
        let ids: Vec<GroupId> = slots.iter().map(|s| s.group).collect();
        let assembled = self.assemble(groups, &ids).await?;
        for (slot, group) in slots.iter_mut().zip(assembled) {
            for _ in 0..group.redone {
                self.ledger.redo(slot.group)?;
            }
            report.grade_seconds.extend(group.seconds);
            for r in &group.results {
                *report.verdicts.entry(r.verdict).or_default() += 1;
                report.truncated += usize::from(r.truncated);
                report.responses += 1;
            }
            slot.results = group.results;
            slot.advantages = group.advantages;
            self.ledger.graded(slot.group)?;
        }
        Ok(())
    }

    /// What grades a response to problem `problem`.
    fn to_grade(
        &self,
        problem: u32,
        text: String,
        truncated: bool,
        job: &str,
    ) -> rewards::Response {
        let curriculum = self.curriculum.read();
        let problem = &curriculum.problems()[problem as usize];
        let work = match problem.domain {
            Domain::Math => Work::Math(grader::Item {
                gold: problem.answer.clone().unwrap_or_default(),
                response: text,
            }),
            Domain::Code => Work::Code(Box::new(rollout::code_job(problem, &text, job))),
        };
        rewards::Response { work, truncated }
    }

    /// Grades and assembles groups through the reward assembler; `ids` (the
    /// ledger's groups, empty for an evaluation) are charged for redos.
    async fn assemble(
        &mut self,
        groups: Vec<Vec<rewards::Response>>,
        ids: &[GroupId],
    ) -> Result<Vec<Assembled>, TrainError> {
        let n = groups.iter().map(Vec::len).sum();
        self.call::<rewards::Msg, _>(rewards::NAME, ids, n, |reply| rewards::Msg::Assemble {
            groups: groups.clone(),
            reply,
        })
        .await?
        .map_err(TrainError::from)
    }

    /// Held-out measurement of every bucket: a fixed, evenly spaced sample of
    /// each bucket's problems (the same at every evaluation), `samples`
    /// responses each, graded like training responses. Nothing is learned and
    /// the curriculum's statistics and the ledger are untouched.
    pub async fn evaluate(&mut self, eval: &EvalSettings) -> Result<EvalReport, TrainError> {
        let start = Instant::now();
        let sampling = SamplingConfig {
            temperature: eval.temperature,
            top_p: 1.0,
            max_new_tokens: eval.max_new_tokens,
            stop_tokens: self.tokenizer.stop_ids(),
        };
        let mut prompts = Vec::new();
        let mut owners = Vec::new();
        let (step, stage) = {
            let curriculum = self.curriculum.read();
            for (pool, members) in &curriculum.evaluation_set(eval.per_bucket) {
                for &index in members {
                    let problem = &curriculum.problems()[index as usize];
                    let prompt = self.tokenizer.encode_prompt(&problem.prompt).map_err(|e| {
                        TrainError::Tokenizer(format!("problem {}: {e}", problem.id))
                    })?;
                    for _ in 0..eval.samples {
                        prompts.push(prompt.clone());
                        owners.push((pool.clone(), index));
                    }
                }
            }
            (curriculum.state().step, curriculum.stage().name.clone())
        };
        let mut items: Vec<rewards::Response> = Vec::with_capacity(prompts.len());
        for (c, chunk) in prompts.chunks(EVAL_CHUNK).enumerate() {
            let chunk = chunk.to_vec();
            let generated = self
                .call::<generator::Msg, _>(generator::NAME, &[], chunk.len(), |reply| {
                    generator::Msg::Generate {
                        prompts: chunk.clone(),
                        config: sampling.clone(),
                        reply,
                    }
                })
                .await?
                .map_err(TrainError::Generator)?;
            for (k, resp) in generated.responses.iter().enumerate() {
                let i = c * EVAL_CHUNK + k;
                let text = self.tokenizer.decode(&resp.tokens);
                items.push(self.to_grade(owners[i].1, text, resp.truncated, &format!("eval-{i}")));
            }
        }
        // One group per problem: its `samples` responses.
        let mut groups = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            groups.push(items.by_ref().take(eval.samples.max(1)).collect());
        }
        let results = self
            .assemble(groups, &[])
            .await?
            .into_iter()
            .flat_map(|g| g.results);
        // Per pool: (correct, truncated, graded).
        let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for ((pool, _), r) in owners.iter().zip(results) {
            let c = counts.entry(pool.clone()).or_default();
            c.0 += usize::from(r.correct);
            c.1 += usize::from(r.truncated);
            c.2 += 1;
        }
        Ok(EvalReport {
            step,
            stage,
            buckets: counts
                .into_iter()
                .map(|(k, (correct, truncated, n))| {
                    let bucket = EvalBucket {
                        pass_rate: correct as f64 / n as f64,
                        n,
                        truncation_rate: truncated as f64 / n as f64,
                    };
                    (k, bucket)
                })
                .collect(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    async fn learn(
        &mut self,
        batch: u64,
        update: learner::Update,
        lr: f64,
        groups: &[GroupId],
    ) -> Result<StepStats, TrainError> {
        self.call::<learner::Msg, _>(learner::NAME, groups, groups.len(), |reply| {
            learner::Msg::Step {
                batch,
                lr,
                update: update.clone(),
                reply,
            }
        })
        .await?
        .map_err(TrainError::Learner)
    }

    /// Async mode: waits for the update in flight, if any, and books it
    /// (ledger, staleness). Returns its statistics.
    async fn settle(&mut self, report: &mut StepReport) -> Result<Option<StepStats>, TrainError> {
        let Some(inflight) = self.inflight.take() else {
            return Ok(None);
        };
        let (stats, redone) = inflight.task.await.map_err(|e| CallError {
            actor: learner::NAME,
            why: format!("the update task failed: {e}"),
        })?;
        if redone {
            for (g, _) in &inflight.groups {
                self.ledger.redo(*g)?;
            }
        }
        let stats = stats?;
        let lag = inflight
            .learner_version_before
            .saturating_sub(inflight.behaviour_version);
        for (g, domain) in &inflight.groups {
            self.ledger.learned(*g, stats.step)?;
            report.learned_staleness.push((*domain, lag));
        }
        self.learner_version = stats.policy_version;
        Ok(Some(stats))
    }

    /// Finishes the update in flight (async mode) and publishes the newest
    /// weights, so that a checkpoint or an evaluation sees the current policy.
    /// Its figures go into the next step's report. A no-op on-policy.
    pub async fn drain(&mut self) -> Result<(), TrainError> {
        if self.inflight.is_none() {
            return Ok(());
        }
        let mut carry = StepReport::empty(self.curriculum.read().state().step);
        if let Some(stats) = self.settle(&mut carry).await? {
            carry.stats = stats;
            self.carry = Some(carry);
        }
        self.publish().await
    }

    /// Async mode: starts the update on its own task; [`Trainer::settle`] books it.
    fn spawn_learn(
        &mut self,
        batch: u64,
        update: learner::Update,
        lr: f64,
        kept: &[Slot],
        behaviour: u64,
    ) {
        let timeout = self.settings.call_timeout;
        let queues = self.queues.clone();
        let n = kept.len();
        let task = tokio::spawn(async move {
            let (answer, redone) =
                call_with_retry(learner::NAME, timeout, queues.as_ref(), n, |reply| {
                    learner::Msg::Step {
                        batch,
                        lr,
                        update: update.clone(),
                        reply,
                    }
                })
                .await;
            let answer = answer.map_err(TrainError::from);
            (answer.and_then(|r| r.map_err(TrainError::Learner)), redone)
        });
        self.inflight = Some(InFlight {
            task,
            groups: kept.iter().map(|s| (s.group, s.draw.domain)).collect(),
            behaviour_version: behaviour,
            learner_version_before: self.learner_version,
        });
    }

    async fn publish(&mut self) -> Result<(), TrainError> {
        let snapshot = self
            .call::<learner::Msg, _>(learner::NAME, &[], 1, |reply| learner::Msg::Snapshot {
                reply,
            })
            .await?
            .map_err(TrainError::Learner)?;
        self.generator_version = self
            .call::<generator::Msg, _>(generator::NAME, &[], 1, |reply| generator::Msg::Load {
                snapshot: snapshot.clone(),
                reply,
            })
            .await?
            .map_err(TrainError::Generator)?;
        Ok(())
    }

    /// Calls actor `name`; if it died mid-call, waits for its restart and
    /// redoes the call once, counting the redo against `groups` in the ledger.
    async fn call<M, R>(
        &mut self,
        name: &'static str,
        groups: &[GroupId],
        items: usize,
        msg: impl Fn(RpcReplyPort<R>) -> M,
    ) -> Result<R, TrainError>
    where
        M: ractor::Message,
        R: Send + 'static,
    {
        let timeout = self.settings.call_timeout;
        let (answer, redone) =
            call_with_retry(name, timeout, self.queues.as_ref(), items, msg).await;
        if redone {
            for g in groups {
                self.ledger.redo(*g)?;
            }
        }
        Ok(answer?)
    }

    fn sft_examples(&self, kept: &[Slot]) -> Result<Vec<SftExample>, TrainError> {
        let curriculum = self.curriculum.read();
        kept.iter()
            .filter_map(|s| {
                let p = &curriculum.problems()[s.draw.index as usize];
                p.solution.as_ref().map(|sol| (s, sol))
            })
            .map(|(s, sol)| {
                let mut completion = self
                    .tokenizer
                    .encode(sol)
                    .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
                completion.push(self.tokenizer.eos_id());
                Ok(SftExample {
                    prompt: s.prompt.clone(),
                    completion,
                })
            })
            .collect()
    }

    /// The windows behind the displayed pass rates, for a checkpoint.
    pub fn display_windows(&self) -> &BTreeMap<String, Window> {
        &self.display
    }

    /// Puts back the windows of a checkpoint, so a resumed run displays (and
    /// logs) the pass rates an uninterrupted one does.
    pub fn restore_display(&mut self, display: BTreeMap<String, Window>) {
        self.display = display;
    }

    fn note_display(&mut self, draw: &Draw, graded: &[Graded]) {
        let key = format!("{}/{}", draw.domain.as_str(), draw.bucket);
        let cap = self.settings.display_window;
        let w = self.display.entry(key).or_insert_with(|| Window::new(cap));
        for g in graded {
            w.push(g.correct);
        }
    }

    fn display_rates(&self) -> BTreeMap<String, (f64, usize)> {
        self.display
            .iter()
            .filter_map(|(k, w)| w.rate().map(|r| (k.clone(), (r, w.len() as usize))))
            .collect()
    }

    /// A sample of the kept groups (the first two responses of the first two
    /// groups, every `rollout_every` steps), and every unjudged group's.
    fn log_rollouts(&self, kept: &[Slot], unjudged: &[Slot], observer: &mut dyn Observer) {
        let curriculum = self.curriculum.read();
        let step = curriculum.state().step;
        let sample = if step.is_multiple_of(self.rollout_every) {
            kept.len().min(2)
        } else {
            0
        };
        for s in kept[..sample].iter().chain(unjudged) {
            let p = &curriculum.problems()[s.draw.index as usize];
            for (resp, r) in s.responses.iter().zip(&s.results).take(2) {
                observer.rollout(json!({
                    "step": step,
                    "group": s.group,
                    "prompt_id": p.id,
                    "bucket": s.draw.bucket,
                    "prompt": p.prompt,
                    "response": self.tokenizer.decode(&resp.tokens),
                    "reward": r.reward,
                    "verdict": r.verdict,
                    "truncated": r.truncated,
                }));
            }
        }
    }
}

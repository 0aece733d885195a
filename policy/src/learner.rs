//! The learner: owns the trainable model (on an autodiff device), the
//! optimizer, the frozen reference for the KL penalty, the step and policy
//! version counters and an RNG. It turns plain data (groups of prompt,
//! responses, rewards; or SFT pairs) into one optimizer update each and
//! reports what the update did.
//!
//! It is meant to live on a dedicated compute thread
//! ([`crate::device::ComputeThread`]); everything it takes and returns is plain
//! `Send` data, and [`Learner::snapshot`] publishes weights to generators.

use std::time::Instant;

use burn::Tensor;
use burn::module::Module;
use burn::tensor::{Device, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, OptimizerConfig};
use crate::error::{Error, Result};
use crate::loss::{
    Aggregation, GrpoConfig, GrpoTerms, aggregation_weights, group_advantages, grpo_loss, sft_loss,
};
use crate::model::{TokenBatch, Transformer};
use crate::optim::{AdamW, weights};
use crate::policy::WeightsSnapshot;
use crate::sample::{Response, SamplingConfig, sample};

/// One prompt, the responses sampled for it, and their rewards: the unit of
/// GRPO's group normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Prompt ids (BOS included).
    pub prompt: Vec<u32>,
    /// Sampled responses with behaviour log-probs and truncation flags.
    pub responses: Vec<Response>,
    /// One reward per response.
    pub rewards: Vec<f32>,
    /// One advantage per response, as reward assembly computed them once the
    /// group was complete; `None`: group-normalised here from `rewards`
    /// ([`group_advantages`] with the step's `normalize_std`).
    #[serde(default)]
    pub advantages: Option<Vec<f32>>,
    /// Temperature the responses were sampled at (the learner scores at the
    /// same temperature so the importance ratio starts at 1).
    pub temperature: f32,
}

/// A supervised pair: the completion (EOS included) is the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftExample {
    /// Prompt ids (BOS included).
    pub prompt: Vec<u32>,
    /// Target ids.
    pub completion: Vec<u32>,
}

/// Which objective a step optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// GRPO policy-gradient step.
    Grpo,
    /// Supervised cross-entropy step.
    Sft,
}

/// What one update did. GRPO-only fields are `None` for SFT steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Objective.
    pub kind: StepKind,
    /// Optimizer steps completed, this one included.
    pub step: u64,
    /// Policy version after the update.
    pub policy_version: u64,
    /// Loss value.
    pub loss: f32,
    /// Mean reward over the batch's responses.
    pub mean_reward: Option<f32>,
    /// Mean advantage over the trained response tokens.
    pub mean_advantage: Option<f32>,
    /// Fraction of trained tokens whose ratio was clipped.
    pub clip_fraction: Option<f32>,
    /// Mean `old_logp − logp` over trained tokens: how far the policy has
    /// moved from the behaviour policy (≈ KL(behaviour ‖ current)).
    pub approx_kl: Option<f32>,
    /// Mean k3 KL to the reference policy, when the penalty is on.
    pub ref_kl: Option<f32>,
    /// Mean token entropy over trained tokens (nats).
    pub entropy: f32,
    /// Share of target tokens that are the argmax (SFT only).
    pub token_accuracy: Option<f32>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Responses dropped from the loss because they were truncated.
    pub masked_truncated: usize,
    /// Tokens processed (prompt + response, padding excluded).
    pub tokens: usize,
    /// Wall time of forward, backward and update.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_s: f64,
}

/// The trainable policy and its optimizer state.
pub struct Learner {
    pub(crate) model_cfg: ModelConfig,
    /// `None` only transiently inside an update.
    pub(crate) model: Option<Transformer>,
    pub(crate) optim: AdamW,
    /// Frozen reference for the KL penalty; set at the first step that needs it.
    pub(crate) reference: Option<Transformer>,
    pub(crate) step: u64,
    pub(crate) version: u64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) pad: u32,
    pub(crate) device: Device,
}

/// Host-side layout of a training batch.
struct Prepared {
    input: TokenBatch,
    /// `[batch × (len)]` next-token targets of each input slot.
    targets: Vec<u32>,
    /// Slots whose target is trained.
    mask: Vec<bool>,
}

impl Learner {
    /// A fresh learner: model initialised from `model_cfg.init_seed`, RNG from
    /// `seed`, on `device` (autodiff is enabled on it here). `pad` is the
    /// tokenizer's padding id.
    pub fn new(
        model_cfg: ModelConfig,
        optim_cfg: OptimizerConfig,
        device: &Device,
        seed: u64,
        pad: u32,
    ) -> Result<Self> {
        let device = device.clone().autodiff();
        let model = Transformer::init(&model_cfg, &device)?;
        Self::fresh(model_cfg, model, optim_cfg, device, seed, pad)
    }

    /// A learner at step 0 around `model` (already on the autodiff `device`).
    pub(crate) fn fresh(
        model_cfg: ModelConfig,
        model: Transformer,
        optim_cfg: OptimizerConfig,
        device: Device,
        seed: u64,
        pad: u32,
    ) -> Result<Self> {
        Ok(Self {
            model_cfg,
            model: Some(model),
            optim: AdamW::new(optim_cfg)?,
            reference: None,
            step: 0,
            version: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            pad,
            device,
        })
    }

    /// A fresh learner (step 0) whose weights are a Hugging Face
    /// checkpoint's, loaded onto `device` (autodiff is enabled on it here).
    /// `max_len` caps the positions below the checkpoint's own limit.
    pub fn from_pretrained(
        checkpoint: &crate::hf::load::Checkpoint,
        max_len: Option<usize>,
        optim_cfg: OptimizerConfig,
        device: &Device,
        seed: u64,
        pad: u32,
    ) -> Result<Self> {
        let device = device.clone().autodiff();
        let mut model_cfg = checkpoint.model_config();
        if let Some(n) = max_len {
            model_cfg.max_len = n;
        }
        let model = checkpoint
            .load_with(&model_cfg, &device)
            .map_err(|e| Error::Mismatch(e.to_string()))?;
        Self::fresh(model_cfg, model, optim_cfg, device, seed, pad)
    }

    fn model(&self) -> &Transformer {
        self.model.as_ref().expect("model present outside updates")
    }

    /// Optimizer steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Version of the current weights (bumped by every update).
    pub fn policy_version(&self) -> u64 {
        self.version
    }

    /// The model config.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model_cfg
    }

    /// Sets the learning rate of the following updates (the runtime sets each
    /// stage's rate before its steps).
    pub fn set_lr(&mut self, lr: f64) {
        self.optim.set_lr(lr);
    }

    /// The optimizer config.
    pub fn optimizer_config(&self) -> &OptimizerConfig {
        self.optim.config()
    }

    /// The learner's RNG (checkpointed with it).
    pub fn rng_mut(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// A non-autodiff copy of the current model, for sampling and scoring.
    pub fn inference_model(&self) -> Transformer {
        self.model().valid()
    }

    /// Samples with the current weights and the learner's RNG (single-thread
    /// setups and tests; the runtime samples in the generator).
    pub fn sample(&mut self, prompts: &[Vec<u32>], cfg: &SamplingConfig) -> Result<Vec<Response>> {
        let model = self.inference_model();
        sample(&model, prompts, cfg, self.pad, &mut self.rng)
    }

    /// The current weights with their version, cheap to send to generators.
    pub fn snapshot(&self) -> WeightsSnapshot {
        WeightsSnapshot {
            version: self.version,
            config: self.model_cfg.clone(),
            weights: weights(self.model()),
        }
    }

    /// One GRPO update on `groups`.
    pub fn grpo_step(&mut self, groups: &[Group], cfg: &GrpoConfig) -> Result<StepStats> {
        cfg.validate()?;
        let start = Instant::now();
        let (prep, old, adv, rewards, masked) = self.prepare_grpo(groups, cfg)?;
        let (b, t) = (prep.input.batch, prep.input.len);
        let temperature = groups[0].temperature;
        let weights = aggregation_weights(&prep.mask, b, t, cfg.aggregation);
        if cfg.kl_coef > 0.0 && self.reference.is_none() {
            self.reference = Some(self.inference_model());
        }
        // On the host, then back as a constant on the learner's own device
        // (with its checkpointing strategy, which every tensor of one graph
        // must share).
        let refl = match (&self.reference, cfg.kl_coef > 0.0) {
            (Some(r), true) => Some(host2(
                r.score(&prep.input, &prep.targets, temperature)?.logp,
            )),
            _ => None,
        };

        let scores = self
            .model()
            .score(&prep.input, &prep.targets, temperature)?;
        let (logp, entropy) = (scores.logp, scores.entropy);
        let c = |v: Vec<f32>| self.constant(v, b, t);
        let terms = GrpoTerms {
            logp: logp.clone(),
            old_logp: c(old.clone()),
            advantages: c(adv.clone()),
            weights: c(weights.clone()),
            ref_logp: refl.clone().map(c),
            entropy: Some(entropy.clone()),
        };
        let loss = grpo_loss(terms, cfg);
        let (loss_v, update) = self.apply(loss);

        // Statistics from the pre-update values.
        let logp = host2(logp);
        let entropy = host2(entropy);
        let (mut n, mut clipped, mut kl, mut ent, mut advs, mut rkl) =
            (0usize, 0, 0.0, 0.0, 0.0, 0.0);
        for i in (0..b * t).filter(|&i| prep.mask[i]) {
            n += 1;
            let ratio = (logp[i] - old[i]).exp();
            if (adv[i] > 0.0 && ratio > 1.0 + cfg.clip_eps_high)
                || (adv[i] < 0.0 && ratio < 1.0 - cfg.clip_eps_low)
            {
                clipped += 1;
            }
            kl += f64::from(old[i] - logp[i]);
            ent += f64::from(entropy[i]);
            advs += f64::from(adv[i]);
            if let Some(r) = &refl {
                let d = f64::from(r[i] - logp[i]);
                rkl += d.exp() - d - 1.0;
            }
        }
        let mean = |x: f64| if n > 0 { (x / n as f64) as f32 } else { 0.0 };
        Ok(self.stats(
            StepKind::Grpo,
            loss_v,
            update,
            &prep.input,
            start,
            StepStats {
                mean_reward: Some(rewards.iter().sum::<f32>() / rewards.len().max(1) as f32),
                mean_advantage: Some(mean(advs)),
                clip_fraction: Some(if n > 0 {
                    clipped as f32 / n as f32
                } else {
                    0.0
                }),
                approx_kl: Some(mean(kl)),
                ref_kl: refl.map(|_| mean(rkl)),
                entropy: mean(ent),
                masked_truncated: masked,
                ..StepStats::empty()
            },
        ))
    }

    /// One supervised update: cross-entropy on the completions (token mean).
    pub fn sft_step(&mut self, examples: &[SftExample]) -> Result<StepStats> {
        let start = Instant::now();
        let rows: Vec<(&[u32], &[u32])> = examples
            .iter()
            .map(|e| (e.prompt.as_slice(), e.completion.as_slice()))
            .collect();
        let prep = self.prepare(&rows)?;
        let (b, t) = (prep.input.batch, prep.input.len);
        let weights = aggregation_weights(&prep.mask, b, t, Aggregation::TokenMean);
        let scores = self.model().score(&prep.input, &prep.targets, 1.0)?;
        let argmax = scores.argmax();
        let entropy = host2(scores.entropy.clone());
        let loss = sft_loss(scores.logp, self.constant(weights, b, t));
        let (loss_v, update) = self.apply(loss);

        let (mut n, mut right, mut ent) = (0usize, 0usize, 0.0f64);
        for i in (0..b * t).filter(|&i| prep.mask[i]) {
            n += 1;
            right += usize::from(argmax[i] == prep.targets[i]);
            ent += f64::from(entropy[i]);
        }
        Ok(self.stats(
            StepKind::Sft,
            loss_v,
            update,
            &prep.input,
            start,
            StepStats {
                entropy: (ent / n.max(1) as f64) as f32,
                token_accuracy: Some(right as f32 / n.max(1) as f32),
                ..StepStats::empty()
            },
        ))
    }

    /// Backward pass and optimizer update; returns the loss value.
    fn apply(&mut self, loss: Tensor<1>) -> (f32, crate::optim::Update) {
        let grads = loss.backward();
        let loss_v = host1(loss);
        let model = self.model.take().expect("model present");
        let (model, update) = self.optim.step(model, &grads);
        self.model = Some(model);
        self.step += 1;
        self.version += 1;
        (loss_v, update)
    }

    fn stats(
        &self,
        kind: StepKind,
        loss: f32,
        update: crate::optim::Update,
        input: &TokenBatch,
        start: Instant,
        partial: StepStats,
    ) -> StepStats {
        let seconds = start.elapsed().as_secs_f64();
        // The last token of each row is never fed (it only serves as a target).
        let tokens = input.valid.iter().filter(|&&v| v).count() + input.batch;
        StepStats {
            kind,
            step: self.step,
            policy_version: self.version,
            loss,
            grad_norm: update.grad_norm,
            lr: update.lr,
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            ..partial
        }
    }

    /// A constant `[b, t]` tensor on the learner's device.
    fn constant(&self, v: Vec<f32>, b: usize, t: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, [b, t]), &self.device)
    }

    /// Rows `prompt ++ response`, right-padded, without their last token (it
    /// is only a target). Slot `s` predicts token `s + 1`; response token `j`
    /// is predicted by slot `prompt_len − 1 + j`.
    fn prepare(&self, rows: &[(&[u32], &[u32])]) -> Result<Prepared> {
        if rows.is_empty() {
            return Err(Error::InvalidBatch("no sequences to train on".into()));
        }
        for (i, (p, r)) in rows.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::InvalidBatch(format!(
                    "sequence {i} has an empty prompt"
                )));
            }
            if p.len() + r.len() > self.model_cfg.max_len + 1 {
                return Err(Error::TooLong {
                    len: p.len() + r.len() - 1,
                    max_len: self.model_cfg.max_len,
                });
            }
        }
        let full: Vec<Vec<u32>> = rows
            .iter()
            .map(|(p, r)| p.iter().chain(r.iter()).copied().collect())
            .collect();
        let inputs: Vec<Vec<u32>> = full.iter().map(|f| f[..f.len() - 1].to_vec()).collect();
        let input = TokenBatch::right_padded(&inputs, self.pad);
        let t = input.len.max(1);
        let mut targets = vec![self.pad; rows.len() * t];
        let mut mask = vec![false; rows.len() * t];
        for (b, ((p, r), f)) in rows.iter().zip(&full).enumerate() {
            for s in 0..f.len() - 1 {
                targets[b * t + s] = f[s + 1];
            }
            for j in 0..r.len() {
                mask[b * t + p.len() - 1 + j] = true;
            }
        }
        Ok(Prepared {
            input,
            targets,
            mask,
        })
    }

    /// Lays out GRPO groups: returns the batch, behaviour log-probs and
    /// advantages per slot, all rewards, and how many truncated responses were
    /// masked.
    #[expect(clippy::type_complexity, reason = "private, consumed right away")]
    fn prepare_grpo(
        &self,
        groups: &[Group],
        cfg: &GrpoConfig,
    ) -> Result<(Prepared, Vec<f32>, Vec<f32>, Vec<f32>, usize)> {
        let Some(first) = groups.first() else {
            return Err(Error::InvalidBatch("no groups to train on".into()));
        };
        let mut rows = Vec::new();
        let mut per_row_adv = Vec::new();
        let mut rewards = Vec::new();
        let mut keep = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            if g.rewards.len() != g.responses.len() {
                return Err(Error::InvalidBatch(format!(
                    "group {gi}: {} responses but {} rewards",
                    g.responses.len(),
                    g.rewards.len()
                )));
            }
            if g.temperature != first.temperature {
                return Err(Error::InvalidBatch(format!(
                    "group {gi} was sampled at temperature {}, group 0 at {}",
                    g.temperature, first.temperature
                )));
            }
            if let Some(r) = g
                .responses
                .iter()
                .find(|r| r.logprobs.len() != r.tokens.len())
            {
                return Err(Error::InvalidBatch(format!(
                    "group {gi}: a response has {} tokens but {} log-probs",
                    r.tokens.len(),
                    r.logprobs.len()
                )));
            }
            match &g.advantages {
                Some(a) if a.len() != g.responses.len() => {
                    return Err(Error::InvalidBatch(format!(
                        "group {gi}: {} responses but {} advantages",
                        g.responses.len(),
                        a.len()
                    )));
                }
                Some(a) => per_row_adv.extend_from_slice(a),
                None => per_row_adv.extend(group_advantages(&g.rewards, cfg.normalize_std)),
            }
            rewards.extend_from_slice(&g.rewards);
            for r in &g.responses {
                rows.push((g.prompt.as_slice(), r.tokens.as_slice()));
                keep.push(!(cfg.mask_truncated && r.truncated));
            }
        }
        let mut prep = self.prepare(&rows)?;
        let t = prep.input.len;
        let mut old = vec![0.0f32; rows.len() * t];
        let mut adv = vec![0.0f32; rows.len() * t];
        let responses = groups.iter().flat_map(|g| &g.responses);
        for (b, (((p, _), r), k)) in rows.iter().zip(responses).zip(&keep).enumerate() {
            for (j, &lp) in r.logprobs.iter().enumerate() {
                let s = b * t + p.len() - 1 + j;
                old[s] = lp;
                adv[s] = per_row_adv[b];
                prep.mask[s] &= *k;
            }
        }
        let masked = keep.iter().filter(|&&k| !k).count();
        Ok((prep, old, adv, rewards, masked))
    }
}

impl StepStats {
    /// A step that did nothing (no update was made): zeros and `None`s.
    pub fn empty() -> Self {
        Self {
            kind: StepKind::Sft,
            step: 0,
            policy_version: 0,
            loss: 0.0,
            mean_reward: None,
            mean_advantage: None,
            clip_fraction: None,
            approx_kl: None,
            ref_kl: None,
            entropy: 0.0,
            token_accuracy: None,
            grad_norm: 0.0,
            lr: 0.0,
            masked_truncated: 0,
            tokens: 0,
            seconds: 0.0,
            tokens_per_s: 0.0,
        }
    }
}

fn host1(t: Tensor<1>) -> f32 {
    t.into_data().try_into_vec::<f32>().expect("f32")[0]
}

fn host2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32")
}

#[cfg(test)]
mod tests;

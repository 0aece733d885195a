//! The objectives: GRPO's group-normalised advantages and clipped surrogate,
//! and SFT's cross-entropy, plus the per-token log-prob extraction they share.
//!
//! Each function cites the equation it implements. Aggregation (token-mean or
//! sequence-mean) and response masking are folded into one host-built weight
//! per token, so the loss is always `Σ weight · per_token_loss`.

use burn::Tensor;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::error::Result;

/// How per-token losses become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean over all response tokens of the batch (DAPO §3.3): long responses
    /// weigh more, which keeps long-form reasoning from being under-trained.
    TokenMean,
    /// Mean over responses of each response's token mean (GRPO, Shao et al.
    /// 2024, eq. 3): every response weighs the same.
    SequenceMean,
}

/// GRPO update settings (`[grpo]`, usually per stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoConfig {
    /// Lower clip range ε_low: ratios below `1 - ε_low` stop pushing down.
    #[serde(default = "defaults::eps_low")]
    pub clip_eps_low: f32,
    /// Upper clip range ε_high (DAPO's clip-higher: > ε_low keeps exploration).
    #[serde(default = "defaults::eps_high")]
    pub clip_eps_high: f32,
    /// Divide advantages by the group's reward standard deviation; false keeps
    /// only the mean baseline (Dr. GRPO).
    #[serde(default = "defaults::yes")]
    pub normalize_std: bool,
    /// Token-mean or sequence-mean.
    #[serde(default = "defaults::aggregation")]
    pub aggregation: Aggregation,
    /// Weight β of the k3 KL penalty to the frozen reference policy; 0 (the
    /// default) disables it and skips the reference forward pass.
    #[serde(default)]
    pub kl_coef: f32,
    /// Weight of the entropy bonus; 0 disables it.
    #[serde(default)]
    pub entropy_coef: f32,
    /// Give responses cut at the length limit zero weight (DAPO's overlong
    /// filtering), so a stage with a short limit does not punish unfinished
    /// reasoning.
    #[serde(default)]
    pub mask_truncated: bool,
}

mod defaults {
    use super::Aggregation;
    pub fn eps_low() -> f32 {
        0.2
    }
    pub fn eps_high() -> f32 {
        0.28
    }
    pub fn yes() -> bool {
        true
    }
    pub fn aggregation() -> Aggregation {
        Aggregation::TokenMean
    }
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            clip_eps_low: defaults::eps_low(),
            clip_eps_high: defaults::eps_high(),
            normalize_std: true,
            aggregation: Aggregation::TokenMean,
            kl_coef: 0.0,
            entropy_coef: 0.0,
            mask_truncated: false,
        }
    }
}

impl GrpoConfig {
    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("grpo");
        p.check(
            self.clip_eps_low > 0.0 && self.clip_eps_low < 1.0,
            "clip_eps_low",
            || format!("must be in (0, 1), got {}", self.clip_eps_low),
        );
        p.check(
            self.clip_eps_high > 0.0 && self.clip_eps_high.is_finite(),
            "clip_eps_high",
            || format!("must be > 0, got {}", self.clip_eps_high),
        );
        for (name, v) in [
            ("kl_coef", self.kl_coef),
            ("entropy_coef", self.entropy_coef),
        ] {
            p.check(v.is_finite() && v >= 0.0, name, || {
                format!("must be ≥ 0, got {v}")
            });
        }
        p.finish()
    }
}

/// Added to the group std before dividing, as in verl's GRPO advantage.
pub const ADV_EPS: f32 = 1e-6;

/// Group-relative advantages of one group's rewards (Shao et al. 2024, §4.1.2:
/// `Â_i = (r_i − mean(r)) / std(r)`), with the Bessel-corrected std as in
/// verl's `compute_grpo_outcome_advantage`. A group of one has advantage 0;
/// a group whose rewards are all equal has advantages 0 (no signal).
pub fn group_advantages(rewards: &[f32], normalize_std: bool) -> Vec<f32> {
    let n = rewards.len();
    if n == 0 {
        return Vec::new();
    }
    let mean = rewards.iter().sum::<f32>() / n as f32;
    let centred = rewards.iter().map(|r| r - mean);
    if !normalize_std {
        return centred.collect();
    }
    let std = if n < 2 {
        0.0
    } else {
        (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (n - 1) as f32).sqrt()
    };
    centred.map(|c| c / (std + ADV_EPS)).collect()
}

/// Per-token weights `[batch × len]` that turn `Σ w · loss` into the chosen
/// aggregation over the tokens where `mask` is true. All-false masks give
/// all-zero weights (the loss is then 0).
pub fn aggregation_weights(mask: &[bool], batch: usize, len: usize, agg: Aggregation) -> Vec<f32> {
    let mut w = vec![0.0f32; batch * len];
    match agg {
        Aggregation::TokenMean => {
            let n = mask.iter().filter(|&&m| m).count();
            if n > 0 {
                for (w, &m) in w.iter_mut().zip(mask) {
                    *w = if m { 1.0 / n as f32 } else { 0.0 };
                }
            }
        }
        Aggregation::SequenceMean => {
            let lens: Vec<usize> = mask
                .chunks(len)
                .map(|r| r.iter().filter(|&&m| m).count())
                .collect();
            let seqs = lens.iter().filter(|&&l| l > 0).count();
            for (b, &l) in lens.iter().enumerate() {
                if l == 0 {
                    continue;
                }
                for t in 0..len {
                    if mask[b * len + t] {
                        w[b * len + t] = 1.0 / (l * seqs) as f32;
                    }
                }
            }
        }
    }
    w
}

/// Log-probs of next tokens and the per-token entropy from logits.
///
/// `targets[b][t]` is the id that followed slot `t`; logits are divided by
/// `temperature` first (the sampler's distribution).
///
/// # Shapes
/// - logits: `[batch, len, vocab]`; targets: `[batch, len]`
/// - output: log-probs `[batch, len]`, entropy `[batch, len]`
pub fn token_logprobs(
    logits: Tensor<3>,
    targets: &[u32],
    temperature: f32,
) -> (Tensor<2>, Tensor<2>) {
    let [b, t, _] = logits.dims();
    let device = logits.device();
    let logits = if temperature != 1.0 && temperature > 0.0 {
        logits.div_scalar(temperature)
    } else {
        logits
    };
    let lsm = log_softmax(logits, 2);
    let ids: Vec<i32> = targets.iter().map(|&i| i as i32).collect();
    let ids = Tensor::<3, Int>::from_data(TensorData::new(ids, [b, t, 1]), &device);
    let logp = lsm.clone().gather(2, ids).reshape([b, t]);
    let entropy = (lsm.clone().exp() * lsm).sum_dim(2).neg().reshape([b, t]);
    (logp, entropy)
}

/// Inputs of the GRPO loss, all `[batch, len]` and aligned per response token.
pub struct GrpoTerms {
    /// Current policy's log-probs (tracked for gradients).
    pub logp: Tensor<2>,
    /// Behaviour policy's log-probs, from the sampler (constant).
    pub old_logp: Tensor<2>,
    /// Advantage of each token's response (constant).
    pub advantages: Tensor<2>,
    /// Aggregation weights, zero off the response (constant).
    pub weights: Tensor<2>,
    /// Reference policy's log-probs, when the KL penalty is on (constant).
    pub ref_logp: Option<Tensor<2>>,
    /// Current policy's entropy, when the bonus is on (tracked).
    pub entropy: Option<Tensor<2>>,
}

/// The GRPO objective as a loss to minimise, one scalar.
///
/// Per token (Shao et al. 2024, eq. 3, with DAPO's decoupled clip, Yu et al.
/// 2025, eq. 10):
///
/// `ℓ = −min(ρ·Â, clip(ρ, 1−ε_low, 1+ε_high)·Â) + β·KL_k3 − γ·H`,
///
/// where `ρ = exp(logp − old_logp)` is the importance ratio to the behaviour
/// policy (so slightly stale rollouts are corrected), `KL_k3 = exp(ref − logp)
/// − (ref − logp) − 1` is Schulman's unbiased, non-negative estimator (GRPO
/// eq. 4), and `H` the token entropy. The result is `Σ weight · ℓ`.
///
/// # Shapes
/// - every input: `[batch, len]`; output: `[1]`
pub fn grpo_loss(terms: GrpoTerms, cfg: &GrpoConfig) -> Tensor<1> {
    let GrpoTerms {
        logp,
        old_logp,
        advantages,
        weights,
        ref_logp,
        entropy,
    } = terms;
    let ratio = (logp.clone() - old_logp).exp();
    let unclipped = ratio.clone() * advantages.clone();
    let clipped = ratio.clamp(1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high) * advantages;
    let mut per_token = unclipped.min_pair(clipped).neg();
    if let Some(r) = ref_logp
        && cfg.kl_coef > 0.0
    {
        let d = r - logp;
        let k3 = d.clone().exp() - d - 1.0;
        per_token = per_token + k3.mul_scalar(cfg.kl_coef);
    }
    if let Some(h) = entropy
        && cfg.entropy_coef > 0.0
    {
        per_token = per_token - h.mul_scalar(cfg.entropy_coef);
    }
    (per_token * weights).sum()
}

/// SFT cross-entropy: `−Σ weight · log p(target)`, with token-mean weights
/// over the completion tokens (the standard language-modelling loss).
///
/// # Shapes
/// - logp, weights: `[batch, len]`; output: `[1]`
pub fn sft_loss(logp: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    (logp * weights).sum().neg()
}

#[cfg(test)]
mod tests;

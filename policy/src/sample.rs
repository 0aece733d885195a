//! Batched, KV-cached sampling on the non-autodiff copy of the model.
//!
//! Prompts are left-padded so every row's last prompt token sits in the last
//! slot; one prefill pass fills the cache, then each step feeds one token per
//! row. Finished rows are fed padding (masked out) until every row stops or
//! hits `max_new_tokens`. Token choice (temperature, top-p) runs on the host
//! with the caller's seeded RNG, so the same seed gives the same samples.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cache::KvCache;
use crate::config::Problems;
use crate::error::{Error, Result};
use crate::model::{TokenBatch, Transformer};

/// How to sample (`[sampling]`, usually per stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax). The learner scores
    /// responses at the same temperature, so importance ratios start at 1.
    #[serde(default = "default_one")]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose mass reaches `top_p`
    /// (1.0 keeps all).
    #[serde(default = "default_one")]
    pub top_p: f32,
    /// Response length limit in tokens; a response that reaches it without a
    /// stop token is marked truncated.
    #[serde(default = "default_max_new")]
    pub max_new_tokens: usize,
    /// Token ids that end a response (kept as its last token); usually the
    /// tokenizer's EOS.
    #[serde(default)]
    pub stop_tokens: Vec<u32>,
}

fn default_one() -> f32 {
    1.0
}
fn default_max_new() -> usize {
    128
}

impl SamplingConfig {
    /// Temperature 1, no nucleus cut, stop at `eos`.
    pub fn new(max_new_tokens: usize, eos: u32) -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens,
            stop_tokens: vec![eos],
        }
    }

    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("sampling");
        p.check(
            self.temperature.is_finite() && self.temperature >= 0.0,
            "temperature",
            || format!("must be ≥ 0, got {}", self.temperature),
        );
        p.check(self.top_p > 0.0 && self.top_p <= 1.0, "top_p", || {
            format!("must be in (0, 1], got {}", self.top_p)
        });
        p.check(self.max_new_tokens > 0, "max_new_tokens", || {
            "must be > 0".into()
        });
        p.finish()
    }
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Generated ids, the stop token included when one ended the response.
    pub tokens: Vec<u32>,
    /// Behaviour policy's log-prob of each generated token under the
    /// temperature-scaled softmax (before the top-p cut), as the learner's
    /// importance ratio needs.
    pub logprobs: Vec<f32>,
    /// True when the response hit `max_new_tokens` without a stop token.
    pub truncated: bool,
}

/// Samples one response per prompt. Prompts are token ids (BOS included);
/// `pad` fills the left padding.
pub fn sample(
    model: &Transformer,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    pad: u32,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Response>> {
    cfg.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::InvalidBatch(format!("prompt {i} is empty")));
    }
    let batch = TokenBatch::left_padded(prompts, pad);
    // The last sampled token is never fed back, hence the - 1.
    let needed = batch.len + cfg.max_new_tokens - 1;
    if needed > model.max_len() {
        return Err(Error::TooLong {
            len: needed,
            max_len: model.max_len(),
        });
    }
    let b = batch.batch;
    let vocab = model.vocab_size();
    let mut cache = KvCache::new(model.n_layers(), b);
    let hidden = model.forward_hidden(&batch, Some(&mut cache))?;
    let mut logits = host(model.logits(hidden.narrow(1, batch.len - 1, 1)));

    let mut out: Vec<Response> = (0..b)
        .map(|_| Response {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            truncated: false,
        })
        .collect();
    let mut done = vec![false; b];
    for step in 0..cfg.max_new_tokens {
        for (row, r) in out.iter_mut().enumerate() {
            if done[row] {
                continue;
            }
            let (tok, lp) = choose(&logits[row * vocab..(row + 1) * vocab], cfg, rng);
            r.tokens.push(tok);
            r.logprobs.push(lp);
            done[row] = cfg.stop_tokens.contains(&tok);
        }
        if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let next = TokenBatch {
            tokens: out
                .iter()
                .zip(&done)
                .map(|(r, &d)| {
                    if d {
                        pad
                    } else {
                        *r.tokens.last().unwrap_or(&pad)
                    }
                })
                .collect(),
            valid: done.iter().map(|d| !d).collect(),
            batch: b,
            len: 1,
        };
        logits = host(model.forward(&next, Some(&mut cache))?);
    }
    for (r, d) in out.iter_mut().zip(&done) {
        r.truncated = !d;
    }
    Ok(out)
}

/// Copies `[batch, 1, vocab]` logits to the host, row-major.
fn host(logits: burn::Tensor<3>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}

/// Picks one token from a row of logits; returns it with its log-prob under
/// the temperature-scaled softmax (temperature 1 when greedy).
fn choose(logits: &[f32], cfg: &SamplingConfig, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let t = if cfg.temperature > 0.0 {
        cfg.temperature
    } else {
        1.0
    };
    let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + scaled.iter().map(|s| (s - max).exp()).sum::<f32>().ln();
    let logp: Vec<f32> = scaled.iter().map(|s| s - lse).collect();
    if cfg.temperature == 0.0 {
        let (i, lp) = logp
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            });
        return (i as u32, lp);
    }
    let mut order: Vec<usize> = (0..logp.len()).collect();
    if cfg.top_p < 1.0 {
        order.sort_by(|&a, &b| logp[b].total_cmp(&logp[a]).then(a.cmp(&b)));
        let mut mass = 0.0f32;
        let mut keep = 0;
        for &i in &order {
            mass += logp[i].exp();
            keep += 1;
            if mass >= cfg.top_p {
                break;
            }
        }
        order.truncate(keep);
    }
    let total: f32 = order.iter().map(|&i| logp[i].exp()).sum();
    let mut u = rng.random::<f32>() * total;
    for &i in &order {
        u -= logp[i].exp();
        if u <= 0.0 {
            return (i as u32, logp[i]);
        }
    }
    // Rounding left a sliver of mass: take the last kept token.
    let i = *order.last().expect("vocab is non-empty");
    (i as u32, logp[i])
}

#[cfg(test)]
mod tests;

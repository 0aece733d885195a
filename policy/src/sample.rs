//! Batched, KV-cached sampling on the non-autodiff copy of the model.
//!
//! Prompts are left-padded so every row's last prompt token sits in the last
//! slot; one prefill pass fills the cache, then each step feeds one token per
//! row. Finished rows are fed padding (masked out) until every row stops or
//! hits `max_new_tokens`. Token choice (temperature, top-p) runs on the host
//! with the caller's seeded RNG, row by row in order, so the same seed gives
//! the same samples.
//!
//! On the CPU a batch is cut into shards of consecutive rows, one per worker
//! thread of the compute pool (at most as many shards as rows), with a
//! cache each, and the shards' forward passes run in parallel: at decode
//! sizes burn's CPU kernels run single-threaded (a 32-row GEMM is below their
//! threshold for splitting work), so without shards one core would sit idle.
//! The shard boundaries depend only on the batch size and the thread count.

use std::ops::Range;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
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
    let shards = shards(b, model);
    let mut caches: Vec<KvCache> = shards
        .iter()
        .map(|r| KvCache::new(model.n_layers(), r.len()))
        .collect();
    // Prefill: each shard's prompts, left-padded among themselves.
    let mut logits = forward_shards(&shards, &mut caches, vocab, |rows, cache| {
        let batch = TokenBatch::left_padded(&prompts[rows], pad);
        let hidden = model.forward_hidden(&batch, Some(cache))?;
        Ok(Some(host(model.logits(hidden.narrow(1, batch.len - 1, 1)))))
    })?;

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
        logits = forward_shards(&shards, &mut caches, vocab, |rows, cache| {
            // A shard whose rows have all stopped is not fed any more.
            if done[rows.clone()].iter().all(|&d| d) {
                return Ok(None);
            }
            let next = TokenBatch {
                tokens: rows
                    .clone()
                    .map(|i| match (done[i], out[i].tokens.last()) {
                        (false, Some(&t)) => t,
                        _ => pad,
                    })
                    .collect(),
                valid: done[rows.clone()].iter().map(|d| !d).collect(),
                batch: rows.len(),
                len: 1,
            };
            Ok(Some(host(model.forward(&next, Some(cache))?)))
        })?;
    }
    for (r, d) in out.iter_mut().zip(&done) {
        r.truncated = !d;
    }
    Ok(out)
}

/// Consecutive row ranges of a batch of `b` rows: one per compute thread on
/// the CPU (fewer when the batch has fewer rows), one range on other devices
/// (a GPU wants the whole batch at once). Even a single row's forward pass is
/// worth a thread of its own (`gradus bench serve` on 2 threads, d_model 256,
/// 4 layers: batch 8 sampled 3442 tokens/s when shards needed 8 rows each,
/// 6623 with one per thread), as the continuous-batching
/// [`crate::decode::Decoder`] already does.
fn shards(b: usize, model: &Transformer) -> Vec<Range<usize>> {
    let n = if model.device() == burn::tensor::Device::flex() {
        rayon::current_num_threads().min(b).max(1)
    } else {
        1
    };
    (0..n).map(|i| i * b / n..(i + 1) * b / n).collect()
}

/// Runs `f` on every shard with its cache, in parallel when there are
/// several, and joins their `[rows, 1, vocab]` logits in row order; a shard
/// that `f` skips (`None`) gets zeros, which nobody reads.
fn forward_shards(
    shards: &[Range<usize>],
    caches: &mut [KvCache],
    vocab: usize,
    f: impl Fn(Range<usize>, &mut KvCache) -> Result<Option<Vec<f32>>> + Sync,
) -> Result<Vec<f32>> {
    let run = |(rows, cache): (&Range<usize>, &mut KvCache)| {
        let logits = f(rows.clone(), cache)?;
        Ok(logits.unwrap_or_else(|| vec![0.0; rows.len() * vocab]))
    };
    let parts: Vec<Result<Vec<f32>>> = if shards.len() == 1 {
        vec![run((&shards[0], &mut caches[0]))]
    } else {
        shards
            .par_iter()
            .zip(caches.par_iter_mut())
            .map(run)
            .collect()
    };
    let mut joined = Vec::with_capacity(shards.last().map_or(0, |r| r.end) * vocab);
    for part in parts {
        joined.extend(part?);
    }
    Ok(joined)
}

/// Copies `[batch, 1, vocab]` logits to the host, row-major.
fn host(logits: burn::Tensor<3>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}

/// Log-probs of a row of logits under the softmax at temperature `t`.
pub(crate) fn log_softmax(logits: &[f32], t: f32) -> Vec<f32> {
    let scaled: Vec<f32> = logits.iter().map(|l| l / t).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + scaled.iter().map(|s| (s - max).exp()).sum::<f32>().ln();
    scaled.iter().map(|s| s - lse).collect()
}

/// Picks one token from a row of logits; returns it with its log-prob under
/// the temperature-scaled softmax (temperature 1 when greedy).
pub(crate) fn choose(logits: &[f32], cfg: &SamplingConfig, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let t = if cfg.temperature > 0.0 {
        cfg.temperature
    } else {
        1.0
    };
    let logp = log_softmax(logits, t);
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

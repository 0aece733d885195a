//! Continuous batching: sequences join a running decode at the next step and
//! leave it the step they finish, as an inference server needs.
//!
//! [`crate::sample::sample`] decodes one fixed batch to the end. A
//! [`Decoder`] instead keeps a set of running rows: [`Decoder::admit`]
//! prefills new prompts (left-padded among themselves) and merges their
//! key/value cache into the running one (the shorter side padded on the left
//! with masked slots), and [`Decoder::step`] picks one token for every row,
//! drops the rows that finished, and feeds the rest one step further. Each
//! row samples with its own settings and its own seeded RNG, so a request's
//! tokens depend on its seed and the weights, not on which other requests
//! shared its batch (up to float rounding of the batched products).
//!
//! On the CPU the rows are spread over shards, one per worker thread of the
//! compute pool, each with its own cache, whose forward passes run in
//! parallel (see [`crate::sample`]); a new row goes to the shard with the
//! fewest rows.

use burn::Tensor;
use burn::tensor::{Int, TensorData};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::model::{TokenBatch, Transformer};
use crate::sample::{SamplingConfig, choose, log_softmax};

/// Ends a sequence when it returns true for the tokens generated so far.
pub type StopFn = Box<dyn FnMut(&[u32]) -> bool + Send>;

/// One sequence to decode.
pub struct Request {
    /// The caller's id, handed back with the result.
    pub id: u64,
    /// Prompt token ids (BOS included where the model wants one).
    pub prompt: Vec<u32>,
    /// Temperature, nucleus, length limit and stop ids of this sequence.
    pub sampling: SamplingConfig,
    /// This sequence's RNG (seeded by the caller).
    pub rng: ChaCha8Rng,
    /// Alternatives recorded per generated token (their log-probs), 0: none.
    pub top_logprobs: usize,
    /// Also score the prompt: the log-prob of each prompt token after the
    /// first, under the sequence's temperature.
    pub prompt_logprobs: bool,
    /// Ends the sequence early when it returns true for the tokens generated
    /// so far (stop strings); called after every token.
    pub stop: Option<StopFn>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token (kept as the last token) or the `stop` callback.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// A finished sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub id: u64,
    pub tokens: Vec<u32>,
    /// Log-prob of each generated token under the temperature-scaled softmax.
    pub logprobs: Vec<f32>,
    /// Per generated token, the `top_logprobs` most likely `(id, log-prob)`.
    pub top: Vec<Vec<(u32, f32)>>,
    /// Per prompt token after the first, its log-prob (with `prompt_logprobs`).
    pub prompt_logprobs: Option<Vec<f32>>,
    pub finish: Finish,
}

struct Row {
    req: Request,
    out: Finished,
}

#[derive(Default)]
struct Shard {
    cache: Option<KvCache>,
    rows: Vec<Row>,
    /// `[rows × vocab]` logits of each row's next token.
    logits: Vec<f32>,
}

/// The running rows of a continuous batch.
pub struct Decoder {
    shards: Vec<Shard>,
    pad: u32,
}

impl Decoder {
    /// An empty decoder for `model` (shards: one per compute thread on the CPU).
    pub fn new(model: &Transformer, pad: u32) -> Self {
        let n = if model.device() == burn::tensor::Device::flex() {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        Self {
            shards: (0..n).map(|_| Shard::default()).collect(),
            pad,
        }
    }

    /// Rows decoding now.
    pub fn running(&self) -> usize {
        self.shards.iter().map(|s| s.rows.len()).sum()
    }

    /// Checks one request against the model without admitting it.
    pub fn check(model: &Transformer, req: &Request) -> Result<()> {
        req.sampling.validate()?;
        if req.prompt.is_empty() {
            return Err(Error::InvalidBatch("the prompt is empty".into()));
        }
        let needed = req.prompt.len() + req.sampling.max_new_tokens - 1;
        if needed > model.max_len() {
            return Err(Error::TooLong {
                len: needed,
                max_len: model.max_len(),
            });
        }
        Ok(())
    }

    /// Prefills `reqs` and adds them to the running rows; their first tokens
    /// are chosen at the next [`Decoder::step`]. On error none is admitted.
    pub fn admit(&mut self, model: &Transformer, reqs: Vec<Request>) -> Result<()> {
        for r in &reqs {
            Self::check(model, r)?;
        }
        if reqs.is_empty() {
            return Ok(());
        }
        // Assign each request to the shard with the fewest rows.
        let mut load: Vec<usize> = self.shards.iter().map(|s| s.rows.len()).collect();
        let mut parts: Vec<Vec<Request>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for r in reqs {
            let (i, _) = load
                .iter()
                .enumerate()
                .min_by_key(|&(i, &n)| (n, i))
                .expect("a decoder has a shard");
            load[i] += 1;
            parts[i].push(r);
        }
        let pad = self.pad;
        let vocab = model.vocab_size();
        let prefilled: Vec<Result<Option<Prefilled>>> = parts
            .into_par_iter()
            .map(|part| prefill(model, part, pad, vocab))
            .collect();
        // All shards prefilled before any is changed: an error admits nothing.
        let prefilled = prefilled.into_iter().collect::<Result<Vec<_>>>()?;
        for (shard, p) in self.shards.iter_mut().zip(prefilled) {
            let Some(p) = p else { continue };
            shard.cache = Some(match shard.cache.take() {
                Some(c) => merge(c, p.cache),
                None => p.cache,
            });
            shard.rows.extend(p.rows);
            shard.logits.extend(p.logits);
        }
        Ok(())
    }

    /// Chooses the next token of every running row, returns the rows that
    /// finished (in shard order), and feeds the others one step further.
    pub fn step(&mut self, model: &Transformer) -> Result<Vec<Finished>> {
        let vocab = model.vocab_size();
        let pad = self.pad;
        let results: Vec<Result<Vec<Finished>>> = self
            .shards
            .par_iter_mut()
            .map(|shard| shard.step(model, vocab, pad))
            .collect();
        let mut done = Vec::new();
        for r in results {
            done.extend(r?);
        }
        Ok(done)
    }
}

struct Prefilled {
    cache: KvCache,
    rows: Vec<Row>,
    logits: Vec<f32>,
}

fn prefill(
    model: &Transformer,
    reqs: Vec<Request>,
    pad: u32,
    vocab: usize,
) -> Result<Option<Prefilled>> {
    if reqs.is_empty() {
        return Ok(None);
    }
    let prompts: Vec<Vec<u32>> = reqs.iter().map(|r| r.prompt.clone()).collect();
    let batch = TokenBatch::left_padded(&prompts, pad);
    let mut cache = KvCache::new(model.n_layers(), batch.batch);
    let hidden = model.forward_hidden(&batch, Some(&mut cache))?;
    let len = batch.len;
    let scored = reqs.iter().any(|r| r.prompt_logprobs);
    let (logits, all) = if scored {
        let all = host(model.logits(hidden));
        let last = (0..batch.batch)
            .flat_map(|b| all[(b * len + len - 1) * vocab..(b * len + len) * vocab].to_vec())
            .collect();
        (last, Some(all))
    } else {
        (host(model.logits(hidden.narrow(1, len - 1, 1))), None)
    };
    let rows = reqs
        .into_iter()
        .enumerate()
        .map(|(b, req)| {
            let prompt_logprobs = match (&all, req.prompt_logprobs) {
                (Some(all), true) => {
                    let t = temperature(&req.sampling);
                    let off = len - req.prompt.len();
                    Some(
                        (1..req.prompt.len())
                            .map(|i| {
                                let at = (b * len + off + i - 1) * vocab;
                                let lp = log_softmax(&all[at..at + vocab], t);
                                lp[req.prompt[i] as usize]
                            })
                            .collect(),
                    )
                }
                _ => None,
            };
            Row {
                out: Finished {
                    id: req.id,
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    top: Vec::new(),
                    prompt_logprobs,
                    finish: Finish::Length,
                },
                req,
            }
        })
        .collect();
    Ok(Some(Prefilled {
        cache,
        rows,
        logits,
    }))
}

fn temperature(cfg: &SamplingConfig) -> f32 {
    if cfg.temperature > 0.0 {
        cfg.temperature
    } else {
        1.0
    }
}

impl Shard {
    fn step(&mut self, model: &Transformer, vocab: usize, pad: u32) -> Result<Vec<Finished>> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut keep = Vec::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter_mut().enumerate() {
            let logits = &self.logits[i * vocab..(i + 1) * vocab];
            let (tok, lp) = choose(logits, &row.req.sampling, &mut row.req.rng);
            if row.req.top_logprobs > 0 {
                row.out.top.push(top_k(
                    &log_softmax(logits, temperature(&row.req.sampling)),
                    row.req.top_logprobs,
                ));
            }
            row.out.tokens.push(tok);
            row.out.logprobs.push(lp);
            let stopped = row.req.sampling.stop_tokens.contains(&tok)
                || row.req.stop.as_mut().is_some_and(|f| f(&row.out.tokens));
            if stopped {
                row.out.finish = Finish::Stop;
            }
            keep.push(!stopped && row.out.tokens.len() < row.req.sampling.max_new_tokens);
        }
        let mut done = Vec::new();
        let rows = std::mem::take(&mut self.rows);
        for (row, k) in rows.into_iter().zip(&keep) {
            if *k {
                self.rows.push(row);
            } else {
                done.push(row.out);
            }
        }
        if self.rows.is_empty() {
            self.cache = None;
            self.logits.clear();
            return Ok(done);
        }
        let mut cache = self.cache.take().expect("running rows have a cache");
        if !done.is_empty() {
            cache = retain(cache, &keep);
        }
        let next = TokenBatch {
            tokens: self
                .rows
                .iter()
                .map(|r| *r.out.tokens.last().unwrap_or(&pad))
                .collect(),
            valid: vec![true; self.rows.len()],
            batch: self.rows.len(),
            len: 1,
        };
        let logits = model.forward(&next, Some(&mut cache));
        self.cache = Some(cache);
        self.logits = host(logits?);
        Ok(done)
    }
}

/// The `k` most likely ids of a row of log-probs, most likely first (ties by id).
fn top_k(logp: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<usize> = (0..logp.len()).collect();
    let k = k.min(logp.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| logp[b].total_cmp(&logp[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_by(|&a, &b| logp[b].total_cmp(&logp[a]).then(a.cmp(&b)));
    idx.into_iter().map(|i| (i as u32, logp[i])).collect()
}

/// `a`'s rows followed by `b`'s, the shorter cache padded on the left with
/// masked slots.
fn merge(a: KvCache, b: KvCache) -> KvCache {
    let (la, lb) = (a.len(), b.len());
    let len = la.max(lb);
    let layers = a
        .layers
        .into_iter()
        .zip(b.layers)
        .map(|(x, y)| match (x, y) {
            (Some((ka, va)), Some((kb, vb))) => Some((
                Tensor::cat(vec![left_pad(ka, len), left_pad(kb, len)], 0),
                Tensor::cat(vec![left_pad(va, len), left_pad(vb, len)], 0),
            )),
            _ => None,
        })
        .collect();
    let pad_valid = |mut v: Vec<Vec<bool>>, l: usize| {
        for row in &mut v {
            let mut padded = vec![false; len - l];
            padded.append(row);
            *row = padded;
        }
        v
    };
    let mut valid = pad_valid(a.valid, la);
    valid.extend(pad_valid(b.valid, lb));
    let mut next_pos = a.next_pos;
    next_pos.extend(b.next_pos);
    KvCache {
        layers,
        valid,
        next_pos,
    }
}

/// `[b, h, l, d]` padded with zeros on the left of the slot axis to `len`.
fn left_pad(t: Tensor<4>, len: usize) -> Tensor<4> {
    let [b, h, l, d] = t.dims();
    if l == len {
        return t;
    }
    let zeros = Tensor::zeros([b, h, len - l, d], &t.device());
    Tensor::cat(vec![zeros, t], 2)
}

/// The cache's rows where `keep` is true, without the leading slots that are
/// padding in every kept row.
fn retain(c: KvCache, keep: &[bool]) -> KvCache {
    let idx: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    let valid: Vec<Vec<bool>> = idx.iter().map(|&i| c.valid[i].clone()).collect();
    let next_pos = idx.iter().map(|&i| c.next_pos[i]).collect();
    let first = valid
        .iter()
        .map(|v| v.iter().position(|&x| x).unwrap_or(v.len()))
        .min()
        .unwrap_or(0);
    let len = c.len();
    let layers = c
        .layers
        .into_iter()
        .map(|l| {
            l.map(|(k, v)| {
                let device = k.device();
                let ids: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
                let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [idx.len()]), &device);
                let (k, v) = (k.select(0, ids.clone()), v.select(0, ids));
                if first > 0 {
                    (
                        k.narrow(2, first, len - first),
                        v.narrow(2, first, len - first),
                    )
                } else {
                    (k, v)
                }
            })
        })
        .collect();
    KvCache {
        layers,
        valid: valid.into_iter().map(|v| v[first..].to_vec()).collect(),
        next_pos,
    }
}

fn host(logits: Tensor<3>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}

#[cfg(test)]
mod tests;

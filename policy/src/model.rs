//! The decoder-only transformer: token embedding, `n_layers` pre-norm blocks
//! (RMSNorm → causal self-attention with rotary positions → residual; RMSNorm →
//! SwiGLU MLP → residual), a final RMSNorm and the output projection (tied to
//! the embedding when `tie_embeddings`).
//!
//! One struct per block, each with `init` and `forward`. The same module runs
//! with gradients (the learner's copy, on an autodiff device) and without (the
//! generator's copy from [`Transformer::valid`]): burn 0.22 picks the backend
//! and autodiff from the tensors' device, not from a type parameter.
//!
//! Speed choices: Q, K and V come from one fused projection and the SwiGLU
//! gate and up projections from another; rotary angles and the attention
//! mask are built on the host (they are small and depend only on the padding
//! layout) once per forward and shared by all layers. On the flex CPU backend
//! the products, norms, SwiGLU and (without a cache) attention run as the
//! fused ops of [`crate::fused`], one autodiff node each; on other backends
//! (CUDA) the same function is composed from burn's tensor ops.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

use crate::cache::{KvCache, layout};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::fused::{self, AttentionLayout};

/// Token rows on the host: `tokens[b * len + t]`, with `valid` false at padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major token ids, `batch × len`.
    pub tokens: Vec<u32>,
    /// Row-major flags, `batch × len`: true for real tokens, false for padding.
    pub valid: Vec<bool>,
    /// Number of rows.
    pub batch: usize,
    /// Slots per row.
    pub len: usize,
}

impl TokenBatch {
    /// Left-pads `rows` with `pad` to the longest row (the sampler's layout:
    /// every row's last prompt token sits in the last slot).
    pub fn left_padded(rows: &[Vec<u32>], pad: u32) -> Self {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(rows.len() * len);
        let mut valid = Vec::with_capacity(rows.len() * len);
        for r in rows {
            let n = len - r.len();
            tokens.extend(std::iter::repeat_n(pad, n).chain(r.iter().copied()));
            valid.extend(std::iter::repeat_n(false, n).chain(std::iter::repeat_n(true, r.len())));
        }
        Self {
            tokens,
            valid,
            batch: rows.len(),
            len,
        }
    }

    /// Right-pads `rows` with `pad` (the learner's layout).
    pub fn right_padded(rows: &[Vec<u32>], pad: u32) -> Self {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(rows.len() * len);
        let mut valid = Vec::with_capacity(rows.len() * len);
        for r in rows {
            let n = len - r.len();
            tokens.extend(r.iter().copied().chain(std::iter::repeat_n(pad, n)));
            valid.extend(std::iter::repeat_n(true, r.len()).chain(std::iter::repeat_n(false, n)));
        }
        Self {
            tokens,
            valid,
            batch: rows.len(),
            len,
        }
    }
}

/// Per-forward inputs shared by all layers.
struct Context {
    /// Run the fused ops (flex backend).
    fused: bool,
    /// How attention gets its rotary tables and mask.
    attn: Attn,
}

/// Attention's per-forward inputs, for the path it takes.
enum Attn {
    /// The fused op (flex backend, no cache): host-side tables and padding.
    Fused(Arc<AttentionLayout>),
    /// burn's tensor ops (with a cache, or off the flex backend).
    Composed(Box<Composed>),
}

/// Rotary tables and the mask, uploaded for the composed attention.
struct Composed {
    /// Cosines of the rotary angles, each repeated for both halves of a head:
    /// `[batch, len, 1, head_dim]`
    cos: Tensor<4>,
    /// Sines, laid out like `cos`.
    sin: Tensor<4>,
    /// `[head_dim, head_dim]`: `x · rot` = `cat(−x₂, x₁)` for `x = cat(x₁, x₂)`.
    rot: Tensor<2>,
    /// `[batch, n_heads, len, past_len + len]`, true = masked; `None` when no
    /// slot is padding, so the attention kernel takes its unmasked path.
    mask: Option<Tensor<4, Bool>>,
    /// The mask as an additive bias (0, or −1e9 where masked) instead, on
    /// backends whose boolean mask is broken
    /// ([`crate::device::bool_attention_mask_inverted`]).
    bias: Option<Tensor<4>>,
    /// Causal masking by the kernel itself (no padding, no past).
    causal: bool,
}

/// The policy network. See the module docs for the architecture.
#[derive(Module, Debug)]
pub struct Transformer {
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// Output projection `[d_model, vocab]`; `None` when tied to `embed`.
    head: Option<Linear>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    max_len: usize,
    vocab_size: usize,
    /// Rotary inverse frequencies, one per pair of a head's channels.
    #[module(skip)]
    inv_freq: Vec<f64>,
}

/// Per-slot results of [`Transformer::score`].
pub struct Scores {
    /// Log-probs of the targets, `[batch, len]` (tracked for gradients).
    pub logp: Tensor<2>,
    /// Entropies, `[batch, len]` (tracked).
    pub entropy: Tensor<2>,
    best: Best,
}

/// Where [`Scores::argmax`] reads from.
enum Best {
    /// The fused head's id column, `[batch, len]`.
    Column(Tensor<2>),
    /// The logits, `[batch, len, vocab]`.
    Logits(Tensor<3>),
}

impl Scores {
    /// The most likely id per slot, row-major (a host copy).
    pub fn argmax(&self) -> Vec<u32> {
        match &self.best {
            Best::Column(ids) => ids
                .clone()
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 ids")
                .into_iter()
                .map(|v| v as u32)
                .collect(),
            Best::Logits(logits) => {
                let [b, t, _] = logits.dims();
                logits
                    .clone()
                    .argmax(2)
                    .reshape([b * t])
                    .into_data()
                    .try_into_vec_as::<i64>()
                    .expect("ids")
                    .into_iter()
                    .map(|v| v as u32)
                    .collect()
            }
        }
    }
}

/// Pre-norm block: `x + attn(norm(x))`, then `h + mlp(norm(h))`.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

/// Causal self-attention with a fused QKV projection, grouped-query when
/// `n_kv_heads < n_heads` (query head `i` reads key/value head
/// `i / (n_heads / n_kv_heads)`).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[d_model, (n_heads + 2·n_kv_heads) · head_dim]`, columns ordered
    /// Q | K | V, heads contiguous; its bias (when the config has one) in the
    /// same order.
    qkv: Linear,
    /// `[n_heads · head_dim, d_model]`
    out: Linear,
    /// RMSNorm over each head's queries (`[head_dim]`), before the rotation.
    q_norm: Option<RmsNorm>,
    /// The same for the keys.
    k_norm: Option<RmsNorm>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// SwiGLU MLP (Shazeer 2020): `down(silu(gate(x)) ⊙ up(x))`, gate and up in one weight.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d_model, 2 · d_ff]`, columns ordered gate | up.
    gate_up: Linear,
    /// `[d_ff, d_model]`
    down: Linear,
    d_ff: usize,
}

/// Normal(0, std) weights from a seeded stream, so init is reproducible and
/// independent of burn's global RNG.
struct Init {
    rng: ChaCha8Rng,
    device: Device,
    /// Zeros instead of normals: for weights about to be replaced.
    zeroed: bool,
}

impl Init {
    fn normal(&mut self, shape: [usize; 2], std: f64) -> Param<Tensor<2>> {
        use rand::Rng;
        let n = shape[0] * shape[1];
        if self.zeroed {
            return Param::from_data(TensorData::new(vec![0.0f32; n], shape), &self.device);
        }
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            // Box–Muller: two uniforms give two independent normals.
            let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let t = std::f64::consts::TAU * u2;
            v.push((r * t.cos() * std) as f32);
            v.push((r * t.sin() * std) as f32);
        }
        v.truncate(n);
        Param::from_data(TensorData::new(v, shape), &self.device)
    }

    fn linear(&mut self, d_in: usize, d_out: usize, std: f64) -> Linear {
        Linear {
            weight: self.normal([d_in, d_out], std),
            bias: None,
        }
    }

    /// A linear layer whose bias (when `bias`) starts at zero.
    fn biased(&mut self, d_in: usize, d_out: usize, std: f64, bias: bool) -> Linear {
        let mut l = self.linear(d_in, d_out, std);
        l.bias = bias
            .then(|| Param::from_data(TensorData::new(vec![0.0f32; d_out], [d_out]), &self.device));
        l
    }

    fn rms(&mut self, d: usize, eps: f64) -> RmsNorm {
        RmsNorm {
            gamma: Param::from_data(TensorData::new(vec![1.0f32; d], [d]), &self.device),
            epsilon: eps,
        }
    }
}

impl Transformer {
    /// Builds a model with freshly initialised weights on `device` (use an
    /// autodiff device for the learner). The config must be valid.
    pub fn init(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        Self::build(cfg, device, false)
    }

    /// The model of `cfg` with every weight zero, quick to build: for weights
    /// that are about to be loaded ([`crate::optim::map_weights`]).
    pub fn zeroed(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        Self::build(cfg, device, true)
    }

    fn build(cfg: &ModelConfig, device: &Device, zeroed: bool) -> Result<Self> {
        cfg.validate()?;
        let mut init = Init {
            rng: ChaCha8Rng::seed_from_u64(cfg.init_seed),
            device: device.clone(),
            zeroed,
        };
        let d = cfg.d_model;
        let std = cfg.init_std;
        let out_std = std / (2.0 * cfg.n_layers as f64).sqrt();
        let embed = Embedding {
            weight: init.normal([cfg.vocab_size, d], std),
        };
        let (h, kv, hd) = (cfg.n_heads, cfg.kv_heads(), cfg.head_dim());
        let blocks = (0..cfg.n_layers)
            .map(|_| Block {
                attn_norm: init.rms(d, cfg.norm_eps),
                attn: Attention {
                    qkv: init.biased(d, (h + 2 * kv) * hd, std, cfg.qkv_bias),
                    out: init.biased(h * hd, d, out_std, cfg.o_bias),
                    q_norm: cfg.qk_norm.then(|| init.rms(hd, cfg.norm_eps)),
                    k_norm: cfg.qk_norm.then(|| init.rms(hd, cfg.norm_eps)),
                    n_heads: h,
                    n_kv_heads: kv,
                    head_dim: hd,
                },
                mlp_norm: init.rms(d, cfg.norm_eps),
                mlp: Mlp {
                    gate_up: init.linear(d, 2 * cfg.d_ff(), std),
                    down: init.linear(cfg.d_ff(), d, out_std),
                    d_ff: cfg.d_ff(),
                },
            })
            .collect();
        let norm = init.rms(d, cfg.norm_eps);
        let head = (!cfg.tie_embeddings).then(|| init.linear(d, cfg.vocab_size, std));
        Ok(Self {
            embed,
            blocks,
            norm,
            head,
            n_heads: h,
            n_kv_heads: kv,
            head_dim: hd,
            max_len: cfg.max_len,
            vocab_size: cfg.vocab_size,
            inv_freq: cfg.inv_freq(),
        })
    }

    /// Number of blocks.
    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Longest sequence the model accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Device of the weights.
    pub fn device(&self) -> Device {
        self.embed.weight.val().device()
    }

    /// Hidden states after the final norm.
    ///
    /// With a cache, `batch` is appended after the cached slots and the cache
    /// grows by `batch.len` slots; without one, `batch` is the whole sequence.
    ///
    /// # Shapes
    /// - output: `[batch, len, d_model]`
    pub fn forward_hidden(
        &self,
        batch: &TokenBatch,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        self.check(batch, cache.as_deref())?;
        let device = self.device();
        let (b, t) = (batch.batch, batch.len);
        let (past_valid, next_pos): (&[Vec<bool>], &[usize]) = match cache.as_deref() {
            Some(c) => (&c.valid, &c.next_pos),
            None => (&[], &[]),
        };
        let past_len = past_valid.first().map_or(0, Vec::len);
        let (positions, mask, next) = layout(past_valid, next_pos, &batch.valid, b, t);
        let no_padding = batch.valid.iter().all(|&v| v) && past_valid.iter().flatten().all(|&v| v);
        let fused = fused::enabled(&device);
        let (cos, sin) = self.rotary_tables(&positions);
        // The fused op takes the whole sequence (no cache); biases and q/k
        // norms are applied to its input.
        let attn = if fused && cache.is_none() {
            Attn::Fused(Arc::new(AttentionLayout {
                batch: b,
                len: t,
                heads: self.n_heads,
                kv_heads: self.n_kv_heads,
                head_dim: self.head_dim,
                valid: batch.valid.clone(),
                cos,
                sin,
            }))
        } else {
            let dims = [b, t, past_len];
            Attn::Composed(Box::new(
                self.composed(cos, sin, mask, no_padding, dims, &device),
            ))
        };
        let ctx = Context { fused, attn };

        let ids: Vec<i32> = batch.tokens.iter().map(|&i| i as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let mut x = self.embed.forward(ids);
        for (i, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            // Under gradient checkpointing each block's input is kept and its
            // activations recomputed from it in the backward pass.
            if ctx.fused {
                x = fused::boundary(x);
            }
            x = block.forward(x, &ctx, layer_cache);
        }
        if ctx.fused {
            x = fused::boundary(x);
        }
        if let Some(c) = cache {
            for (row, v) in c.valid.iter_mut().zip(batch.valid.chunks(t)) {
                row.extend_from_slice(v);
            }
            c.next_pos = next;
        }
        Ok(norm(&self.norm, x, ctx.fused))
    }

    /// Projects hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// - hidden: `[batch, len, d_model]`
    /// - output: `[batch, len, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let fused = fused::enabled(&hidden.device());
        match &self.head {
            Some(head) => rows(head, hidden, fused),
            None => {
                let [b, t, d] = hidden.dims();
                let w = self.embed.weight.val().transpose();
                matmul(hidden.reshape([b * t, d]), w, fused).reshape([b, t, self.vocab_size])
            }
        }
    }

    /// The learner's view of a full forward pass: per slot, the log-prob of
    /// `targets[slot]` (the id that follows it) and the entropy under the
    /// logits divided by `temperature`, and the most likely id.
    ///
    /// On the flex backend the output head and the log-softmax run as one
    /// fused op over blocks of the logits (all rows × a slice of the
    /// vocabulary), so the `[batch, len, vocab]` logits never exist whole (forward or backward); elsewhere they are composed from the
    /// logits ([`crate::loss::token_logprobs`]). Both compute the same values
    /// and gradients.
    ///
    /// # Shapes
    /// - targets: `batch × len`; log-probs and entropy: `[batch, len]`
    pub fn score(&self, batch: &TokenBatch, targets: &[u32], temperature: f32) -> Result<Scores> {
        if targets.len() != batch.batch * batch.len {
            return Err(Error::InvalidBatch(format!(
                "{} targets for a {}×{} batch",
                targets.len(),
                batch.batch,
                batch.len
            )));
        }
        if let Some(&id) = targets.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::InvalidBatch(format!(
                "target id {id} is outside the vocabulary of {}",
                self.vocab_size
            )));
        }
        let hidden = self.forward_hidden(batch, None)?;
        let [b, t, d] = hidden.dims();
        // [d_model, vocab]: the head's weight, or the embedding's transposed
        // view (no copy) when tied; a biased head takes the composed path.
        let w = match &self.head {
            None => Some(self.embed.weight.val().transpose()),
            Some(head) if head.bias.is_none() => Some(head.weight.val()),
            Some(_) => None,
        };
        if let (true, Some(w)) = (fused::enabled(&hidden.device()), w) {
            let inv_t = if temperature != 1.0 && temperature > 0.0 {
                1.0 / temperature
            } else {
                1.0
            };
            let out = fused::head_scores(
                hidden.reshape([b * t, d]),
                w,
                Arc::new(targets.to_vec()),
                inv_t,
            );
            let column = |c: usize| out.clone().narrow(1, c, 1).reshape([b, t]);
            return Ok(Scores {
                logp: column(0),
                entropy: column(1),
                best: Best::Column(column(2)),
            });
        }
        let logits = self.logits(hidden);
        let (logp, entropy) = crate::loss::token_logprobs(logits.clone(), targets, temperature);
        Ok(Scores {
            logp,
            entropy,
            best: Best::Logits(logits),
        })
    }

    /// Logits for every slot of `batch` (see [`Transformer::forward_hidden`]).
    ///
    /// # Shapes
    /// - output: `[batch, len, vocab]`
    pub fn forward(&self, batch: &TokenBatch, cache: Option<&mut KvCache>) -> Result<Tensor<3>> {
        Ok(self.logits(self.forward_hidden(batch, cache)?))
    }

    fn check(&self, batch: &TokenBatch, cache: Option<&KvCache>) -> Result<()> {
        let n = batch.batch * batch.len;
        if batch.tokens.len() != n || batch.valid.len() != n || n == 0 {
            return Err(Error::InvalidBatch(format!(
                "{} tokens and {} flags for a {}×{} batch",
                batch.tokens.len(),
                batch.valid.len(),
                batch.batch,
                batch.len
            )));
        }
        if let Some((i, &id)) = batch
            .tokens
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= self.vocab_size)
        {
            return Err(Error::TokenOutOfRange {
                id,
                position: i % batch.len,
                vocab_size: self.vocab_size,
            });
        }
        let past = cache.map_or(0, KvCache::len);
        if let Some(c) = cache
            && c.batch() != batch.batch
        {
            return Err(Error::InvalidBatch(format!(
                "cache holds {} rows, batch has {}",
                c.batch(),
                batch.batch
            )));
        }
        if past + batch.len > self.max_len {
            return Err(Error::TooLong {
                len: past + batch.len,
                max_len: self.max_len,
            });
        }
        Ok(())
    }

    /// Cosines and sines of each slot's rotary angles, `[slots × head_dim]`,
    /// each repeated for both halves of a head.
    fn rotary_tables(&self, positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let inv_freq = &self.inv_freq;
        let hd = self.head_dim;
        let mut cos: Vec<f32> = Vec::with_capacity(positions.len() * hd);
        let mut sin: Vec<f32> = Vec::with_capacity(positions.len() * hd);
        for &p in positions {
            let (c, s): (Vec<f32>, Vec<f32>) = inv_freq
                .iter()
                .map(|f| {
                    let a = p as f64 * f;
                    (a.cos() as f32, a.sin() as f32)
                })
                .unzip();
            cos.extend(c.iter().chain(&c));
            sin.extend(s.iter().chain(&s));
        }
        (cos, sin)
    }

    /// Uploads the rotary tables and the mask for the composed attention.
    fn composed(
        &self,
        cos: Vec<f32>,
        sin: Vec<f32>,
        mask: Vec<bool>,
        no_padding: bool,
        [b, t, past_len]: [usize; 3],
        device: &Device,
    ) -> Composed {
        let hd = self.head_dim;
        let half = hd / 2;
        let shape = [b, t, 1, hd];
        let mut rot = vec![0.0f32; hd * hd];
        for j in 0..half {
            rot[(j + half) * hd + j] = -1.0;
            rot[j * hd + j + half] = 1.0;
        }
        // Without padding the mask is plain causal (or, for one new token
        // after a cache, empty): skip uploading it and let the kernel take its
        // unmasked or causal path.
        let upload = |mask: Vec<bool>| {
            Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, t, past_len + t]), device)
                .expand([b, self.n_heads, t, past_len + t])
        };
        let as_bias = crate::device::bool_attention_mask_inverted(device);
        let (mask, bias, causal) = match (no_padding, t, past_len) {
            (true, 1, _) => (None, None, false),
            (true, _, 0) => (None, None, true),
            _ if as_bias => {
                let bias: Vec<f32> = mask.iter().map(|&m| if m { -1e9 } else { 0.0 }).collect();
                let bias =
                    Tensor::<4>::from_data(TensorData::new(bias, [b, 1, t, past_len + t]), device)
                        .expand([b, self.n_heads, t, past_len + t]);
                (None, Some(bias), false)
            }
            _ => (Some(upload(mask)), None, false),
        };
        Composed {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            rot: Tensor::from_data(TensorData::new(rot, [hd, hd]), device),
            mask,
            bias,
            causal,
        }
    }
}

impl Block {
    /// # Shapes
    /// - x, output: `[batch, len, d_model]`
    fn forward(
        &self,
        x: Tensor<3>,
        ctx: &Context,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .attn
                .forward(norm(&self.attn_norm, x, ctx.fused), ctx, cache);
        h.clone()
            + self
                .mlp
                .forward(norm(&self.mlp_norm, h, ctx.fused), ctx.fused)
    }
}

/// Rotates channel pairs `(i, i + half)` by the position's angles (RoFormer
/// eq. 34, in the "rotate half" layout used by LLaMA):
/// `x ⊙ cos + rotate_half(x) ⊙ sin`, with `rotate_half(x) = x · rot` one
/// small product instead of narrowed halves (burn-flex's element-wise kernels
/// are slow on narrowed views). Exact: `rot` holds one ±1 per column.
///
/// # Shapes
/// - x, output: `[batch, len, heads, head_dim]`; cos, sin: `[batch, len, 1, head_dim]`
fn rotate(x: Tensor<4>, ctx: &Composed) -> Tensor<4> {
    let [b, t, h, hd] = x.dims();
    let half = x
        .clone()
        .reshape([b * t * h, hd])
        .matmul(ctx.rot.clone())
        .reshape([b, t, h, hd]);
    x * ctx.cos.clone() + half * ctx.sin.clone()
}

impl Attention {
    /// # Shapes
    /// - x, output: `[batch, len, d_model]`
    /// - cached keys/values: `[batch, n_kv_heads, past_len, head_dim]`, grown by `len`
    fn forward(
        &self,
        x: Tensor<3>,
        ctx: &Context,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let composed = match &ctx.attn {
            Attn::Fused(layout) => {
                debug_assert!(cache.is_none(), "the fused attention keeps no cache");
                // One product for Q | K | V, then rotary attention in one op.
                let mut qkv = linear_rows(&self.qkv, x.reshape([b * t, d]), true);
                if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
                    // Per-head norms of Q and K before the rotation; V as is.
                    let part = |at: usize, heads: usize| qkv.clone().narrow(1, at * hd, heads * hd);
                    let q = part(0, h).reshape([b * t * h, hd]);
                    let k = part(h, kv).reshape([b * t * kv, hd]);
                    let v = part(h + kv, kv);
                    qkv = Tensor::cat(
                        vec![
                            norm(qn, q, true).reshape([b * t, h * hd]),
                            norm(kn, k, true).reshape([b * t, kv * hd]),
                            v,
                        ],
                        1,
                    );
                }
                let y = fused::attention(qkv.reshape([b, t, (h + 2 * kv) * hd]), layout.clone());
                return rows(&self.out, y, true);
            }
            Attn::Composed(c) => c,
        };
        // Q, K and V from column blocks of the fused weight (strided views,
        // no copy), each contiguous: [b·t, d] → [b, t, heads, hd], normed
        // per head where the config says so, rotated, then viewed as
        // [b, heads, t, hd].
        let x = x.reshape([b * t, d]);
        let w = self.qkv.weight.val();
        let bias = self.qkv.bias.as_ref().map(Param::val);
        let project = |first: usize, heads: usize| {
            let (at, n) = (first * hd, heads * hd);
            let mut y = matmul(x.clone(), w.clone().narrow(1, at, n), ctx.fused);
            if let Some(bias) = &bias {
                y = y + bias.clone().narrow(0, at, n).unsqueeze_dim(0);
            }
            y.reshape([b, t, heads, hd])
        };
        let (mut q, mut k) = (project(0, h), project(h, kv));
        let v = project(h + kv, kv).swap_dims(1, 2);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = norm(qn, q, ctx.fused);
            k = norm(kn, k, ctx.fused);
        }
        let q = rotate(q, composed).swap_dims(1, 2);
        let k = rotate(k, composed).swap_dims(1, 2);
        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let y = attention(
            q,
            repeat_heads(k, h / kv),
            repeat_heads(v, h / kv),
            composed.mask.clone(),
            composed.bias.clone(),
            AttentionModuleOptions {
                is_causal: composed.causal,
                ..Default::default()
            },
        );
        // [b, h, t, hd] → [b, t, h, hd] → [b, t, h·hd]
        rows(
            &self.out,
            y.swap_dims(1, 2).reshape([b, t, h * hd]),
            ctx.fused,
        )
    }
}

/// Each key/value head repeated for the `group` query heads it serves
/// (heads `i·group .. (i+1)·group` read head `i`).
///
/// # Shapes
/// - x: `[batch, kv_heads, len, head_dim]`, output: `[batch, kv_heads · group, len, head_dim]`
fn repeat_heads(x: Tensor<4>, group: usize) -> Tensor<4> {
    if group == 1 {
        return x;
    }
    let [b, kv, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, group)
        .reshape([b, kv * group, t, hd])
}

impl Mlp {
    /// # Shapes
    /// - x, output: `[batch, len, d_model]`
    fn forward(&self, x: Tensor<3>, fused: bool) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let x = x.reshape([b * t, d]);
        if fused {
            // One product for gate | up, then SwiGLU in one op.
            let gu = fused::matmul(x, self.gate_up.weight.val());
            return rows(
                &self.down,
                fused::swiglu(gu).reshape([b, t, self.d_ff]),
                true,
            );
        }
        // Two products against the column halves of the fused weight (strided
        // views, no copy), so gate and up come out contiguous: burn-flex's
        // element-wise kernels take a slow per-element index path on a
        // narrowed view of one fused output.
        let w = self.gate_up.weight.val();
        let gate = x.clone().matmul(w.clone().narrow(1, 0, self.d_ff));
        let up = x.matmul(w.narrow(1, self.d_ff, self.d_ff));
        rows(
            &self.down,
            (silu(gate) * up).reshape([b, t, self.d_ff]),
            false,
        )
    }
}

/// `linear` applied to every position as one `[batch·len, d_in] × [d_in, d_out]`
/// matrix product. burn keeps a `[batch, len, d_in]` input batched when `len`
/// is a multiple of its row tile, which on the CPU backend runs one small GEMM
/// per sequence (each packing the weight again); one tall GEMM is faster, and
/// so are its two backward products.
///
/// # Shapes
/// - x: `[batch, len, d_in]`, output: `[batch, len, d_out]`
fn rows(linear: &Linear, x: Tensor<3>, fused: bool) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = linear_rows(linear, x.reshape([b * t, d]), fused);
    let d_out = y.dims()[1];
    y.reshape([b, t, d_out])
}

/// `x · w (+ bias)`, the product fused on the flex backend.
///
/// # Shapes
/// - x: `[n, d_in]`, output: `[n, d_out]`
fn linear_rows(linear: &Linear, x: Tensor<2>, fused: bool) -> Tensor<2> {
    if !fused {
        return linear.forward(x);
    }
    let y = fused::matmul(x, linear.weight.val());
    match &linear.bias {
        Some(bias) => y + bias.val().unsqueeze_dim(0),
        None => y,
    }
}

/// `x · w`, fused on the flex backend.
///
/// # Shapes
/// - x: `[n, k]`, w: `[k, m]`, output: `[n, m]`
fn matmul(x: Tensor<2>, w: Tensor<2>, fused: bool) -> Tensor<2> {
    if fused {
        fused::matmul(x, w)
    } else {
        x.matmul(w)
    }
}

/// RMSNorm over the last axis, fused on the flex backend.
///
/// # Shapes
/// - x, output: `[.., d]`
fn norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>, fused: bool) -> Tensor<D> {
    if fused {
        fused::rms_norm(x, norm.gamma.val(), norm.epsilon)
    } else {
        norm.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{load_weights, weights};
    use crate::testutil::{host3, jitter_vectors, tiny_config, tiny_model};

    /// Grouped-query attention is multi-head attention whose key/value heads
    /// are each repeated for the query heads of their group (HF's
    /// `repeat_kv`): a GQA model and the MHA model with its K/V columns (and
    /// biases) so repeated give the same logits. The MHA model runs the fused
    /// attention, the GQA one the composed path.
    #[test]
    fn grouped_query_attention_is_multi_head_attention_with_repeated_key_value_heads() {
        let gqa_cfg = ModelConfig {
            n_heads: 4,
            n_kv_heads: Some(2),
            qkv_bias: true,
            ..tiny_config()
        };
        let (h, kv, hd) = (4, 2, gqa_cfg.head_dim());
        let gqa = jitter_vectors(Transformer::init(&gqa_cfg, &Device::flex()).unwrap());
        let mha_cfg = ModelConfig {
            n_kv_heads: None,
            ..gqa_cfg.clone()
        };
        let mha = Transformer::init(&mha_cfg, &Device::flex()).unwrap();
        let mut w = weights(&gqa);
        for t in &mut w {
            let cols = *t.shape.last().unwrap();
            if cols != (h + 2 * kv) * hd {
                continue;
            }
            // Q as it is; then K and V with head i repeated for heads
            // i·g .. (i+1)·g.
            let g = h / kv;
            let order: Vec<usize> = (0..h * hd)
                .chain((0..h * hd).map(|c| h * hd + (c / hd / g) * hd + c % hd))
                .chain((0..h * hd).map(|c| (h + kv) * hd + (c / hd / g) * hd + c % hd))
                .collect();
            t.data = t
                .data
                .chunks(cols)
                .flat_map(|row| order.iter().map(|&c| row[c]))
                .collect();
            *t.shape.last_mut().unwrap() = 3 * h * hd;
        }
        let mha = load_weights(mha, &w).unwrap();
        let batch = TokenBatch::left_padded(&[vec![1, 5, 6, 7, 8], vec![1, 4], vec![3, 3, 10]], 0);
        let (a, _) = host3(gqa.forward(&batch, None).unwrap());
        let (b, _) = host3(mha.forward(&batch, None).unwrap());
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "GQA and repeated MHA differ by {d}");
    }

    /// The padding mask passed as an additive bias (the path taken where a
    /// backend's boolean mask is broken, burn-tch) gives the boolean mask's
    /// logits, with a cache and without.
    #[test]
    fn the_mask_as_a_bias_equals_the_boolean_mask() {
        let cfg = ModelConfig {
            n_heads: 4,
            n_kv_heads: Some(2),
            ..tiny_config()
        };
        let model = jitter_vectors(Transformer::init(&cfg, &Device::flex()).unwrap());
        let batch = TokenBatch::left_padded(&[vec![1, 5, 6, 7, 8], vec![1, 4], vec![3, 3, 10]], 0);
        let run = |as_bias: bool| {
            crate::device::MASK_AS_BIAS.set(as_bias);
            let full = host3(model.forward(&batch, None).unwrap()).0;
            let mut cache = crate::cache::KvCache::new(model.n_layers(), batch.batch);
            model.forward(&batch, Some(&mut cache)).unwrap();
            let next = TokenBatch {
                tokens: vec![9, 9, 9],
                valid: vec![true; 3],
                batch: 3,
                len: 1,
            };
            let step = host3(model.forward(&next, Some(&mut cache)).unwrap()).0;
            crate::device::MASK_AS_BIAS.set(false);
            (full, step)
        };
        let (mask, bias) = (run(false), run(true));
        let valid = |i: usize| batch.valid[i / model.vocab_size()];
        let d = (0..mask.0.len())
            .filter(|&i| valid(i))
            .map(|i| (mask.0[i] - bias.0[i]).abs())
            .fold(0.0, f32::max);
        let d_step = mask
            .1
            .iter()
            .zip(&bias.1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            d < 1e-5 && d_step < 1e-5,
            "bias vs mask: {d}, after the cache {d_step}"
        );
    }

    /// The rotation applied through `rot` and the full-width tables equals
    /// RoFormer's per-pair rotation computed directly.
    #[test]
    fn rotary_rotates_each_channel_pair_by_its_positions_angle() {
        let model = tiny_model();
        let device = model.device();
        let (b, t, h, hd) = (2, 3, model.n_heads, model.head_dim);
        let positions: Vec<usize> = vec![0, 1, 2, 5, 6, 7];
        let (cos, sin) = model.rotary_tables(&positions);
        let ctx = model.composed(cos, sin, Vec::new(), true, [b, t, 0], &device);
        let x: Vec<f32> = (0..b * t * h * hd)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let input = Tensor::<4>::from_data(TensorData::new(x.clone(), [b, t, h, hd]), &device);
        let got = rotate(input, &ctx)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let half = hd / 2;
        for (row, &p) in positions.iter().enumerate() {
            for head in 0..h {
                let at = (row * h + head) * hd;
                for i in 0..half {
                    let theta = 10_000f64.powf(-2.0 * i as f64 / hd as f64);
                    let (s, c) = (
                        (p as f64 * theta).sin() as f32,
                        (p as f64 * theta).cos() as f32,
                    );
                    let (x1, x2) = (x[at + i], x[at + i + half]);
                    assert!((got[at + i] - (x1 * c - x2 * s)).abs() < 1e-5);
                    assert!((got[at + i + half] - (x2 * c + x1 * s)).abs() < 1e-5);
                }
            }
        }
    }
}

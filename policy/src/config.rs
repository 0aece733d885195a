//! Typed configs for the model, the optimizer and the compute device.
//!
//! Each is a serde type with `deny_unknown_fields`, so a run config can embed it
//! as a table (`[model]`, `[optimizer]`, `[compute]`) and a typo fails loudly.
//! `validate` checks every field and reports all problems at once, each named by
//! its dotted path (`model.n_heads`), so the loader can prefix file:line.

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldError, Result};

/// Collects field errors under a table prefix.
#[derive(Default)]
pub(crate) struct Problems {
    prefix: &'static str,
    errors: Vec<FieldError>,
}

impl Problems {
    pub(crate) fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            errors: Vec::new(),
        }
    }

    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.errors.push(FieldError {
                field: format!("{}.{field}", self.prefix),
                message: message(),
            });
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidConfig(self.errors))
        }
    }
}

/// Shape of the decoder-only transformer (`[model]` table).
///
/// Memory and time grow with `n_layers × d_model²` (weights) and with
/// `max_len²` (attention scores); the defaults are the bench model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size; must cover the tokenizer's ids (specials included).
    pub vocab_size: usize,
    /// Width of the residual stream. Must be a multiple of `n_heads`, and
    /// `d_model / n_heads` must be even (rotary embeddings rotate pairs).
    #[serde(default = "defaults::d_model")]
    pub d_model: usize,
    /// Number of transformer blocks.
    #[serde(default = "defaults::n_layers")]
    pub n_layers: usize,
    /// Attention heads per block.
    #[serde(default = "defaults::n_heads")]
    pub n_heads: usize,
    /// Hidden width of the SwiGLU MLP; `None` means `4 × d_model`.
    #[serde(default)]
    pub d_ff: Option<usize>,
    /// Longest sequence (prompt + response, in tokens) the model accepts.
    #[serde(default = "defaults::max_len")]
    pub max_len: usize,
    /// Share the input embedding with the output projection (fewer weights,
    /// usually better for small models).
    #[serde(default = "defaults::tie_embeddings")]
    pub tie_embeddings: bool,
    /// Base of the rotary frequencies (RoFormer's 10000).
    #[serde(default = "defaults::rope_theta")]
    pub rope_theta: f64,
    /// Epsilon inside RMSNorm's square root.
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f64,
    /// Standard deviation of the normal initialisation. Output projections of
    /// each block are scaled by `1/sqrt(2·n_layers)` (GPT-2).
    #[serde(default = "defaults::init_std")]
    pub init_std: f64,
    /// Seed of the weight initialisation: same seed, same weights.
    #[serde(default)]
    pub init_seed: u64,
    /// Key/value heads (grouped-query attention, Ainslie et al. 2023): each
    /// serves `n_heads / n_kv_heads` query heads. `None` means `n_heads`.
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// Width of one head; `None` means `d_model / n_heads`. Must be even.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Biases on the query, key and value projections (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// Bias on the attention's output projection.
    #[serde(default)]
    pub o_bias: bool,
    /// RMSNorm over each head's queries and keys before the rotation (Qwen3).
    #[serde(default)]
    pub qk_norm: bool,
    /// Llama-3's scaling of the rotary frequencies; `None` for plain ones.
    #[serde(default)]
    pub rope_scaling: Option<Llama3Rope>,
}

/// Llama-3's rotary scaling (`rope_type = "llama3"`): long wavelengths are
/// slowed by `factor`, short ones kept, the band between blended smoothly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

impl Llama3Rope {
    /// One inverse frequency after Llama-3's scaling.
    pub fn scale(&self, inv_freq: f64) -> f64 {
        let low_wavelen = self.original_max_position_embeddings / self.low_freq_factor;
        let high_wavelen = self.original_max_position_embeddings / self.high_freq_factor;
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < high_wavelen {
            inv_freq
        } else if wavelen > low_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (self.original_max_position_embeddings / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

mod defaults {
    pub fn d_model() -> usize {
        128
    }
    pub fn n_layers() -> usize {
        2
    }
    pub fn n_heads() -> usize {
        4
    }
    pub fn max_len() -> usize {
        256
    }
    pub fn tie_embeddings() -> bool {
        true
    }
    pub fn rope_theta() -> f64 {
        10_000.0
    }
    pub fn norm_eps() -> f64 {
        1e-5
    }
    pub fn init_std() -> f64 {
        0.02
    }
    pub fn lr() -> f64 {
        1e-3
    }
    pub fn beta1() -> f64 {
        0.9
    }
    pub fn beta2() -> f64 {
        0.99
    }
    pub fn eps() -> f64 {
        1e-8
    }
    pub fn max_grad_norm() -> f64 {
        1.0
    }
}

impl ModelConfig {
    /// A config with the defaults for everything but the vocabulary.
    pub fn new(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            d_model: defaults::d_model(),
            n_layers: defaults::n_layers(),
            n_heads: defaults::n_heads(),
            d_ff: None,
            max_len: defaults::max_len(),
            tie_embeddings: defaults::tie_embeddings(),
            rope_theta: defaults::rope_theta(),
            norm_eps: defaults::norm_eps(),
            init_std: defaults::init_std(),
            init_seed: 0,
            n_kv_heads: None,
            head_dim: None,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            rope_scaling: None,
        }
    }

    /// The MLP hidden width actually used.
    pub fn d_ff(&self) -> usize {
        self.d_ff.unwrap_or(4 * self.d_model)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Key/value heads actually used.
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// The rotary inverse frequencies, one per pair of a head's dimensions
    /// (`head_dim / 2`), scaled where the config says so.
    pub fn inv_freq(&self) -> Vec<f64> {
        let hd = self.head_dim();
        (0..hd / 2)
            .map(|i| self.rope_theta.powf(-2.0 * i as f64 / hd as f64))
            .map(|f| self.rope_scaling.map_or(f, |s| s.scale(f)))
            .collect()
    }

    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("model");
        p.check(self.vocab_size >= 4, "vocab_size", || {
            format!(
                "must be ≥ 4 (3 special tokens + 1), got {}",
                self.vocab_size
            )
        });
        p.check(self.d_model > 0, "d_model", || "must be > 0".into());
        p.check(self.n_layers > 0, "n_layers", || "must be > 0".into());
        p.check(self.n_heads > 0, "n_heads", || "must be > 0".into());
        if self.n_heads > 0 && self.d_model > 0 {
            match self.head_dim {
                None => {
                    p.check(self.d_model.is_multiple_of(self.n_heads), "n_heads", || {
                        format!(
                            "must divide d_model ({}) unless head_dim is given, got {}",
                            self.d_model, self.n_heads
                        )
                    });
                    p.check(self.head_dim().is_multiple_of(2), "d_model", || {
                        format!(
                            "d_model / n_heads must be even for rotary embeddings, got {}",
                            self.head_dim()
                        )
                    });
                }
                Some(hd) => p.check(hd > 0 && hd.is_multiple_of(2), "head_dim", || {
                    format!("must be even and > 0 for rotary embeddings, got {hd}")
                }),
            }
            if let Some(kv) = self.n_kv_heads {
                p.check(
                    kv > 0 && self.n_heads.is_multiple_of(kv),
                    "n_kv_heads",
                    || format!("must divide n_heads ({}), got {kv}", self.n_heads),
                );
            }
        }
        if let Some(s) = self.rope_scaling {
            p.check(
                s.factor.is_finite() && s.factor >= 1.0,
                "rope_scaling.factor",
                || format!("must be ≥ 1, got {}", s.factor),
            );
            p.check(
                s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor,
                "rope_scaling.high_freq_factor",
                || {
                    format!(
                        "must exceed low_freq_factor ({}) > 0, got {}",
                        s.low_freq_factor, s.high_freq_factor
                    )
                },
            );
            p.check(
                s.original_max_position_embeddings.is_finite()
                    && s.original_max_position_embeddings > 0.0,
                "rope_scaling.original_max_position_embeddings",
                || "must be > 0".into(),
            );
        }
        p.check(self.d_ff.is_none_or(|d| d > 0), "d_ff", || {
            "must be > 0".into()
        });
        p.check(self.max_len >= 2, "max_len", || {
            format!("must be ≥ 2, got {}", self.max_len)
        });
        p.check(
            self.rope_theta.is_finite() && self.rope_theta > 1.0,
            "rope_theta",
            || format!("must be a finite number > 1, got {}", self.rope_theta),
        );
        p.check(
            self.norm_eps.is_finite() && self.norm_eps > 0.0,
            "norm_eps",
            || format!("must be > 0, got {}", self.norm_eps),
        );
        p.check(
            self.init_std.is_finite() && self.init_std > 0.0,
            "init_std",
            || format!("must be > 0, got {}", self.init_std),
        );
        p.finish()
    }
}

/// AdamW with linear warmup and global-norm gradient clipping (`[optimizer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached after `warmup_steps` and held constant.
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Steps of linear warmup from `lr / warmup_steps` up to `lr`; 0 disables.
    #[serde(default)]
    pub warmup_steps: u64,
    /// First-moment decay.
    #[serde(default = "defaults::beta1")]
    pub beta1: f64,
    /// Second-moment decay.
    #[serde(default = "defaults::beta2")]
    pub beta2: f64,
    /// Added to the root of the second moment.
    #[serde(default = "defaults::eps")]
    pub eps: f64,
    /// Decoupled weight decay (Loshchilov & Hutter), applied to matrices only
    /// (not to norm gains).
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the gradient so that its global L2 norm over all parameters is at
    /// most this; 0 disables clipping (TOML has no null).
    #[serde(default = "defaults::max_grad_norm")]
    pub max_grad_norm: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: defaults::lr(),
            warmup_steps: 0,
            beta1: defaults::beta1(),
            beta2: defaults::beta2(),
            eps: defaults::eps(),
            weight_decay: 0.0,
            max_grad_norm: defaults::max_grad_norm(),
        }
    }
}

impl OptimizerConfig {
    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("optimizer");
        p.check(self.lr.is_finite() && self.lr > 0.0, "lr", || {
            format!("must be > 0, got {}", self.lr)
        });
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            p.check((0.0..1.0).contains(&v), name, || {
                format!("must be in [0, 1), got {v}")
            });
        }
        p.check(self.eps.is_finite() && self.eps > 0.0, "eps", || {
            format!("must be > 0, got {}", self.eps)
        });
        p.check(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight_decay",
            || format!("must be ≥ 0, got {}", self.weight_decay),
        );
        p.check(
            self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
            "max_grad_norm",
            || format!("must be ≥ 0 (0 disables), got {}", self.max_grad_norm),
        );
        p.finish()
    }

    /// Learning rate of optimizer step `step` (1-based): linear warmup, then constant.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 || step >= self.warmup_steps {
            self.lr
        } else {
            self.lr * step.max(1) as f64 / self.warmup_steps as f64
        }
    }
}

/// Where burn runs (`[compute]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeConfig {
    /// `"cpu"` (burn's flex backend), `"cuda"` / `"cuda:N"` (needs the
    /// `cuda` cargo feature), or `"libtorch"` (that feature's backend on the
    /// CPU, to check its code path without a GPU).
    #[serde(default = "ComputeConfig::default_device")]
    pub device: String,
    /// Threads of the CPU backend's pool; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Gradient checkpointing in the learner (burn's balanced strategy):
    /// activations of memory-bound ops are recomputed in the backward pass
    /// instead of kept, trading compute for peak memory.
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            device: Self::default_device(),
            threads: 0,
            gradient_checkpointing: false,
        }
    }
}

impl ComputeConfig {
    fn default_device() -> String {
        "cpu".into()
    }

    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("compute");
        if let Err(Error::Device(msg)) = crate::device::parse(&self.device) {
            p.check(false, "device", || msg);
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_every_bad_field() {
        let mut c = ModelConfig::new(64);
        c.n_heads = 3;
        c.max_len = 1;
        let Err(Error::InvalidConfig(errs)) = c.validate() else {
            panic!("expected invalid config");
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"model.n_heads"), "{fields:?}");
        assert!(fields.contains(&"model.max_len"), "{fields:?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ModelConfig>(r#"{"vocab_size": 10, "d_modle": 4}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("d_modle"), "{err}");
        let err = serde_json::from_str::<OptimizerConfig>(r#"{"learning_rate": 1.0}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn warmup_is_linear_then_constant() {
        let c = OptimizerConfig {
            lr: 1.0,
            warmup_steps: 4,
            ..Default::default()
        };
        let lrs: Vec<f64> = (1..=6).map(|s| c.lr_at(s)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn optimizer_validation_names_fields() {
        let c = OptimizerConfig {
            lr: -1.0,
            beta2: 1.0,
            max_grad_norm: -1.0,
            ..Default::default()
        };
        let msg = c.validate().unwrap_err().to_string();
        for f in ["optimizer.lr", "optimizer.beta2", "optimizer.max_grad_norm"] {
            assert!(msg.contains(f), "{msg}");
        }
    }
}

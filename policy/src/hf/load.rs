//! Loading a Hugging Face checkpoint's weights into the policy's
//! [`Transformer`].
//!
//! The checkpoint's tensors are read from memory-mapped safetensors files
//! (one, or the shards of an index) one parameter at a time, converted to f32
//! (from f32, f16 or bf16) and laid out as the built-in model keeps them:
//! linear weights transposed to `[in, out]`, the q/k/v projections side by
//! side in one `[hidden, (heads + 2·kv_heads)·head_dim]` weight (biases
//! likewise), gate and up in one `[hidden, 2·intermediate]`. The header check
//! ([`weights::check`]) runs first, so every problem with the checkpoint is
//! reported at once before anything is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::weights::{self, Stored};
use super::{HfConfig, HfError};
use crate::config::ModelConfig;
use crate::model::Transformer;
use crate::optim::{HostTensor, map_weights};

/// A checkpoint directory whose config and tensor headers have been read and
/// checked.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: HfConfig,
    stored: BTreeMap<String, Stored>,
}

/// How one parameter of the built-in model is made from checkpoint tensors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// A vector or the embedding, as stored.
    Plain(String),
    /// Linear weights `[out, in]`, each transposed to `[in, out]` and placed
    /// side by side (one name: a plain transpose).
    Columns(Vec<String>),
    /// Biases placed end to end.
    Concat(Vec<String>),
}

impl Checkpoint {
    /// Reads `dir/config.json` and the safetensors headers, and checks that
    /// the tensors are exactly what the config calls for.
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        let config = HfConfig::read(dir)?;
        let stored = weights::inventory(dir)?;
        weights::check(&config, &stored, dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            stored,
        })
    }

    /// The built-in model's config for this checkpoint.
    pub fn model_config(&self) -> ModelConfig {
        self.config.model_config()
    }

    /// The model with the checkpoint's weights, on `device` (an autodiff one
    /// for training).
    pub fn load(&self, device: &Device) -> Result<Transformer, HfError> {
        self.load_with(&self.model_config(), device)
    }

    /// As [`Checkpoint::load`], into a model of `cfg`: the checkpoint's own
    /// config with run-time settings changed (a shorter `max_len`).
    pub fn load_with(&self, cfg: &ModelConfig, device: &Device) -> Result<Transformer, HfError> {
        let model = Transformer::zeroed(cfg, device).map_err(|e| self.fields(e.to_string()))?;
        let plan = plan(&self.config);
        let mut files = Files::default();
        let (model, n) = map_weights(model, |i, shape| {
            let Some(source) = plan.get(i) else {
                return Err(crate::error::Error::Mismatch(format!(
                    "the model has more weights than the {} the checkpoint maps",
                    plan.len()
                )));
            };
            self.build(source, shape, &mut files)
                .map_err(|e| crate::error::Error::Mismatch(e.to_string()))
        })
        .map_err(|e| self.fields(e.to_string()))?;
        if n != plan.len() {
            return Err(self.fields(format!(
                "the model has {n} weights, the checkpoint maps {}",
                plan.len()
            )));
        }
        Ok(model)
    }

    fn fields(&self, problem: String) -> HfError {
        HfError::Fields {
            path: self.dir.clone(),
            problems: vec![problem],
        }
    }

    /// Parameter `shape` from `source`.
    fn build(
        &self,
        source: &Source,
        shape: &[usize],
        files: &mut Files,
    ) -> Result<HostTensor, HfError> {
        let stored = |name: &str| {
            self.stored
                .get(name)
                .ok_or_else(|| self.fields(format!("{name}: missing")))
        };
        let data = match source {
            Source::Plain(name) => files.read(stored(name)?)?,
            Source::Concat(names) => {
                let mut out = Vec::new();
                for n in names {
                    out.extend(files.read(stored(n)?)?);
                }
                out
            }
            Source::Columns(names) => {
                // Each [out_j, in] block transposed into columns of [in, Σ out_j].
                let d_in = *shape.first().unwrap_or(&0);
                let total: usize = shape.get(1).copied().unwrap_or(0);
                let mut out = vec![0.0f32; d_in * total];
                let mut at = 0;
                for n in names {
                    let t = stored(n)?;
                    let [rows, cols] = t.shape[..] else {
                        return Err(self.fields(format!("{n}: not a matrix")));
                    };
                    if cols != d_in || at + rows > total {
                        return Err(self.fields(format!(
                            "{n}: shape {:?} does not fit the model's {shape:?}",
                            t.shape
                        )));
                    }
                    let block = files.read(t)?;
                    for (r, row) in block.chunks_exact(cols).enumerate() {
                        for (c, &v) in row.iter().enumerate() {
                            out[c * total + at + r] = v;
                        }
                    }
                    at += rows;
                }
                out
            }
        };
        Ok(HostTensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

/// The model's parameters in visiting order (embedding; per block the
/// attention norm, q|k|v weight and bias, output weight and bias, q and k
/// norms, the MLP norm, gate|up and down; the final norm; the head when
/// untied), each with the checkpoint tensors it is made of.
pub(crate) fn plan(cfg: &HfConfig) -> Vec<Source> {
    let plain = |n: String| Source::Plain(n);
    let mut out = vec![plain("model.embed_tokens.weight".into())];
    for l in 0..cfg.num_hidden_layers {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        out.push(plain(p("input_layernorm.weight")));
        out.push(Source::Columns(
            ["q", "k", "v"]
                .map(|x| p(&format!("self_attn.{x}_proj.weight")))
                .into(),
        ));
        if cfg.qkv_bias {
            out.push(Source::Concat(
                ["q", "k", "v"]
                    .map(|x| p(&format!("self_attn.{x}_proj.bias")))
                    .into(),
            ));
        }
        out.push(Source::Columns(vec![p("self_attn.o_proj.weight")]));
        if cfg.o_bias {
            out.push(plain(p("self_attn.o_proj.bias")));
        }
        if cfg.qk_norm {
            out.push(plain(p("self_attn.q_norm.weight")));
            out.push(plain(p("self_attn.k_norm.weight")));
        }
        out.push(plain(p("post_attention_layernorm.weight")));
        out.push(Source::Columns(vec![
            p("mlp.gate_proj.weight"),
            p("mlp.up_proj.weight"),
        ]));
        out.push(Source::Columns(vec![p("mlp.down_proj.weight")]));
    }
    out.push(plain("model.norm.weight".into()));
    if !cfg.tie_word_embeddings {
        out.push(Source::Columns(vec!["lm_head.weight".into()]));
    }
    out
}

/// The checkpoint's files, each memory-mapped once, with where its data
/// starts.
#[derive(Default)]
struct Files {
    open: BTreeMap<PathBuf, (memmap2::Mmap, usize)>,
}

impl Files {
    /// One tensor's elements as f32.
    fn read(&mut self, t: &Stored) -> Result<Vec<f32>, HfError> {
        let unreadable = |reason: String| HfError::Unreadable {
            path: t.file.clone(),
            reason,
        };
        if !self.open.contains_key(&t.file) {
            let f = std::fs::File::open(&t.file).map_err(|e| unreadable(e.to_string()))?;
            // SAFETY: the map is read-only and private; a checkpoint changed
            // under a running load is the caller's race, as with any reader.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| unreadable(e.to_string()))?;
            let n = map
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| unreadable("truncated".into()))?;
            let start = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(8))
                .ok_or_else(|| unreadable("header length out of range".into()))?;
            self.open.insert(t.file.clone(), (map, start));
        }
        let (map, data) = &self.open[&t.file];
        let range = usize::try_from(t.start)
            .ok()
            .zip(usize::try_from(t.end).ok())
            .and_then(|(a, b)| Some(data.checked_add(a)?..data.checked_add(b)?));
        let bytes = range.and_then(|r| map.get(r)).ok_or_else(|| {
            unreadable(format!(
                "truncated: bytes {}..{} of the data are missing",
                t.start, t.end
            ))
        })?;
        to_f32(&t.dtype, bytes)
            .ok_or_else(|| unreadable(format!("cannot read {} as floats", t.dtype)))
    }
}

/// Little-endian elements of `dtype` as f32 (`None` for other dtypes).
pub fn to_f32(dtype: &str, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

//! Hugging Face checkpoints: where one lives (a directory, or a model id in the
//! offline Hugging Face cache) and what its `config.json` says about the math.
//!
//! [`HfConfig::read`] accepts the decoder-only families gradus trains
//! (`Qwen2ForCausalLM` — Qwen2, Qwen2.5, R1-Distill-Qwen —, `Qwen3ForCausalLM`
//! and `LlamaForCausalLM`) in both the transformers 4.x layout (`rope_theta`,
//! `rope_scaling`, `torch_dtype`) and the 5.x one (`rope_parameters`, `dtype`).
//! Every field that changes the computation is read; a setting gradus does not
//! implement (a sliding window in use, a rope scaling other than Llama-3's, an
//! activation other than SiLU, biased MLPs) is refused by name rather than
//! silently computed differently. All problems of a config are reported at
//! once, each naming the file and the field.

use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use serde_json::{Map, Value};

pub mod chat;
pub mod export;
pub mod load;
#[cfg(test)]
mod parity;
pub mod tokenizer;
pub mod weights;

/// The model families whose checkpoints load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Qwen2 and Qwen2.5 (and the R1-Distill-Qwen models): q/k/v projections
    /// with biases, grouped-query attention.
    Qwen2,
    /// Qwen3: RMSNorm on each head's queries and keys, no biases.
    Qwen3,
    /// Llama (Llama-3's `llama3` rope scaling included).
    Llama,
}

impl Architecture {
    /// Every supported family: its `architectures` entry and `model_type`.
    pub const ALL: [(Architecture, &'static str, &'static str); 3] = [
        (Architecture::Qwen2, "Qwen2ForCausalLM", "qwen2"),
        (Architecture::Qwen3, "Qwen3ForCausalLM", "qwen3"),
        (Architecture::Llama, "LlamaForCausalLM", "llama"),
    ];

    /// The `model_type` name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, ..)| *a == self)
            .map_or("?", |(_, _, m)| m)
    }

    fn supported() -> String {
        Self::ALL
            .iter()
            .map(|(_, class, model_type)| format!("{class} ({model_type})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub use crate::config::Llama3Rope;

/// The floating-point type the checkpoint's weights are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

/// What a checkpoint's `config.json` says about the model's computation.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); equal to the attention
    /// heads when the config leaves it out.
    pub num_key_value_heads: usize,
    /// Width of one head: `hidden_size / num_attention_heads` unless given.
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// `None`: plain rotary frequencies.
    pub rope_scaling: Option<Llama3Rope>,
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2 always; Llama when
    /// `attention_bias` is set).
    pub qkv_bias: bool,
    /// Bias on the attention's output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// RMSNorm over each head's queries and keys before the rotation (Qwen3).
    pub qk_norm: bool,
    /// The dtype of the stored weights (`torch_dtype` or `dtype`; f32 when
    /// absent).
    pub dtype: Dtype,
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (`eos_token_id`, a number or a list).
    pub eos_token_ids: Vec<u32>,
}

/// A checkpoint that cannot be used, with every reason.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// The config file could not be read or is not JSON.
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// The config names a model gradus does not implement.
    #[error(
        "{}: unsupported architecture {name} (supported: {})",
        path.display(),
        Architecture::supported()
    )]
    Architecture { path: PathBuf, name: String },
    /// Fields that are missing, mistyped, inconsistent or not implemented.
    #[error("{}: {}", path.display(), .problems.join("; "))]
    Fields {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// A model id that is neither a directory nor in the offline cache.
    #[error("{reason}")]
    NotFound { reason: String },
}

impl HfConfig {
    /// Reads `DIR/config.json`.
    pub fn read(dir: &Path) -> Result<HfConfig, HfError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| HfError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| HfError::Unreadable {
            path: path.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        let Value::Object(map) = value else {
            return Err(HfError::Unreadable {
                path,
                reason: "not a JSON object".into(),
            });
        };
        Self::from_map(&map, &path)
    }

    /// Reads a parsed `config.json` (`path` names it in errors).
    pub fn from_map(map: &Map<String, Value>, path: &Path) -> Result<HfConfig, HfError> {
        let architecture = architecture(map).map_err(|name| HfError::Architecture {
            path: path.to_path_buf(),
            name,
        })?;
        let mut f = Fields {
            map,
            problems: Vec::new(),
        };
        let vocab_size = f.count("vocab_size");
        let hidden_size = f.count("hidden_size");
        let intermediate_size = f.count("intermediate_size");
        let num_hidden_layers = f.count("num_hidden_layers");
        let num_attention_heads = f.count("num_attention_heads");
        let num_key_value_heads = f
            .opt_count("num_key_value_heads")
            .unwrap_or(num_attention_heads);
        let head_dim = f
            .opt_count("head_dim")
            .unwrap_or_else(|| hidden_size.checked_div(num_attention_heads).unwrap_or(0));
        let max_position_embeddings = f.count("max_position_embeddings");
        let rms_norm_eps = f.opt_float("rms_norm_eps").unwrap_or(1e-6);
        let tie_word_embeddings = f.opt_bool("tie_word_embeddings").unwrap_or(false);
        let attention_bias = f.opt_bool("attention_bias");
        if f.opt_bool("mlp_bias") == Some(true) {
            f.problem("mlp_bias: biased MLP projections are not implemented");
        }
        let act = f
            .opt_str("hidden_act")
            .or_else(|| f.opt_str("hidden_activation"));
        if let Some(act) = act
            && act != "silu"
        {
            f.problem(format!(
                "hidden_act: \"{act}\" is not implemented (only \"silu\")"
            ));
        }
        if f.opt_bool("use_sliding_window") == Some(true) {
            f.problem("use_sliding_window: sliding-window attention is not implemented");
        }
        let (rope_theta, rope_scaling) = rope(&mut f);
        let dtype = match f.opt_str("dtype").or_else(|| f.opt_str("torch_dtype")) {
            None | Some("float32") => Dtype::F32,
            Some("float16") => Dtype::F16,
            Some("bfloat16") => Dtype::Bf16,
            Some(other) => {
                f.problem(format!(
                    "dtype: \"{other}\" is not a weight type gradus reads (float32, float16, bfloat16)"
                ));
                Dtype::F32
            }
        };
        let bos_token_id = f.opt_id("bos_token_id");
        let eos_token_ids = f.ids("eos_token_id");
        if num_attention_heads > 0
            && num_key_value_heads > 0
            && !num_attention_heads.is_multiple_of(num_key_value_heads)
        {
            f.problem(format!(
                "num_key_value_heads: {num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"
            ));
        }
        if !head_dim.is_multiple_of(2) {
            f.problem(format!(
                "head_dim: {head_dim} is odd (rotary embeddings rotate halves)"
            ));
        }
        let (qkv_bias, o_bias, qk_norm) = match architecture {
            Architecture::Qwen2 => (true, false, false),
            Architecture::Qwen3 => (attention_bias.unwrap_or(false), false, true),
            Architecture::Llama => {
                let b = attention_bias.unwrap_or(false);
                (b, b, false)
            }
        };
        if !f.problems.is_empty() {
            return Err(HfError::Fields {
                path: path.to_path_buf(),
                problems: f.problems,
            });
        }
        Ok(HfConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings,
            qkv_bias,
            o_bias,
            qk_norm,
            dtype,
            bos_token_id,
            eos_token_ids,
        })
    }

    /// The model gradus builds for this checkpoint.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            d_model: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_heads: self.num_attention_heads,
            d_ff: Some(self.intermediate_size),
            max_len: self.max_position_embeddings,
            tie_embeddings: self.tie_word_embeddings,
            rope_theta: self.rope_theta,
            norm_eps: self.rms_norm_eps,
            n_kv_heads: Some(self.num_key_value_heads),
            head_dim: Some(self.head_dim),
            qkv_bias: self.qkv_bias,
            o_bias: self.o_bias,
            qk_norm: self.qk_norm,
            rope_scaling: self.rope_scaling,
            ..ModelConfig::new(self.vocab_size)
        }
    }

    /// The rotary inverse frequencies, one per pair of a head's dimensions
    /// (`head_dim / 2`), with the config's scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        self.model_config().inv_freq()
    }
}

/// The family a config names: `architectures[0]`, else `model_type`; the
/// name as given when it is none of them.
fn architecture(map: &Map<String, Value>) -> Result<Architecture, String> {
    let class = map
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let model_type = map.get("model_type").and_then(Value::as_str);
    if let Some(class) = class {
        return Architecture::ALL
            .iter()
            .find(|(_, c, _)| *c == class)
            .map(|(a, ..)| *a)
            .ok_or_else(|| class.to_string());
    }
    match model_type {
        Some(m) => Architecture::ALL
            .iter()
            .find(|(.., t)| *t == m)
            .map(|(a, ..)| *a)
            .ok_or_else(|| m.to_string()),
        None => Err("(neither `architectures` nor `model_type` is given)".into()),
    }
}

/// The rope base and scaling, from `rope_parameters` (transformers 5) or
/// `rope_theta` + `rope_scaling` (4.x).
fn rope(f: &mut Fields<'_>) -> (f64, Option<Llama3Rope>) {
    let params = f.map.get("rope_parameters").and_then(Value::as_object);
    let scaling = f
        .map
        .get("rope_scaling")
        .and_then(Value::as_object)
        .or(params);
    let (table, theta) = match params {
        Some(p) => (
            "rope_parameters",
            p.get("rope_theta").and_then(Value::as_f64),
        ),
        None => ("rope_scaling", None),
    };
    let theta = theta
        .or_else(|| f.opt_float("rope_theta"))
        .unwrap_or(10_000.0);
    if !(theta.is_finite() && theta > 1.0) {
        f.problem(format!("rope_theta: {theta} is not a base above 1"));
    }
    let Some(s) = scaling else {
        return (theta, None);
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => (theta, None),
        "llama3" => {
            let mut num = |k: &str| match s.get(k).and_then(Value::as_f64) {
                Some(x) if x.is_finite() && x > 0.0 => x,
                _ => {
                    f.problem(format!("{table}.{k}: missing or not a positive number"));
                    1.0
                }
            };
            let r = Llama3Rope {
                factor: num("factor"),
                low_freq_factor: num("low_freq_factor"),
                high_freq_factor: num("high_freq_factor"),
                original_max_position_embeddings: num("original_max_position_embeddings"),
            };
            if r.high_freq_factor <= r.low_freq_factor {
                f.problem(format!(
                    "{table}.high_freq_factor: {} must exceed low_freq_factor {}",
                    r.high_freq_factor, r.low_freq_factor
                ));
            }
            (theta, Some(r))
        }
        other => {
            f.problem(format!(
                "{table}.rope_type: \"{other}\" is not implemented (only \"default\" and \"llama3\")"
            ));
            (theta, None)
        }
    }
}

/// Typed reads of a config's fields, collecting what is wrong.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    problems: Vec<String>,
}

impl Fields<'_> {
    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// A required positive integer.
    fn count(&mut self, key: &str) -> usize {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                self.problem(format!("{key}: missing"));
                0
            }
            Some(_) => self.opt_count(key).unwrap_or(0),
        }
    }

    fn opt_count(&mut self, key: &str) -> Option<usize> {
        let v = self.map.get(key).filter(|v| !v.is_null())?;
        match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                self.problem(format!("{key}: {v} is not a positive integer"));
                None
            }
        }
    }

    fn opt_float(&mut self, key: &str) -> Option<f64> {
        let v = self.map.get(key).filter(|v| !v.is_null())?;
        match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Some(x),
            _ => {
                self.problem(format!("{key}: {v} is not a positive number"));
                None
            }
        }
    }

    fn opt_bool(&mut self, key: &str) -> Option<bool> {
        let v = self.map.get(key).filter(|v| !v.is_null())?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.problem(format!("{key}: {v} is not true or false"));
                None
            }
        }
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    fn id(&mut self, key: &str, v: &Value) -> Option<u32> {
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(id) => Some(id),
            None => {
                self.problem(format!("{key}: {v} is not a token id"));
                None
            }
        }
    }

    fn opt_id(&mut self, key: &str) -> Option<u32> {
        let v = self.map.get(key).filter(|v| !v.is_null())?.clone();
        self.id(key, &v)
    }

    /// A token id or a list of them (absent: none).
    fn ids(&mut self, key: &str) -> Vec<u32> {
        match self.map.get(key).cloned() {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(|v| self.id(key, v)).collect(),
            Some(v) => self.id(key, &v).into_iter().collect(),
        }
    }
}

/// Where the checkpoint named `model` lives: `model` itself when it is a
/// directory, else a Hugging Face model id (`ORG/NAME`, optionally
/// `ORG/NAME@REVISION`) looked up in the offline cache
/// (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`):
/// `models--ORG--NAME/snapshots/REV`, the revision from `refs/main` (or the
/// one given; a branch name read from `refs/`). Nothing is ever downloaded.
pub fn resolve(model: &str) -> Result<PathBuf, HfError> {
    let as_dir = Path::new(model);
    if as_dir.is_dir() {
        return Ok(as_dir.to_path_buf());
    }
    let (id, revision) = match model.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (model, None),
    };
    let looks_like_id = id.split('/').count() == 2
        && id.split('/').all(|p| {
            !p.is_empty()
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if !looks_like_id {
        return Err(HfError::NotFound {
            reason: format!(
                "{model}: not a directory, and not a Hugging Face model id (ORG/NAME[@REVISION])"
            ),
        });
    }
    let cache = hub_cache();
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let not_found = |why: String| HfError::NotFound {
        reason: format!(
            "{model}: not in the offline Hugging Face cache ({why}); gradus never downloads: \
             fetch it first (e.g. `huggingface-cli download {id}`) or pass its directory"
        ),
    };
    if !repo.is_dir() {
        return Err(not_found(format!("no {}", repo.display())));
    }
    let rev = revision.unwrap_or("main");
    // A branch or tag names a commit in refs/; a commit hash names a snapshot.
    let commit = std::fs::read_to_string(repo.join("refs").join(rev))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| rev.to_string());
    let snapshot = repo.join("snapshots").join(&commit);
    if snapshot.is_dir() {
        return Ok(snapshot);
    }
    Err(not_found(format!("no snapshot {}", snapshot.display())))
}

/// The hub cache directory, as huggingface_hub picks it.
fn hub_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<HfConfig, HfError> {
        HfConfig::from_map(v.as_object().unwrap(), Path::new("m/config.json"))
    }

    /// Qwen2.5-0.5B-Instruct's config.json as transformers 4.x writes it.
    fn qwen25() -> Value {
        json!({
            "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
            "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
            "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
            "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16",
            "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
            "vocab_size": 151936
        })
    }

    #[test]
    fn qwen2_reads_every_field_that_changes_the_math() {
        let c = read(qwen25()).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen2);
        assert_eq!((c.num_attention_heads, c.num_key_value_heads), (14, 2));
        assert_eq!(c.head_dim, 64);
        assert!(c.qkv_bias && !c.o_bias && !c.qk_norm && c.tie_word_embeddings);
        assert_eq!(c.dtype, Dtype::Bf16);
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.eos_token_ids, [151645]);
        assert_eq!(c.inv_freq().len(), 32);
        assert_eq!(c.inv_freq()[0], 1.0);
    }

    #[test]
    fn qwen3_has_head_norms_an_explicit_head_dim_and_the_v5_layout_reads_too() {
        let c = read(json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
            "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "attention_bias": false,
            "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
            "dtype": "bfloat16", "tie_word_embeddings": true, "vocab_size": 151936,
            "eos_token_id": [151645, 151643], "use_sliding_window": false
        }))
        .unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert_eq!(c.head_dim, 128, "not hidden_size / heads = 64");
        assert!(c.qk_norm && !c.qkv_bias);
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.eos_token_ids, [151645, 151643]);
        assert!(c.rope_scaling.is_none());
    }

    #[test]
    fn llama3_rope_scaling_keeps_short_wavelengths_and_slows_long_ones() {
        let c = read(json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
            "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "max_position_embeddings": 131072, "vocab_size": 128256,
            "rope_theta": 500000.0, "hidden_act": "silu", "mlp_bias": false,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "torch_dtype": "bfloat16", "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009]
        }))
        .unwrap();
        let s = c.rope_scaling.unwrap();
        assert_eq!(s.factor, 32.0);
        let plain: Vec<f64> = (0..c.head_dim / 2)
            .map(|i| 500000f64.powf(-2.0 * i as f64 / c.head_dim as f64))
            .collect();
        let scaled = c.inv_freq();
        let wavelen = |f: f64| 2.0 * std::f64::consts::PI / f;
        for (p, q) in plain.iter().zip(&scaled) {
            if wavelen(*p) < 8192.0 / 4.0 {
                assert_eq!(p, q, "a short wavelength is kept");
            } else if wavelen(*p) > 8192.0 {
                assert!(
                    (q - p / 32.0).abs() <= 1e-15 * p,
                    "a long one is slowed 32x"
                );
            } else {
                assert!(*q < *p && *q > p / 32.0, "the band between is blended");
            }
        }
        // Frequencies still fall from the first pair to the last.
        assert!(scaled.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn what_is_not_implemented_is_refused_by_name_all_at_once() {
        let mut v = qwen25();
        let m = v.as_object_mut().unwrap();
        m.insert("use_sliding_window".into(), json!(true));
        m.insert("hidden_act".into(), json!("gelu"));
        m.insert("num_key_value_heads".into(), json!(4));
        m.insert(
            "rope_scaling".into(),
            json!({"type": "yarn", "factor": 4.0}),
        );
        m.remove("vocab_size");
        let e = read(v).unwrap_err().to_string();
        for part in [
            "m/config.json: ",
            "vocab_size: missing",
            "hidden_act: \"gelu\" is not implemented",
            "use_sliding_window: sliding-window attention is not implemented",
            "rope_scaling.rope_type: \"yarn\" is not implemented",
            "num_key_value_heads: 4 does not divide num_attention_heads 14",
        ] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
        let e = read(json!({"architectures": ["MistralForCausalLM"]}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unsupported architecture MistralForCausalLM"),
            "{e}"
        );
        assert!(
            e.contains(
                "Qwen2ForCausalLM (qwen2), Qwen3ForCausalLM (qwen3), LlamaForCausalLM (llama)"
            ),
            "{e}"
        );
        let e = read(json!({"model_type": "qwen2", "hidden_size": "896"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hidden_size: \"896\" is not a positive integer"),
            "{e}"
        );
    }

    #[test]
    fn a_model_id_resolves_in_the_offline_cache_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--Qwen--Qwen2.5-0.5B");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        // SAFETY: this is the only test in the crate that touches HF_HUB_CACHE.
        unsafe { std::env::set_var("HF_HUB_CACHE", dir.path()) };
        assert_eq!(resolve("Qwen/Qwen2.5-0.5B").unwrap(), snap);
        assert_eq!(resolve("Qwen/Qwen2.5-0.5B@abc123").unwrap(), snap);
        let e = resolve("Qwen/Qwen2.5-7B").unwrap_err().to_string();
        assert!(e.contains("not in the offline Hugging Face cache"), "{e}");
        assert!(e.contains("never downloads"), "{e}");
        assert!(resolve("Qwen/Qwen2.5-0.5B@v2").is_err(), "no such revision");
        assert!(
            resolve("no-such-dir/x/y")
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        // A directory is taken as it is.
        assert_eq!(resolve(snap.to_str().unwrap()).unwrap(), snap);
        unsafe { std::env::remove_var("HF_HUB_CACHE") };
    }
}

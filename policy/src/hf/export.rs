//! The built-in model's weights back in a Hugging Face checkpoint's layout:
//! the inverse of [`super::load`] (fused blocks split, linear weights
//! transposed back to `[out, in]`, the checkpoint's own tensor names), written
//! as safetensors in the checkpoint's dtype.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{Source, plan};
use super::{Dtype, HfConfig, HfError, weights};
use crate::model::Transformer;
use crate::optim::{HostTensor, weights as model_weights};

/// Tensors by checkpoint name, each `(shape, row-major f32)`.
pub type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The model's weights by checkpoint name.
pub fn tensors(model: &Transformer, cfg: &HfConfig) -> Result<Named, HfError> {
    split(model_weights(model), cfg)
}

/// Per-parameter values in the model's visiting order (its weights, or their
/// gradients) by checkpoint name.
pub fn split(params: Vec<HostTensor>, cfg: &HfConfig) -> Result<Named, HfError> {
    let shapes: BTreeMap<String, Vec<usize>> = weights::expected(cfg).into_iter().collect();
    let plan = plan(cfg);
    let mismatch = |why: String| HfError::Fields {
        path: "model".into(),
        problems: vec![why],
    };
    if params.len() != plan.len() {
        return Err(mismatch(format!(
            "the model has {} weights, a {} checkpoint of this config {}",
            params.len(),
            cfg.architecture.name(),
            plan.len()
        )));
    }
    let shape_of = |name: &str| {
        shapes
            .get(name)
            .cloned()
            .ok_or_else(|| mismatch(format!("{name}: not a tensor of this config")))
    };
    let mut out = BTreeMap::new();
    for (source, p) in plan.iter().zip(params) {
        match source {
            Source::Plain(name) => {
                out.insert(name.clone(), (shape_of(name)?, p.data));
            }
            Source::Concat(names) => {
                let mut at = 0;
                for name in names {
                    let shape = shape_of(name)?;
                    let n: usize = shape.iter().product();
                    let part = p.data.get(at..at + n).ok_or_else(|| {
                        mismatch(format!("{name}: the model's bias is too short"))
                    })?;
                    out.insert(name.clone(), (shape, part.to_vec()));
                    at += n;
                }
            }
            Source::Columns(names) => {
                // Columns at..at+rows of [in, total] → [rows, in].
                let (d_in, total) = (p.shape[0], p.shape[1]);
                let mut at = 0;
                for name in names {
                    let shape = shape_of(name)?;
                    let rows = shape[0];
                    if shape[1] != d_in || at + rows > total {
                        return Err(mismatch(format!(
                            "{name}: shape {shape:?} does not fit the model's {:?}",
                            p.shape
                        )));
                    }
                    let mut t = vec![0.0f32; rows * d_in];
                    for (r, row) in t.chunks_exact_mut(d_in).enumerate() {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = p.data[c * total + at + r];
                        }
                    }
                    out.insert(name.clone(), (shape, t));
                    at += rows;
                }
            }
        }
    }
    Ok(out)
}

/// Little-endian bytes of `values` in `dtype` (rounded to nearest, ties to
/// even, as torch's casts do).
pub fn to_bytes(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::Bf16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

/// Writes `tensors` to `path` as one safetensors file in `dtype`.
pub fn write_safetensors(path: &Path, tensors: &Named, dtype: Dtype) -> Result<(), HfError> {
    let st = match dtype {
        Dtype::F32 => safetensors::Dtype::F32,
        Dtype::F16 => safetensors::Dtype::F16,
        Dtype::Bf16 => safetensors::Dtype::BF16,
    };
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (shape, v))| (n.clone(), shape.clone(), to_bytes(v, dtype)))
        .collect();
    let unwritable = |reason: String| HfError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let views = bytes
        .iter()
        .map(|(n, shape, b)| {
            safetensors::tensor::TensorView::new(st, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| unwritable(format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| unwritable(format!("writing safetensors: {e}")))
}

/// Files of the original checkpoint copied beside exported weights, when present.
pub const COPIED: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Writes a Hugging Face directory at `out` (created if missing): `params`
/// (the model's weights in visiting order) as `model.safetensors` in the
/// checkpoint's names and dtype, and the original's [`COPIED`] files from
/// `source`. The weights go in under a temporary name first, so a reader
/// never sees half a file. Returns the tensors written.
pub fn write_dir(
    out: &Path,
    params: Vec<HostTensor>,
    cfg: &HfConfig,
    source: &Path,
) -> Result<Named, HfError> {
    write_dir_sharded(out, params, cfg, source, u64::MAX)
}

/// As [`write_dir`], with the weights cut into shards of at most
/// `max_shard_bytes` each (a tensor larger than that is a shard of its own),
/// as transformers' `save_pretrained(max_shard_size=…)` does:
/// `model-00001-of-0000N.safetensors` … and `model.safetensors.index.json`
/// (`metadata.total_size`, `weight_map`), written last, so a reader sees the
/// index only once every shard it names is whole. One shard is written as
/// plain `model.safetensors`. Weight files of another layout left in `out`
/// (a single file, or an index) are removed, so the directory holds one
/// checkpoint.
pub fn write_dir_sharded(
    out: &Path,
    params: Vec<HostTensor>,
    cfg: &HfConfig,
    source: &Path,
    max_shard_bytes: u64,
) -> Result<Named, HfError> {
    let tensors = split(params, cfg)?;
    let io = |path: &Path, e: std::io::Error| HfError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let width = match cfg.dtype {
        Dtype::F32 => 4u64,
        Dtype::F16 | Dtype::Bf16 => 2,
    };
    let mut shards: Vec<Named> = vec![Named::new()];
    let mut filled = 0u64;
    for (name, t) in &tensors {
        let bytes = t.1.len() as u64 * width;
        let current = shards.last_mut().expect("one shard at least");
        if !current.is_empty() && filled + bytes > max_shard_bytes {
            shards.push(Named::new());
            filled = 0;
        }
        shards
            .last_mut()
            .expect("one shard at least")
            .insert(name.clone(), t.clone());
        filled += bytes;
    }
    let write = |name: &str, shard: &Named| -> Result<(), HfError> {
        let tmp = out.join(format!("{name}.partial"));
        write_safetensors(&tmp, shard, cfg.dtype)?;
        let dst = out.join(name);
        std::fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))
    };
    let index = out.join(weights::INDEX);
    let single = out.join(weights::SINGLE);
    if shards.len() == 1 {
        if index.exists() {
            std::fs::remove_file(&index).map_err(|e| io(&index, e))?;
        }
        write(weights::SINGLE, &shards[0])?;
    } else {
        if single.exists() {
            std::fs::remove_file(&single).map_err(|e| io(&single, e))?;
        }
        let n = shards.len();
        let mut weight_map = serde_json::Map::new();
        let mut total = 0u64;
        for (i, shard) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            write(&file, shard)?;
            for (name, t) in shard {
                total += t.1.len() as u64 * width;
                weight_map.insert(name.clone(), file.clone().into());
            }
        }
        let text = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let tmp = out.join(format!("{}.partial", weights::INDEX));
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(&text).expect("JSON") + "\n",
        )
        .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &index).map_err(|e| io(&index, e))?;
    }
    for name in COPIED {
        let src = source.join(name);
        if src.exists() {
            std::fs::copy(&src, out.join(name)).map_err(|e| io(&src, e))?;
        }
    }
    Ok(tensors)
}

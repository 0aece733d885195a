//! The tensors of a Hugging Face checkpoint: what its safetensors files hold
//! (one file, or shards listed by `model.safetensors.index.json`), and whether
//! that is exactly what its `config.json` calls for.
//!
//! Only the headers are read here (8 bytes of length, then JSON naming each
//! tensor's dtype, shape and byte range), so a 7B checkpoint is checked in
//! milliseconds and every missing, unexpected or mis-shaped tensor is reported
//! by name in one error before any weight is loaded.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{HfConfig, HfError};

/// The index that maps tensor names to shard files.
pub const INDEX: &str = "model.safetensors.index.json";

/// The one file of an unsharded checkpoint.
pub const SINGLE: &str = "model.safetensors";

/// Longest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Problems listed in one error before the rest are counted.
const MAX_LISTED: usize = 20;

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// safetensors' dtype name (`F32`, `F16`, `BF16`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The file holding it.
    pub file: PathBuf,
    /// Its bytes, from the start of the file's data (after the header).
    pub start: u64,
    pub end: u64,
}

/// Every tensor of the checkpoint in `dir`, by name.
pub fn inventory(dir: &Path) -> Result<BTreeMap<String, Stored>, HfError> {
    let index = dir.join(INDEX);
    // As transformers reads a checkpoint: the index's shards if there is an
    // index, else `model.safetensors` (other safetensors files beside it,
    // such as adapters or references, are not part of the model).
    let single = dir.join(SINGLE);
    let files: Vec<PathBuf> = if index.exists() {
        shard_files(&index)?
    } else if single.exists() {
        vec![single]
    } else {
        return Err(unreadable(dir, format!("no {SINGLE} and no {INDEX}")));
    };
    let mut all = BTreeMap::new();
    for file in &files {
        for (name, t) in header(file)? {
            if let Some(first) = all.get(&name).map(|t: &Stored| t.file.clone()) {
                return Err(unreadable(
                    file,
                    format!("tensor {name} is also in {}", first.display()),
                ));
            }
            all.insert(name, t);
        }
    }
    if index.exists() {
        // Every tensor the index names must be in the shard it names.
        let map = weight_map(&index)?;
        let mut problems = Vec::new();
        for (name, shard) in &map {
            match all.get(name) {
                None => problems.push(format!("{name}: listed in {shard} but not there")),
                Some(t) if t.file.file_name().is_none_or(|f| f != shard.as_str()) => {
                    problems.push(format!(
                        "{name}: listed in {shard} but found in {}",
                        t.file.display()
                    ));
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            return Err(fields(&index, problems));
        }
    }
    Ok(all)
}

/// The tensors a model of `cfg` needs, with their shapes, in the checkpoint's
/// own names (transformers' `Qwen2ForCausalLM`, `Qwen3ForCausalLM` and
/// `LlamaForCausalLM` layout). `lm_head.weight` is left out when the
/// embedding is tied (a checkpoint may still carry it; see [`check`]).
pub fn expected(cfg: &HfConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let i = cfg.intermediate_size;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut add = |name: &str, shape: Vec<usize>| out.push((format!("{p}.{name}"), shape));
        add("input_layernorm.weight", vec![h]);
        add("self_attn.q_proj.weight", vec![q, h]);
        add("self_attn.k_proj.weight", vec![kv, h]);
        add("self_attn.v_proj.weight", vec![kv, h]);
        if cfg.qkv_bias {
            add("self_attn.q_proj.bias", vec![q]);
            add("self_attn.k_proj.bias", vec![kv]);
            add("self_attn.v_proj.bias", vec![kv]);
        }
        add("self_attn.o_proj.weight", vec![h, q]);
        if cfg.o_bias {
            add("self_attn.o_proj.bias", vec![h]);
        }
        if cfg.qk_norm {
            add("self_attn.q_norm.weight", vec![cfg.head_dim]);
            add("self_attn.k_norm.weight", vec![cfg.head_dim]);
        }
        add("post_attention_layernorm.weight", vec![h]);
        add("mlp.gate_proj.weight", vec![i, h]);
        add("mlp.up_proj.weight", vec![i, h]);
        add("mlp.down_proj.weight", vec![h, i]);
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}

/// Whether `stored` is exactly what `cfg` needs: every problem (missing,
/// unexpected, mis-shaped, or stored in a type other than f32/f16/bf16) in
/// one error naming `dir`. Ignored: a tied checkpoint's `lm_head.weight` of
/// the right shape, and the `rotary_emb.inv_freq` buffers older exports carry
/// (gradus computes the frequencies from the config).
pub fn check(cfg: &HfConfig, stored: &BTreeMap<String, Stored>, dir: &Path) -> Result<(), HfError> {
    let want = expected(cfg);
    let mut problems = Vec::new();
    for (name, shape) in &want {
        match stored.get(name) {
            None => problems.push(format!("{name}: missing (expected shape {shape:?})")),
            Some(t) if &t.shape != shape => {
                problems.push(format!("{name}: shape {:?}, expected {shape:?}", t.shape))
            }
            Some(t) if !matches!(t.dtype.as_str(), "F32" | "F16" | "BF16") => problems.push(
                format!("{name}: stored as {}, not F32, F16 or BF16", t.dtype),
            ),
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    for (name, t) in stored {
        if known.contains(name.as_str()) || name.ends_with(".rotary_emb.inv_freq") {
            continue;
        }
        if name == "lm_head.weight" && cfg.tie_word_embeddings {
            if t.shape != [cfg.vocab_size, cfg.hidden_size] {
                problems.push(format!(
                    "lm_head.weight: shape {:?}, expected {:?}",
                    t.shape,
                    [cfg.vocab_size, cfg.hidden_size]
                ));
            }
            continue;
        }
        problems.push(format!(
            "{name}: unexpected (not part of a {} model of this config)",
            cfg.architecture.name()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    if n > MAX_LISTED {
        problems.truncate(MAX_LISTED);
        problems.push(format!("and {} more", n - MAX_LISTED));
    }
    Err(fields(dir, problems))
}

/// The bytes one element of a safetensors dtype takes (`None`: unknown).
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

/// The tensors one safetensors file declares, checked against its length.
pub fn header(file: &Path) -> Result<Vec<(String, Stored)>, HfError> {
    let mut f = std::fs::File::open(file).map_err(|e| unreadable(file, e.to_string()))?;
    let len = f
        .metadata()
        .map_err(|e| unreadable(file, e.to_string()))?
        .len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| {
        unreadable(
            file,
            format!("truncated: {len} bytes, no safetensors header"),
        )
    })?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > len - 8 {
        return Err(unreadable(
            file,
            format!(
                "truncated or not safetensors: the header says {n} bytes, the file has {} after the length",
                len - 8
            ),
        ));
    }
    let mut text = vec![0u8; usize::try_from(n).unwrap_or(0)];
    f.read_exact(&mut text)
        .map_err(|e| unreadable(file, e.to_string()))?;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&text) else {
        return Err(unreadable(
            file,
            "the safetensors header is not a JSON object".into(),
        ));
    };
    let data = len - 8 - n;
    let mut out = Vec::with_capacity(map.len());
    let mut problems = Vec::new();
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype").and_then(Value::as_str).unwrap_or("");
        let shape: Option<Vec<usize>> = v.get("shape").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        });
        let offsets: Option<Vec<u64>> = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (Some(shape), Some([start, end])) = (
            shape,
            offsets.as_deref().map(|o| match o {
                [a, b] => [*a, *b],
                _ => [1, 0],
            }),
        ) else {
            problems.push(format!("{name}: no shape or data_offsets"));
            continue;
        };
        let Some(size) = dtype_size(dtype) else {
            problems.push(format!("{name}: unknown dtype {dtype:?}"));
            continue;
        };
        let elems: u64 = shape.iter().map(|&d| d as u64).product();
        if start > end || end > data {
            problems.push(format!(
                "{name}: bytes {start}..{end} lie outside the file's {data} bytes of data (truncated?)"
            ));
        } else if end - start != elems * size {
            problems.push(format!(
                "{name}: {} bytes for shape {shape:?} of {dtype} ({} expected)",
                end - start,
                elems * size
            ));
        }
        out.push((
            name,
            Stored {
                dtype: dtype.to_string(),
                shape,
                file: file.to_path_buf(),
                start,
                end,
            },
        ));
    }
    if !problems.is_empty() {
        return Err(fields(file, problems));
    }
    Ok(out)
}

fn weight_map(index: &Path) -> Result<BTreeMap<String, String>, HfError> {
    let text = std::fs::read_to_string(index).map_err(|e| unreadable(index, e.to_string()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| unreadable(index, format!("not JSON: {e}")))?;
    let Some(map) = v.get("weight_map").and_then(Value::as_object) else {
        return Err(unreadable(index, "no `weight_map` object".into()));
    };
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(f) if !f.contains('/') && f.ends_with(".safetensors") => {
                Ok((k.clone(), f.to_string()))
            }
            _ => Err(unreadable(
                index,
                format!("weight_map.{k}: {v} is not a .safetensors file in this directory"),
            )),
        })
        .collect()
}

/// The shard files an index names, each once, in name order.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>, HfError> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<&String> = Vec::new();
    let map = weight_map(index)?;
    for f in map.values() {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    files.sort();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

fn unreadable(path: &Path, reason: String) -> HfError {
    HfError::Unreadable {
        path: path.to_path_buf(),
        reason,
    }
}

fn fields(path: &Path, problems: Vec<String>) -> HfError {
    HfError::Fields {
        path: path.to_path_buf(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny Qwen2 config: 2 layers, hidden 8, GQA 4/2 heads of 2.
    fn tiny(tied: bool) -> HfConfig {
        HfConfig::from_map(
            json!({
                "architectures": ["Qwen2ForCausalLM"], "vocab_size": 16, "hidden_size": 8,
                "intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 64,
                "tie_word_embeddings": tied
            })
            .as_object()
            .unwrap(),
            Path::new("config.json"),
        )
        .unwrap()
    }

    /// Writes a safetensors file of zero-filled f32 tensors.
    fn write(path: &Path, tensors: &[(String, Vec<usize>)]) {
        let mut header = serde_json::Map::new();
        let mut at = 0u64;
        for (name, shape) in tensors {
            let bytes = shape.iter().product::<usize>() as u64 * 4;
            header.insert(
                name.clone(),
                json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + bytes]}),
            );
            at += bytes;
        }
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.resize(out.len() + at as usize, 0);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn a_complete_checkpoint_passes_in_one_file_or_in_shards() {
        let cfg = tiny(false);
        let want = expected(&cfg);
        // 1 embedding + 2 layers × 12 (q/k/v biases) + norm + lm_head.
        assert_eq!(want.len(), 1 + 2 * 12 + 2);
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("model.safetensors"), &want);
        let stored = inventory(dir.path()).unwrap();
        check(&cfg, &stored, dir.path()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (a, b) = want.split_at(10);
        write(&dir.path().join("model-00001-of-00002.safetensors"), a);
        write(&dir.path().join("model-00002-of-00002.safetensors"), b);
        let mut map = serde_json::Map::new();
        for (n, _) in a {
            map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
        }
        for (n, _) in b {
            map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
        }
        std::fs::write(
            dir.path().join(INDEX),
            json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
        let stored = inventory(dir.path()).unwrap();
        assert_eq!(stored.len(), want.len());
        check(&cfg, &stored, dir.path()).unwrap();
    }

    #[test]
    fn every_missing_unexpected_or_misshaped_tensor_is_named_in_one_error() {
        let cfg = tiny(true);
        let mut tensors = expected(&cfg);
        tensors.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight");
        tensors[1].1 = vec![3];
        tensors.push(("model.layers.0.self_attn.extra.weight".into(), vec![2]));
        tensors.push((
            "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
            vec![1],
        ));
        tensors.push(("lm_head.weight".into(), vec![16, 8]));
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("model.safetensors"), &tensors);
        let e = check(&cfg, &inventory(dir.path()).unwrap(), dir.path())
            .unwrap_err()
            .to_string();
        for part in [
            "model.layers.1.mlp.up_proj.weight: missing (expected shape [12, 8])",
            "model.layers.0.input_layernorm.weight: shape [3], expected [8]",
            "model.layers.0.self_attn.extra.weight: unexpected",
        ] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
        assert!(!e.contains("inv_freq") && !e.contains("lm_head"), "{e}");
    }

    #[test]
    fn a_truncated_or_broken_file_is_an_error_naming_it() {
        let cfg = tiny(true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write(&path, &expected(&cfg));
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the header, then inside the data, then before the length.
        for (cut, says) in [
            (20, "the header says"),
            (bytes.len() - 4, "outside the file"),
            (5, "no safetensors header"),
        ] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = inventory(dir.path()).unwrap_err().to_string();
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(e.contains(says), "{says:?} not in {e}");
        }
        std::fs::remove_file(&path).unwrap();
        let e = inventory(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("no model.safetensors and no model.safetensors.index.json"),
            "{e}"
        );
        // Another safetensors file alone is not a checkpoint.
        write(&dir.path().join("adapter.safetensors"), &expected(&cfg));
        let e = inventory(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no model.safetensors"), "{e}");
        // An index naming a tensor its shard lacks.
        write(&dir.path().join("a.safetensors"), &expected(&cfg)[..2]);
        std::fs::write(
            dir.path().join(INDEX),
            json!({"weight_map": {"model.norm.weight": "a.safetensors"}}).to_string(),
        )
        .unwrap();
        let e = inventory(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("model.norm.weight: listed in a.safetensors but not there"),
            "{e}"
        );
    }
}

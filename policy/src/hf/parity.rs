//! Parity with transformers: the checkpoints and reference outputs in
//! `tests/fixtures/hf/` (made by `tests/fixtures/hf/make.py`, which says
//! which versions made them) loaded through the real loading code, and every
//! output compared. Qwen2 (tied embedding, q/k/v biases), Qwen3 (q/k norms,
//! head_dim 32 ≠ 64/4, sharded checkpoint) and Llama (Llama-3 rope scaling,
//! bf16 on disk); all with grouped key/value heads (4 query, 2 kv).

use std::path::PathBuf;

use burn::Tensor;
use burn::tensor::{Device, TensorData};
use rand::SeedableRng;
use serde_json::Value;

use super::export;
use super::load::{Checkpoint, to_f32};
use crate::loss::{self, GrpoConfig, GrpoTerms};
use crate::model::TokenBatch;
use crate::optim::HostTensor;
use crate::sample::{SamplingConfig, sample};

const FAMILIES: [&str; 3] = ["qwen2", "qwen3", "llama3"];

/// The device the parity tests run on: `GRADUS_TEST_DEVICE` (`cuda`, `cuda:N`,
/// `libtorch` with the `cuda` feature), the CPU by default. So the same
/// comparisons with transformers check a GPU build where one is available.
fn test_device() -> Device {
    let spec = std::env::var("GRADUS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let d = crate::device::device(&crate::config::ComputeConfig {
        device: spec.clone(),
        threads: 0,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("GRADUS_TEST_DEVICE={spec}: {e}"));
    eprintln!("parity on {spec}");
    d
}

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hf")
        .join(name)
}

struct Fixture {
    ckpt: Checkpoint,
    meta: Value,
    refs: export::Named,
}

fn fixture(name: &str) -> Fixture {
    let d = dir(name);
    let ckpt = Checkpoint::open(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(d.join("reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(d.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let refs = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let dtype = format!("{:?}", v.dtype());
            let data = to_f32(&dtype, v.data()).unwrap_or_else(|| panic!("{n}: {dtype}"));
            (n, (v.shape().to_vec(), data))
        })
        .collect();
    Fixture { ckpt, meta, refs }
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// Largest absolute difference over the slots `keep` selects.
fn max_diff(a: &[f32], b: &[f32], keep: impl Fn(usize) -> bool) -> f32 {
    assert_eq!(a.len(), b.len());
    (0..a.len())
        .filter(|&i| keep(i))
        .map(|i| (a[i] - b[i]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn logits_of_a_left_padded_batch_equal_transformers() {
    for name in FAMILIES {
        let f = fixture(name);
        let model = f.ckpt.load(&test_device()).unwrap();
        let rows = rows(&f.meta["logits_rows"]);
        let pad = f.meta["pad"].as_u64().unwrap() as u32;
        let batch = TokenBatch::left_padded(&rows, pad);
        let got = host(model.forward(&batch, None).unwrap());
        let (shape, want) = &f.refs["logits"];
        assert_eq!(shape, &[batch.batch, batch.len, model.vocab_size()]);
        let vocab = model.vocab_size();
        let d = max_diff(&got, want, |i| batch.valid[i / vocab]);
        eprintln!("{name}: logits max |Δ| {d:.2e}");
        assert!(d < 1e-4, "{name}: logits differ from transformers' by {d}");
    }
}

#[test]
fn greedy_generation_equals_transformers_with_and_without_the_cache() {
    for name in FAMILIES {
        let f = fixture(name);
        let model = f.ckpt.load(&test_device()).unwrap();
        let prompts = rows(&f.meta["logits_rows"]);
        let want = rows(&f.meta["greedy"]);
        let n = f.meta["greedy_new_tokens"].as_u64().unwrap() as usize;
        let pad = f.meta["pad"].as_u64().unwrap() as u32;
        let cfg = SamplingConfig {
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens: n,
            stop_tokens: vec![],
        };
        // With the cache: the sampler, both prompts in one left-padded batch.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let out = sample(&model, &prompts[..want.len()], &cfg, pad, &mut rng).unwrap();
        for (i, (o, w)) in out.iter().zip(&want).enumerate() {
            assert_eq!(&o.tokens, w, "{name}: prompt {i}, cached greedy");
        }
        // Without: the whole sequence recomputed for every token.
        for (i, (p, w)) in prompts.iter().zip(&want).enumerate() {
            let mut seq = p.clone();
            for _ in 0..n {
                let batch = TokenBatch::left_padded(std::slice::from_ref(&seq), pad);
                let logits = host(model.forward(&batch, None).unwrap());
                let last = &logits[(seq.len() - 1) * model.vocab_size()..];
                let next = (0..last.len())
                    .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                    .unwrap();
                seq.push(next as u32);
            }
            assert_eq!(
                &seq[p.len()..],
                &w[..],
                "{name}: prompt {i}, uncached greedy"
            );
        }
    }
}

/// The response log-probs, and one GRPO loss (decoupled clip, k3 KL to a
/// reference) with the gradient of every parameter, against the same loss
/// written in torch (`make.py`).
#[test]
fn response_logprobs_grpo_loss_and_every_gradient_equal_torch() {
    for name in FAMILIES {
        let f = fixture(name);
        let device = test_device().autodiff();
        let model = f.ckpt.load(&device).unwrap();
        let prompts = rows(&f.meta["logits_rows"]);
        let responses = rows(&f.meta["responses"]);
        let pad = f.meta["pad"].as_u64().unwrap() as u32;
        let full: Vec<Vec<u32>> = prompts
            .iter()
            .zip(&responses)
            .map(|(p, r)| p.iter().chain(r).copied().collect())
            .collect();
        let batch = TokenBatch::right_padded(&full, pad);
        let (b, t) = (batch.batch, batch.len);
        let mut targets = vec![pad; b * t];
        let mut mask = vec![false; b * t];
        for (row, (p, r)) in prompts.iter().zip(&responses).enumerate() {
            for s in 0..t - 1 {
                targets[row * t + s] = batch.tokens[row * t + s + 1];
            }
            for s in p.len() - 1..p.len() + r.len() - 1 {
                mask[row * t + s] = true;
            }
        }
        // The learner's own path (on flex, the fused head and log-softmax).
        let logp = model.score(&batch, &targets, 1.0).unwrap().logp;
        let got = host(logp.clone());
        let (_, want) = &f.refs["response_logp"];
        let d = max_diff(&got, want, |i| mask[i]);
        eprintln!("{name}: response log-probs max |Δ| {d:.2e}");
        assert!(d < 1e-4, "{name}: response log-probs differ by {d}");

        let g = &f.meta["grpo"];
        let cfg = GrpoConfig {
            clip_eps_low: g["clip_eps_low"].as_f64().unwrap() as f32,
            clip_eps_high: g["clip_eps_high"].as_f64().unwrap() as f32,
            kl_coef: g["kl_coef"].as_f64().unwrap() as f32,
            ..GrpoConfig::default()
        };
        let adv: Vec<f32> = g["advantages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| std::iter::repeat_n(a.as_f64().unwrap() as f32, t))
            .collect();
        let weights = loss::aggregation_weights(&mask, b, t, crate::loss::Aggregation::TokenMean);
        let tensor = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [b, t]), &device);
        let terms = GrpoTerms {
            logp,
            old_logp: tensor(f.refs["old_logp"].1.clone()),
            advantages: tensor(adv),
            weights: tensor(weights),
            ref_logp: Some(tensor(f.refs["ref_logp"].1.clone())),
            entropy: None,
        };
        let loss = loss::grpo_loss(terms, &cfg);
        let value = host(loss.clone())[0] as f64;
        let want_loss = g["loss"].as_f64().unwrap();
        assert!(
            (value - want_loss).abs() <= 1e-4 * want_loss.abs().max(1e-3),
            "{name}: loss {value} vs torch {want_loss}"
        );
        let grads = loss.backward();
        let mut per_param = Vec::new();
        struct Collect<'a>(&'a burn::tensor::Gradients, &'a mut Vec<HostTensor>);
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                let g = p.val().grad(self.0).expect("every weight gets a gradient");
                self.1.push(HostTensor::of(g));
            }
        }
        burn::module::Module::visit(&model, &mut Collect(&grads, &mut per_param));
        let by_name = export::split(per_param, &f.ckpt.config).unwrap();
        let mut worst = (0.0f64, String::new());
        for (n, (shape, g)) in &by_name {
            let (want_shape, want) = f
                .refs
                .get(&format!("grad.{n}"))
                .unwrap_or_else(|| panic!("{name}: torch has no gradient for {n}"));
            assert_eq!(shape, want_shape, "{name}: {n}");
            let diff: f64 = g
                .iter()
                .zip(want)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
            let rel = diff / norm.max(1e-12);
            if rel > worst.0 {
                worst = (rel, n.clone());
            }
        }
        let torch_params = f.refs.keys().filter(|k| k.starts_with("grad.")).count();
        assert_eq!(by_name.len(), torch_params, "{name}: parameter count");
        eprintln!(
            "{name}: loss {value:.6} (torch {want_loss:.6}); worst gradient {} at {:.2e} relative",
            worst.1, worst.0
        );
        assert!(
            worst.0 < 1e-4,
            "{name}: gradient of {} differs by {:.2e} relative",
            worst.1,
            worst.0
        );
    }
}

/// Export writes the checkpoint's names, shapes and dtype back, and what it
/// writes loads to the same logits (the script checks that transformers
/// loads it too).
#[test]
fn export_then_load_gives_identical_logits() {
    for name in FAMILIES {
        let f = fixture(name);
        let model = f.ckpt.load(&test_device()).unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir(name).join("config.json"),
            out.path().join("config.json"),
        )
        .unwrap();
        let tensors = export::tensors(&model, &f.ckpt.config).unwrap();
        export::write_safetensors(
            &out.path().join("model.safetensors"),
            &tensors,
            f.ckpt.config.dtype,
        )
        .unwrap();
        let again = Checkpoint::open(out.path())
            .unwrap()
            .load(&test_device())
            .unwrap();
        let batch = TokenBatch::left_padded(&rows(&f.meta["logits_rows"]), 0);
        let a = host(model.forward(&batch, None).unwrap());
        let b = host(again.forward(&batch, None).unwrap());
        assert_eq!(a, b, "{name}: exported weights load to other logits");
    }
}

/// A sharded export (`model-0000i-of-0000N.safetensors` and the index, as
/// `save_pretrained(max_shard_size=…)` writes) loads to the same logits as
/// the model it came from, every shard within the limit unless one tensor
/// alone is larger; re-exported unsharded into the same directory, the
/// index is gone and the single file is what loads.
#[test]
fn a_sharded_export_loads_to_identical_logits() {
    for name in FAMILIES {
        let f = fixture(name);
        let model = f.ckpt.load(&test_device()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let limit = 64 * 1024;
        let params = crate::optim::weights(&model);
        let written = export::write_dir_sharded(
            out.path(),
            params.clone(),
            &f.ckpt.config,
            &dir(name),
            limit,
        )
        .unwrap();
        let index: Value = serde_json::from_slice(
            &std::fs::read(out.path().join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(
            map.len(),
            written.len(),
            "{name}: every tensor in the index"
        );
        let shards: std::collections::BTreeSet<&str> =
            map.values().map(|v| v.as_str().unwrap()).collect();
        assert!(shards.len() > 2, "{name}: {} shards", shards.len());
        let width = if matches!(f.ckpt.config.dtype, super::Dtype::F32) {
            4
        } else {
            2
        };
        for shard in &shards {
            let bytes: u64 = map
                .iter()
                .filter(|(_, v)| v.as_str() == Some(shard))
                .map(|(n, _)| written[n].1.len() as u64 * width)
                .sum();
            let tensors = map.values().filter(|v| v.as_str() == Some(shard)).count();
            assert!(
                bytes <= limit || tensors == 1,
                "{name}: {shard} holds {bytes} bytes"
            );
        }
        assert!(!out.path().join("model.safetensors").exists());
        let batch = TokenBatch::left_padded(&rows(&f.meta["logits_rows"]), 0);
        let a = host(model.forward(&batch, None).unwrap());
        let load = |d: &std::path::Path| {
            let m = Checkpoint::open(d).unwrap().load(&test_device()).unwrap();
            host(m.forward(&batch, None).unwrap())
        };
        assert_eq!(
            a,
            load(out.path()),
            "{name}: sharded export loads to other logits"
        );
        export::write_dir(out.path(), params, &f.ckpt.config, &dir(name)).unwrap();
        assert!(!out.path().join("model.safetensors.index.json").exists());
        assert_eq!(
            a,
            load(out.path()),
            "{name}: re-export loads to other logits"
        );
    }
}

/// The checkpoint's tokenizer and template against transformers': the
/// chats rendered byte for byte, their ids, plain texts with the
/// post-processor's specials, decoding, and the stop ids.
#[test]
fn tokenizer_and_chat_template_equal_transformers() {
    use super::tokenizer::HfTokenizer;
    use crate::tokenizer::Tokenizer;
    for name in FAMILIES {
        let d = dir(name);
        let meta: Value =
            serde_json::from_slice(&std::fs::read(d.join("reference.json")).unwrap()).unwrap();
        let tok = HfTokenizer::open(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        let chat = tok.chat_template().expect("a chat template");
        let chats = meta["chats"].as_array().unwrap();
        for (i, c) in chats.iter().enumerate() {
            let got = chat.render(c, true).unwrap();
            assert_eq!(
                got,
                meta["rendered"][i].as_str().unwrap(),
                "{name}: chat {i}"
            );
            let ids = tok.encode(&got).unwrap();
            assert_eq!(ids, rows(&meta["chat_ids"])[i], "{name}: chat {i} ids");
        }
        // One user turn through the trait: the first chat.
        let first = chats[0][0]["content"].as_str().unwrap();
        assert_eq!(
            tok.encode_prompt(first).unwrap(),
            rows(&meta["chat_ids"])[0]
        );
        for (i, t) in meta["texts"].as_array().unwrap().iter().enumerate() {
            let t = t.as_str().unwrap();
            let ids = tok.encode_with_specials(t, true).unwrap();
            assert_eq!(ids, rows(&meta["text_ids"])[i], "{name}: text {t:?}");
            let back = tok.decode_with(&ids, false).unwrap();
            assert_eq!(
                back,
                meta["text_decoded"][i].as_str().unwrap(),
                "{name}: {t:?}"
            );
        }
        let stop: Vec<u32> = meta["stop_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let mut got = tok.stop_ids();
        got.sort_unstable();
        let mut want = stop.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{name}: stop ids");
        assert_eq!(
            tok.pad_id() as u64,
            meta["pad"].as_u64().unwrap(),
            "{name}: pad"
        );
    }
}

/// The real templates of Qwen2.5-Instruct, Llama-3 and -3.1-Instruct and
/// DeepSeek-R1-Distill-Qwen, with and without the generation prompt, over
/// chats with system turns, earlier answers, `<think>` blocks, Jinja-like
/// text in a message, empty and non-ASCII content.
#[test]
fn real_chat_templates_render_byte_identical_to_transformers() {
    use super::chat::ChatTemplate;
    let t = dir("templates");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(t.join("rendered.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 40);
    for (i, c) in cases.iter().enumerate() {
        let file = c["template"].as_str().unwrap();
        let src = std::fs::read_to_string(t.join(file)).unwrap();
        let specials = c["specials"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let tmpl = ChatTemplate::new(&src, specials).unwrap_or_else(|e| panic!("{file}: {e}"));
        let generation = c["add_generation_prompt"].as_bool().unwrap();
        let got = tmpl
            .render(&c["messages"], generation)
            .unwrap_or_else(|e| panic!("{file} case {i}: {e}"));
        assert_eq!(
            got,
            c["rendered"].as_str().unwrap(),
            "{file} case {i} (generation prompt {generation})"
        );
    }
}

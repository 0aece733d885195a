use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::testutil::{host3, tiny_model, variants};

const PAD: u32 = 0;

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 5, 6, 7, 8, 9], vec![1, 4], vec![1, 3, 3, 10]]
}

/// Logits of `row` alone (no padding at all) at each of its positions.
fn unpadded_logits(model: &Transformer, row: &[u32]) -> Vec<Vec<f32>> {
    let batch = TokenBatch::left_padded(&[row.to_vec()], PAD);
    let (v, [_, t, vocab]) = host3(model.forward(&batch, None).unwrap());
    (0..t)
        .map(|i| v[i * vocab..(i + 1) * vocab].to_vec())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_decoding_equals_full_recomputation() {
    for (name, model) in variants() {
        cached_decoding_matches(name, &model);
    }
}

fn cached_decoding_matches(name: &str, model: &Transformer) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let cfg = SamplingConfig {
        stop_tokens: vec![],
        ..SamplingConfig::new(9, 2)
    };
    let out = sample(model, &prompts(), &cfg, PAD, &mut rng).unwrap();
    for (p, r) in prompts().iter().zip(&out) {
        assert_eq!(r.tokens.len(), 9);
        assert!(r.truncated);
        // Recompute every step from scratch over prompt + response, unpadded.
        let full: Vec<u32> = p.iter().chain(&r.tokens).copied().collect();
        let logits = unpadded_logits(model, &full);
        for (i, (&tok, &lp)) in r.tokens.iter().zip(&r.logprobs).enumerate() {
            let row = &logits[p.len() - 1 + i];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
            let full_lp = row[tok as usize] - lse;
            assert!(
                (full_lp - lp).abs() < 1e-4,
                "{name}, step {i}: cached {lp} vs full {full_lp}"
            );
        }
    }
}

#[test]
fn cached_logits_equal_full_pass_step_by_step() {
    for (name, model) in variants() {
        cached_logits_match(name, &model);
    }
}

fn cached_logits_match(name: &str, model: &Transformer) {
    let rows = prompts();
    let cont = [3u32, 4, 5, 6];
    let full_rows: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| r.iter().chain(&cont).copied().collect())
        .collect();
    let full = TokenBatch::left_padded(&full_rows, PAD);
    let (fv, [b, t, vocab]) = host3(model.forward(&full, None).unwrap());

    let prefill = TokenBatch::left_padded(&rows, PAD);
    let mut cache = KvCache::new(model.n_layers(), b);
    let (pv, _) = host3(model.forward(&prefill, Some(&mut cache)).unwrap());
    let p = prefill.len;
    for row in 0..b {
        for i in 0..p {
            let a = &pv[(row * p + i) * vocab..(row * p + i + 1) * vocab];
            let f = &fv[(row * t + i) * vocab..(row * t + i + 1) * vocab];
            if prefill.valid[row * p + i] {
                assert!(max_diff(a, f) < 1e-4, "{name}: prefill row {row} slot {i}");
            }
        }
    }
    for (k, &tok) in cont.iter().enumerate() {
        let step = TokenBatch {
            tokens: vec![tok; b],
            valid: vec![true; b],
            batch: b,
            len: 1,
        };
        let (sv, _) = host3(model.forward(&step, Some(&mut cache)).unwrap());
        for row in 0..b {
            let f = &fv[(row * t + p + k) * vocab..(row * t + p + k + 1) * vocab];
            let d = max_diff(&sv[row * vocab..(row + 1) * vocab], f);
            assert!(d < 1e-4, "{name}: row {row} step {k}: {d}");
        }
    }
    assert_eq!(cache.len(), t);
}

#[test]
fn padding_leaves_unpadded_rows_unchanged() {
    for (name, model) in variants() {
        padding_is_invisible(name, &model);
    }
}

fn padding_is_invisible(name: &str, model: &Transformer) {
    let rows = prompts();
    for batch in [
        TokenBatch::left_padded(&rows, PAD),
        TokenBatch::right_padded(&rows, PAD),
    ] {
        let (v, [_, t, vocab]) = host3(model.forward(&batch, None).unwrap());
        for (r, row) in rows.iter().enumerate() {
            let alone = unpadded_logits(model, row);
            let real: Vec<usize> = (0..t).filter(|&i| batch.valid[r * t + i]).collect();
            assert_eq!(real.len(), row.len());
            for (j, &i) in real.iter().enumerate() {
                let d = max_diff(&v[(r * t + i) * vocab..(r * t + i + 1) * vocab], &alone[j]);
                assert!(d < 1e-4, "{name}: row {r} pos {j}: {d}");
            }
        }
    }
}

#[test]
fn same_seed_same_samples() {
    let model = tiny_model();
    let cfg = SamplingConfig {
        temperature: 1.3,
        top_p: 0.9,
        ..SamplingConfig::new(12, 2)
    };
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        sample(&model, &prompts(), &cfg, PAD, &mut rng).unwrap()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43), "a different seed should change some sample");
}

#[test]
fn stop_tokens_end_responses_and_clear_truncation() {
    let model = tiny_model();
    // Greedy: whatever the argmax token is at the first step, make it the stop token.
    let greedy = SamplingConfig {
        temperature: 0.0,
        stop_tokens: vec![],
        ..SamplingConfig::new(3, 2)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let first = sample(&model, &prompts(), &greedy, PAD, &mut rng).unwrap();
    let stop = first[0].tokens[0];
    let cfg = SamplingConfig {
        stop_tokens: vec![stop],
        ..greedy
    };
    let out = sample(&model, &prompts(), &cfg, PAD, &mut rng).unwrap();
    assert_eq!(out[0].tokens, vec![stop]);
    assert!(!out[0].truncated);
    for r in &out {
        let stopped = r.tokens.last() == Some(&stop);
        assert_eq!(r.truncated, !stopped);
        assert!(r.tokens[..r.tokens.len() - 1].iter().all(|&t| t != stop));
    }
}

#[test]
fn top_p_keeps_only_the_nucleus() {
    let logits = [5.0f32, 4.0, -10.0, -10.0];
    let cfg = SamplingConfig {
        top_p: 0.5,
        ..SamplingConfig::new(1, 2)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200 {
        assert_eq!(choose(&logits, &cfg, &mut rng).0, 0);
    }
}

#[test]
fn too_long_prompts_are_refused() {
    let model = tiny_model();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let long = vec![vec![1u32; 60]];
    let err = sample(&model, &long, &SamplingConfig::new(4, 2), PAD, &mut rng).unwrap_err();
    assert!(matches!(err, Error::TooLong { .. }), "{err}");
}

#[test]
fn shards_decoding_in_parallel_sample_what_one_batch_samples() {
    let model = tiny_model();
    // 24 rows of mixed lengths; stop token 2 ends some rows early.
    let prompts: Vec<Vec<u32>> = (0..24)
        .map(|i| {
            let mut p = vec![1];
            p.extend((0..1 + i % 5).map(|j| 3 + ((i * 7 + j * 3) % 9) as u32));
            p
        })
        .collect();
    let cfg = SamplingConfig {
        temperature: 0.9,
        ..SamplingConfig::new(10, 2)
    };
    let in_pool = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let ranges = shards(prompts.len(), &model);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            (
                ranges,
                sample(&model, &prompts, &cfg, PAD, &mut rng).unwrap(),
            )
        })
    };
    let (one, whole) = in_pool(1);
    let (three, sharded) = in_pool(3);
    assert_eq!(one, vec![0..24]);
    assert_eq!(three, vec![0..8, 8..16, 16..24]);
    assert!(whole.iter().any(|r| !r.truncated) && whole.iter().any(|r| r.truncated));
    for (a, b) in whole.iter().zip(&sharded) {
        assert_eq!((&a.tokens, a.truncated), (&b.tokens, b.truncated));
        assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-4);
    }
}

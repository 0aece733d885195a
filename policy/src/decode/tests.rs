use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::sample::sample;
use crate::testutil::{host3, variants};

const PAD: u32 = 0;

fn request(id: u64, prompt: Vec<u32>, sampling: SamplingConfig, seed: u64) -> Request {
    Request {
        id,
        prompt,
        sampling,
        rng: ChaCha8Rng::seed_from_u64(seed),
        top_logprobs: 0,
        prompt_logprobs: false,
        stop: None,
    }
}

fn greedy(max: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        stop_tokens: vec![],
        ..SamplingConfig::new(max, 2)
    }
}

/// Runs the decoder to the end, admitting `late` after `after` steps; returns
/// the finished sequences by id.
fn run(
    model: &Transformer,
    early: Vec<Request>,
    late: Vec<Request>,
    after: usize,
) -> Vec<Finished> {
    // Two shards' worth of threads, as on the CI machine.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let mut d = Decoder::new(model, PAD);
        d.admit(model, early).unwrap();
        let mut late = Some(late);
        let mut out = Vec::new();
        let mut steps = 0;
        while d.running() > 0 || late.is_some() {
            if steps == after
                && let Some(l) = late.take()
            {
                d.admit(model, l).unwrap();
            }
            out.extend(d.step(model).unwrap());
            steps += 1;
        }
        out.sort_by_key(|f| f.id);
        out
    })
}

#[test]
fn rows_joining_mid_decode_get_what_they_would_alone() {
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 5, 6, 7, 8, 9],
        vec![1, 4],
        vec![1, 3, 3, 10],
        vec![1, 7, 7, 7, 7, 7, 7, 7, 2],
        vec![1, 9],
    ];
    let lens = [9usize, 3, 12, 5, 7];
    for (name, model) in variants() {
        let reqs = |ids: std::ops::Range<usize>| {
            ids.map(|i| request(i as u64, prompts[i].clone(), greedy(lens[i]), 0))
                .collect::<Vec<_>>()
        };
        let out = run(&model, reqs(0..2), reqs(2..5), 2);
        assert_eq!(out.len(), 5, "{name}");
        for (i, f) in out.iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let alone = sample(
                &model,
                &[prompts[i].clone()],
                &greedy(lens[i]),
                PAD,
                &mut rng,
            )
            .unwrap()
            .remove(0);
            assert_eq!(f.tokens, alone.tokens, "{name}: row {i}");
            for (a, b) in f.logprobs.iter().zip(&alone.logprobs) {
                assert!((a - b).abs() < 1e-4, "{name}: row {i}: {a} vs {b}");
            }
            assert_eq!(f.finish, Finish::Length);
        }
    }
}

#[test]
fn a_seeded_row_samples_the_same_whatever_shares_its_batch() {
    let (_, model) = variants().remove(0);
    let hot = |max| SamplingConfig {
        temperature: 1.0,
        top_p: 0.9,
        stop_tokens: vec![],
        ..SamplingConfig::new(max, 2)
    };
    let alone = run(
        &model,
        vec![request(7, vec![1, 5, 6], hot(10), 42)],
        vec![],
        0,
    );
    let crowded = run(
        &model,
        (0..5)
            .map(|i| request(i, vec![1, 3 + i as u32], hot(6), i))
            .collect(),
        vec![request(7, vec![1, 5, 6], hot(10), 42)],
        3,
    );
    let seven = crowded.iter().find(|f| f.id == 7).unwrap();
    assert_eq!(seven.tokens, alone[0].tokens);
}

#[test]
fn stop_tokens_and_callbacks_end_a_row_and_others_go_on() {
    let (_, model) = variants().remove(0);
    // Find the first greedy token of a prompt, then stop on it.
    let first = run(
        &model,
        vec![request(0, vec![1, 4], greedy(4), 0)],
        vec![],
        0,
    )[0]
    .tokens[0];
    let mut stop_on_first = greedy(8);
    stop_on_first.stop_tokens = vec![first];
    let mut by_callback = request(2, vec![1, 4], greedy(8), 0);
    by_callback.stop = Some(Box::new(|toks: &[u32]| toks.len() == 3));
    let out = run(
        &model,
        vec![
            request(0, vec![1, 4], stop_on_first, 0),
            request(1, vec![1, 4], greedy(8), 0),
            by_callback,
        ],
        vec![],
        0,
    );
    assert_eq!(out[0].tokens, vec![first]);
    assert_eq!(out[0].finish, Finish::Stop);
    assert_eq!(out[1].tokens.len(), 8);
    assert_eq!(out[1].finish, Finish::Length);
    assert_eq!(out[2].tokens.len(), 3);
    assert_eq!(out[2].finish, Finish::Stop);
}

#[test]
fn prompt_and_top_logprobs_match_a_full_forward_pass() {
    let (name, model) = variants().remove(1);
    let prompt = vec![1u32, 5, 6, 7, 8];
    let mut short = request(1, vec![1, 3], greedy(2), 0);
    short.prompt_logprobs = true;
    let mut req = request(0, prompt.clone(), greedy(3), 0);
    req.prompt_logprobs = true;
    req.top_logprobs = 3;
    let out = run(&model, vec![req, short], vec![], 0);
    let f = &out[0];
    let full: Vec<u32> = prompt.iter().chain(&f.tokens).copied().collect();
    let batch = TokenBatch::left_padded(std::slice::from_ref(&full), PAD);
    let (v, [_, t, vocab]) = host3(model.forward(&batch, None).unwrap());
    let lp_at =
        |pos: usize, tok: u32| log_softmax(&v[pos * vocab..(pos + 1) * vocab], 1.0)[tok as usize];
    let scored = f.prompt_logprobs.as_ref().unwrap();
    assert_eq!(scored.len(), prompt.len() - 1);
    for i in 1..prompt.len() {
        let want = lp_at(i - 1, prompt[i]);
        assert!(
            (scored[i - 1] - want).abs() < 1e-4,
            "{name}: prompt token {i}"
        );
    }
    assert_eq!(t, full.len());
    for (j, top) in f.top.iter().enumerate() {
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0].0, f.tokens[j]);
        assert!((top[0].1 - f.logprobs[j]).abs() < 1e-6);
        assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
        let want = lp_at(prompt.len() - 1 + j, top[2].0);
        assert!((top[2].1 - want).abs() < 1e-4);
    }
    assert_eq!(out[1].prompt_logprobs.as_ref().unwrap().len(), 1);
}

#[test]
fn a_prompt_too_long_for_the_model_admits_nothing() {
    let (_, model) = variants().remove(0);
    let mut d = Decoder::new(&model, PAD);
    let long = vec![1u32; model.max_len()];
    let err = d
        .admit(
            &model,
            vec![
                request(0, vec![1, 2], greedy(2), 0),
                request(1, long, greedy(2), 0),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, Error::TooLong { .. }), "{err}");
    assert_eq!(d.running(), 0);
}

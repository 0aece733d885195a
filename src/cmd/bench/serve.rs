//! `gradus bench serve`: `gradus serve` under 1, 8 and 64 concurrent HTTP
//! clients against the same model's local batched sampling, the ceiling.
//!
//! The model is a Hugging Face checkpoint (`--model`), or by default the
//! test fixture's Qwen2 architecture and tokenizer scaled to `--hidden` and
//! `--layers` with random weights (written to a temp dir with gradus's HF
//! export, so the server loads it as users' checkpoints load). At each
//! concurrency N, N clients (each on its own kept-alive connection) send
//! `rounds × N` completions in all, each a random `--prompt-len`-token prompt
//! as token ids asking for exactly `--max-tokens` tokens (`ignore_eos`); the
//! server runs in its own process with `--max-batch 64` and the same threads.
//! The ceiling samples the same number of prompts in this process, in
//! batches of N (`Policy::sample`: one static batch, no HTTP, no scheduling).
//! Printed per N: requests/s, generated tokens/s, p50/p99 latency (send to
//! answer) for both, and the ratio of tokens/s; the last line is JSON.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::percentile;
use anyhow::Context;
use gradus_policy::device::ComputeThread;
use gradus_policy::hf::HfConfig;
use gradus_policy::{Policy, SamplingConfig, Tokenizer};
use gradus_sandbox::service::http::Pool;
use hyper::body::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint to serve (default: a random model of the
    /// fixture's architecture at --hidden and --layers).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Width of the default model.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Blocks of the default model.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Concurrent clients, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Requests per client at each level.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// Generated tokens per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Threads, for the server's compute thread and the local ceiling alike.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the prompts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One way at one level.
#[derive(Debug, Clone, Copy)]
struct Figures {
    requests_per_s: f64,
    tokens_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Figures {
    fn of(seconds: f64, tokens: usize, mut latencies: Vec<f64>) -> Self {
        latencies.sort_by(f64::total_cmp);
        Figures {
            requests_per_s: latencies.len() as f64 / seconds,
            tokens_per_s: tokens as f64 / seconds,
            p50_ms: percentile(&latencies, 0.5) * 1e3,
            p99_ms: percentile(&latencies, 0.99) * 1e3,
        }
    }

    fn json(&self) -> Value {
        json!({"requests_per_s": self.requests_per_s, "tokens_per_s": self.tokens_per_s,
               "p50_ms": self.p50_ms, "p99_ms": self.p99_ms})
    }
}

/// The fixture's architecture and tokenizer at `hidden` × `layers`, random weights.
fn scaled_model(dir: &Path, hidden: usize, layers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        hidden.is_multiple_of(4) && hidden >= 8,
        "--hidden must be a multiple of 4 (4 heads)"
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2");
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("config.json")).context("the fixture's config")?,
    )?;
    config["hidden_size"] = json!(hidden);
    config["intermediate_size"] = json!(hidden * 3);
    config["num_hidden_layers"] = json!(layers);
    config["layer_types"] = json!(vec!["full_attention"; layers]);
    config["max_position_embeddings"] = json!(1024);
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let hf = HfConfig::read(dir)?;
    let device = gradus_policy::device::device(&Default::default())?;
    let model = gradus_policy::Transformer::init(&hf.model_config(), &device)?;
    let named = gradus_policy::hf::export::tensors(&model, &hf)?;
    gradus_policy::hf::export::write_safetensors(&dir.join("model.safetensors"), &named, hf.dtype)?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(fixture.join(f), dir.join(f))?;
    }
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.rounds >= 1 && a.prompt_len >= 1 && a.max_tokens >= 1,
        "--rounds, --prompt-len and --max-tokens must be ≥ 1"
    );
    anyhow::ensure!(a.clients.iter().all(|c| *c >= 1), "--clients must be ≥ 1");
    let tmp = tempfile::tempdir()?;
    let model_dir = match &a.model {
        Some(m) => m.clone(),
        None => {
            scaled_model(tmp.path(), a.hidden, a.layers)?;
            tmp.path().to_path_buf()
        }
    };
    let device = gradus_policy::device::device(&gradus_policy::ComputeConfig {
        device: "cpu".into(),
        threads: a.threads,
        ..Default::default()
    })?;
    let loaded = super::super::model::load(&model_dir, &device, "bench serve", true, None)?;
    let vocab = Tokenizer::vocab_size(&loaded.tok) as u32;
    let pad = loaded.tok.pad_id();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut prompt = || -> Vec<u32> {
        (0..a.prompt_len)
            .map(|_| rng.random_range(3..vocab))
            .collect()
    };
    let levels: Vec<(usize, Vec<Vec<u32>>)> = a
        .clients
        .iter()
        .map(|&n| (n, (0..n * a.rounds).map(|_| prompt()).collect()))
        .collect();
    println!(
        "gradus bench serve: {} ({} layers, d_model {}), prompts of {} tokens, {} generated each, {} threads",
        model_dir.display(),
        loaded.config.n_layers,
        loaded.config.d_model,
        a.prompt_len,
        a.max_tokens,
        a.threads
    );

    // The ceiling: the same model sampling the same prompts in batches of N.
    let thread = ComputeThread::spawn("bench-serve", a.threads)?;
    let policy = Arc::new(Policy::from_model(loaded.model, loaded.config.clone(), pad));
    let sampling = SamplingConfig {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: a.max_tokens,
        stop_tokens: Vec::new(),
    };
    let mut local = Vec::new();
    for (n, prompts) in &levels {
        let (policy, sampling, prompts, n) =
            (policy.clone(), sampling.clone(), prompts.clone(), *n);
        let f = thread.run(move || -> anyhow::Result<Figures> {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            policy.sample(&prompts[..n.min(prompts.len())], &sampling, &mut rng)?; // warm-up
            let started = Instant::now();
            let (mut tokens, mut lat) = (0, Vec::new());
            for batch in prompts.chunks(n) {
                let t = Instant::now();
                let out = policy.sample(batch, &sampling, &mut rng)?;
                tokens += out.iter().map(|r| r.tokens.len()).sum::<usize>();
                lat.extend(std::iter::repeat_n(t.elapsed().as_secs_f64(), batch.len()));
            }
            Ok(Figures::of(started.elapsed().as_secs_f64(), tokens, lat))
        })??;
        local.push(f);
    }
    drop(thread);
    drop(policy);

    // The server, in its own process as users run it.
    let model_arg = model_dir.to_string_lossy().into_owned();
    let threads_arg = a.threads.to_string();
    let (mut child, addr) = super::spawn_server(
        &[
            "serve",
            "--model",
            &model_arg,
            "--listen",
            "127.0.0.1:0",
            "--served-model-name",
            "bench",
            "--max-batch",
            "64",
            "--max-queue",
            "1024",
            "--threads",
            &threads_arg,
        ],
        Stdio::null(),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut served = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        // Warm-up: one request through every part of the server.
        rt.block_on(drive(&addr, vec![levels[0].1[0].clone()], 1, a.max_tokens))?;
        for (n, prompts) in &levels {
            served.push(rt.block_on(drive(&addr, prompts.clone(), *n, a.max_tokens))?);
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;

    let mut rows = Vec::new();
    for (((n, _), l), s) in levels.iter().zip(&local).zip(&served) {
        let ratio = s.tokens_per_s / l.tokens_per_s;
        println!(
            "{n:>3} clients: serve {:>6.1} req/s {:>8.0} tok/s p50 {:>7.0} ms p99 {:>7.0} ms · local batch {n:<3} {:>6.1} req/s {:>8.0} tok/s p50 {:>7.0} ms p99 {:>7.0} ms · serve/local {ratio:.2}×",
            s.requests_per_s,
            s.tokens_per_s,
            s.p50_ms,
            s.p99_ms,
            l.requests_per_s,
            l.tokens_per_s,
            l.p50_ms,
            l.p99_ms
        );
        rows.push(json!({"clients": n, "serve": s.json(), "local": l.json(),
                         "tokens_per_s_serve_over_local": ratio}));
    }
    println!(
        "{}",
        json!({"bench": "serve", "threads": a.threads, "prompt_len": a.prompt_len,
               "max_tokens": a.max_tokens, "rounds": a.rounds, "levels": rows})
    );
    Ok(ExitCode::SUCCESS)
}

/// `prompts` sent by `clients` concurrent clients, each on its own connection,
/// each taking the next unsent prompt when its last answer is in.
async fn drive(
    addr: &str,
    prompts: Vec<Vec<u32>>,
    clients: usize,
    max_tokens: usize,
) -> anyhow::Result<Figures> {
    let queue = Arc::new(std::sync::Mutex::new(prompts));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (queue, pool) = (queue.clone(), Pool::new(addr, None));
        tasks.spawn(async move {
            let (mut tokens, mut lat) = (0usize, Vec::new());
            loop {
                let Some(p) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                    break;
                };
                let body = json!({"model": "bench", "prompt": p, "max_tokens": max_tokens,
                                  "temperature": 1.0, "ignore_eos": true});
                let t = Instant::now();
                let (status, _, bytes) = pool
                    .call(
                        "POST",
                        "/v1/completions",
                        Bytes::from(body.to_string()),
                        Duration::from_secs(600),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                anyhow::ensure!(
                    status.is_success(),
                    "gradus serve answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
                let v: Value = serde_json::from_slice(&bytes)?;
                tokens += v["usage"]["completion_tokens"]
                    .as_u64()
                    .context("no usage.completion_tokens")? as usize;
                lat.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok((tokens, lat))
        });
    }
    let (mut tokens, mut lat) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (t, l) = r??;
        tokens += t;
        lat.extend(l);
    }
    Ok(Figures::of(started.elapsed().as_secs_f64(), tokens, lat))
}

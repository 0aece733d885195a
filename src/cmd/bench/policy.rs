//! `gradus bench policy`: training and sampling throughput of the burn policy
//! against the identical PyTorch model (`benches/torch_policy.py`), measured
//! in the same invocation on the same thread count.
//!
//! Training is one full update per step (forward, token-mean cross-entropy,
//! backward, global-norm clipping, AdamW) on `batch × seq` tokens; sampling is
//! KV-cached generation of `new_tokens` per row after a `prompt_len` prefill,
//! on the non-autodiff model. The last stdout line is one JSON object for
//! scripts; torch fields are null when PyTorch is missing.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use gradus_policy::device::ComputeThread;
use gradus_policy::{
    Learner, ModelConfig, OptimizerConfig, Policy, SamplingConfig, SftExample, WeightsSnapshot,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Threads for burn's CPU backend and for torch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Model width.
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 64)]
    vocab: usize,
    /// Training sequence length (tokens fed per row).
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Rows per training step and per sampling run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Prompt length when sampling.
    #[arg(long, default_value_t = 16)]
    prompt_len: usize,
    /// Tokens sampled per row.
    #[arg(long, default_value_t = 48)]
    new_tokens: usize,
    /// Timed training steps (after warmup).
    #[arg(long, default_value_t = 20)]
    train_steps: usize,
    /// Timed sampling runs (after one warmup run).
    #[arg(long, default_value_t = 3)]
    sample_runs: usize,
    /// Untimed training steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Python interpreter for the PyTorch peer.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The PyTorch peer script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_policy.py"))]
    torch_script: PathBuf,
    /// Skip the PyTorch peer.
    #[arg(long)]
    no_torch: bool,
    /// A Hugging Face checkpoint directory to bench instead of the built-in
    /// model: its shape and weights here, the same directory loaded by
    /// transformers in the peer (`--layers`, `--d-model`, `--heads` and
    /// `--vocab` are then the checkpoint's).
    #[arg(long)]
    hf: Option<PathBuf>,
    /// Train with burn's balanced gradient checkpointing (`[compute]
    /// gradient_checkpointing`); the torch peer stays as it is.
    #[arg(long)]
    gradient_checkpointing: bool,
}

struct Figures {
    train: f64,
    sample: f64,
    train_ms: f64,
    sample_ms: f64,
    /// Peak resident memory of the process, MB.
    peak_mb: f64,
    /// The same after the training steps, before sampling (which adds the
    /// sampler's copy of the weights), MB.
    train_peak_mb: f64,
}

/// What is benched: the built-in model of the flags' shape, or a checkpoint.
#[derive(Clone)]
enum Subject {
    BuiltIn(ModelConfig),
    Hf(PathBuf, ModelConfig),
}

impl Subject {
    fn config(&self) -> &ModelConfig {
        match self {
            Subject::BuiltIn(c) | Subject::Hf(_, c) => c,
        }
    }
}

/// Peak resident set of this process so far, MB (Linux reports KiB).
fn peak_rss_mb() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let needed = (a.seq).max(a.prompt_len + a.new_tokens);
    let subject = match &a.hf {
        Some(dir) => {
            let ckpt = gradus_policy::hf::load::Checkpoint::open(dir)?;
            let mut cfg = ckpt.model_config();
            anyhow::ensure!(
                needed <= cfg.max_len,
                "--seq / --prompt-len + --new-tokens need {needed} positions, the checkpoint has {}",
                cfg.max_len
            );
            cfg.max_len = needed;
            Subject::Hf(dir.clone(), cfg)
        }
        None => {
            let model = ModelConfig {
                d_model: a.d_model,
                n_layers: a.layers,
                n_heads: a.heads,
                max_len: needed,
                ..ModelConfig::new(a.vocab)
            };
            model.validate().context("bench model")?;
            anyhow::ensure!(a.vocab > 3, "--vocab must be > 3");
            Subject::BuiltIn(model)
        }
    };
    let cfg = subject.config();
    println!(
        "model: {} layers, d_model {}, {} query / {} key-value heads, vocabulary {}{}",
        cfg.n_layers,
        cfg.d_model,
        cfg.n_heads,
        cfg.kv_heads(),
        cfg.vocab_size,
        a.hf.as_ref()
            .map_or(String::new(), |d| format!(", from {}", d.display()))
    );
    let model = subject.clone();
    let compute = ComputeThread::spawn("bench-policy", a.threads)?;
    let args = a.clone();
    let burn = compute
        .run(move || bench_burn(&args, model))
        .context("burn bench thread")??;
    println!(
        "burn (flex, {} threads{}): train {:.0} tokens/s ({:.1} ms/step), sample {:.0} tokens/s ({:.1} ms/run), peak RSS {:.0} MB ({:.0} MB in training)",
        a.threads,
        if a.gradient_checkpointing {
            ", gradient checkpointing"
        } else {
            ""
        },
        burn.train,
        burn.train_ms,
        burn.sample,
        burn.sample_ms,
        burn.peak_mb,
        burn.train_peak_mb
    );
    let torch = if a.no_torch { None } else { run_torch(&a)? };
    if let Some(t) = &torch {
        println!(
            "pytorch: train {:.0} tokens/s, sample {:.0} tokens/s, peak RSS {:.0} MB; burn/torch ratio: train {:.2}x, sample {:.2}x, peak memory {:.2}x",
            t.train,
            t.sample,
            t.peak_mb,
            burn.train / t.train,
            burn.sample / t.sample,
            burn.peak_mb / t.peak_mb
        );
    }
    let json = serde_json::json!({
        "train_tokens_per_s": burn.train,
        "sample_tokens_per_s": burn.sample,
        "peak_rss_mb": burn.peak_mb,
        "train_peak_rss_mb": burn.train_peak_mb,
        "torch_train_tokens_per_s": torch.as_ref().map(|t| t.train),
        "torch_sample_tokens_per_s": torch.as_ref().map(|t| t.sample),
        "torch_peak_rss_mb": torch.as_ref().map(|t| t.peak_mb),
        "train_ratio": torch.as_ref().map(|t| burn.train / t.train),
        "sample_ratio": torch.as_ref().map(|t| burn.sample / t.sample),
        "memory_ratio": torch.as_ref().map(|t| burn.peak_mb / t.peak_mb),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

fn bench_burn(a: &Args, subject: Subject) -> Result<Figures> {
    let device = gradus_policy::device::learner_device(&gradus_policy::ComputeConfig {
        gradient_checkpointing: a.gradient_checkpointing,
        ..Default::default()
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let vocab = subject.config().vocab_size as u32;
    let mut token = || rng.random_range(3..vocab);
    // A one-token prompt and `seq` completion tokens: `seq` fed slots per row,
    // all of them trained, like the peer's causal-LM step.
    let examples: Vec<SftExample> = (0..a.batch)
        .map(|_| SftExample {
            prompt: vec![1],
            completion: (0..a.seq).map(|_| token()).collect(),
        })
        .collect();
    let prompts: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| (0..a.prompt_len).map(|_| token()).collect())
        .collect();
    let opt = OptimizerConfig::default();
    let mut learner = match &subject {
        Subject::BuiltIn(model) => Learner::new(model.clone(), opt, &device, 0, 0)?,
        Subject::Hf(dir, model) => Learner::from_pretrained(
            &gradus_policy::hf::load::Checkpoint::open(dir)?,
            Some(model.max_len),
            opt,
            &device,
            0,
            0,
        )?,
    };
    for _ in 0..a.warmup {
        learner.sft_step(&examples)?;
    }
    let t0 = Instant::now();
    for _ in 0..a.train_steps {
        learner.sft_step(&examples)?;
    }
    let train_s = t0.elapsed().as_secs_f64() / a.train_steps.max(1) as f64;
    let train_peak_mb = peak_rss_mb();

    let snap: WeightsSnapshot = learner.snapshot();
    let policy = Policy::from_snapshot(&snap, &device, 0)?;
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 1.0,
        max_new_tokens: a.new_tokens,
        stop_tokens: vec![],
    };
    let mut srng = ChaCha8Rng::seed_from_u64(1);
    policy.sample(&prompts, &cfg, &mut srng)?;
    let t0 = Instant::now();
    for _ in 0..a.sample_runs {
        let out = policy.sample(&prompts, &cfg, &mut srng)?;
        debug_assert!(out.iter().all(|r| r.tokens.len() == a.new_tokens));
    }
    let sample_s = t0.elapsed().as_secs_f64() / a.sample_runs.max(1) as f64;
    Ok(Figures {
        train: (a.batch * a.seq) as f64 / train_s,
        sample: (a.batch * a.new_tokens) as f64 / sample_s,
        train_ms: train_s * 1e3,
        sample_ms: sample_s * 1e3,
        peak_mb: peak_rss_mb(),
        train_peak_mb,
    })
}

/// The PyTorch peer's figures.
struct Peer {
    train: f64,
    sample: f64,
    peak_mb: f64,
}

/// Runs the PyTorch peer; `None` when it reports torch missing.
fn run_torch(a: &Args) -> Result<Option<Peer>> {
    let mut cmd = Command::new(&a.python);
    if let Some(dir) = &a.hf {
        cmd.arg(&a.torch_script).arg("--hf").arg(dir);
    } else {
        cmd.arg(&a.torch_script);
    }
    let out = cmd
        .args(["--threads", &a.threads.to_string()])
        .args(["--layers", &a.layers.to_string()])
        .args(["--d-model", &a.d_model.to_string()])
        .args(["--heads", &a.heads.to_string()])
        .args(["--vocab", &a.vocab.to_string()])
        .args(["--seq", &a.seq.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .args(["--prompt-len", &a.prompt_len.to_string()])
        .args(["--new-tokens", &a.new_tokens.to_string()])
        .args(["--train-steps", &a.train_steps.to_string()])
        .args(["--sample-runs", &a.sample_runs.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", a.python, a.torch_script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} exited with {}",
        a.torch_script.display(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .context("the torch peer printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(last)
        .with_context(|| format!("the torch peer's last line is not JSON: {last}"))?;
    Ok(
        match (
            v["train_tokens_per_s"].as_f64(),
            v["sample_tokens_per_s"].as_f64(),
        ) {
            (Some(train), Some(sample)) => Some(Peer {
                train,
                sample,
                peak_mb: v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            }),
            _ => None,
        },
    )
}

//! `gradus curate`: measure every prompt's difficulty with the current policy.
//!
//! K responses are sampled per prompt with the policy of a run (its latest
//! checkpoint) or a given checkpoint, graded by the math grader or run in the
//! sandbox exactly as during training, and the prompts are written back with
//! their empirical pass rate as `difficulty` and the pass-rate bucket of the
//! run config that holds it. Prompts solved by none or all of the K responses
//! give GRPO no signal; as in both papers' curation they are set aside, to a
//! separate file, and counted. The pure part (bucketing, histogram, outputs)
//! is `gradus_actors::curriculum::curate`, tested without a model.
//!
//! With `--endpoint URL --model NAME` the samples come from a reference model
//! on any OpenAI-compatible server instead ([`endpoint`]), and the counts are
//! added to `metadata.curate.pass_rates.NAME`: nothing is set aside, and runs
//! with several models accumulate in one file, for buckets defined on several
//! models' pass rates (`pass_rates = [...]` buckets).

mod endpoint;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::locate_checkpoint;
use anyhow::{Context, bail};
use gradus::config::RunConfig;
use gradus_actors::curriculum::config::BucketRule;
use gradus_actors::curriculum::curate::{self, CurateOptions, Solver};
use gradus_actors::data::{Domain, FormatChoice, Loaded, Problem};
use gradus_actors::rollout;
use gradus_policy::hf::tokenizer::AnyTokenizer;
use gradus_policy::{Learner, Policy, SamplingConfig, Tokenizer};
use gradus_sandbox::{Sandbox, Verdict};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args)]
pub struct Args {
    /// Run config: its tokenizer, model, grader and sandbox settings, and the pass-rate
    /// buckets ([[curriculum.buckets]] with `pass_rate = [lo, hi]`) prompts are sorted into.
    #[arg(long)]
    config: PathBuf,
    /// Problems to curate (gradus JSONL or a public shape).
    #[arg(long)]
    input: PathBuf,
    /// Row shape of the input: auto, gradus, math, gsm8k, deepscaler, humaneval, lcb.
    #[arg(long, default_value = "auto")]
    format: FormatChoice,
    /// Responses sampled per prompt (K).
    #[arg(long)]
    samples: usize,
    /// The policy: a run directory (its latest checkpoint) or one checkpoint directory.
    /// Without it, a freshly initialised policy from the config (useful only for testing).
    #[arg(long, conflicts_with = "endpoint")]
    policy: Option<PathBuf>,
    /// Sample from a reference model on this OpenAI-compatible server (`http://HOST:PORT`)
    /// instead of the policy; needs --model.
    #[arg(long, requires = "model")]
    endpoint: Option<String>,
    /// The served model's name: sent in every request, and the key its counts are added
    /// to (`metadata.curate.pass_rates.NAME`).
    #[arg(long, requires = "endpoint")]
    model: Option<String>,
    /// Environment variable holding the endpoint's API key (sent as a bearer token).
    #[arg(long)]
    api_key_env: Option<String>,
    /// The endpoint route: `chat` (the prompt as a user message; the server applies the
    /// model's chat template) or `completions` (the prompt text as it is).
    #[arg(long, value_enum, default_value = "chat")]
    api: endpoint::Api,
    /// Requests in flight to the endpoint (each asks for all K samples of one prompt).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds one endpoint request may take.
    #[arg(long, default_value_t = 600.0)]
    timeout_s: f64,
    /// Seconds a prompt's request is retried while the endpoint is busy or down.
    #[arg(long, default_value_t = 900.0)]
    give_up_s: f64,
    /// The curated dataset (default: INPUT with `.curated.jsonl`; with --model, INPUT
    /// with `.rated.jsonl`, or INPUT itself when it is one, so the counts of several
    /// models accumulate in one file); the set-aside prompts and the histogram are
    /// written beside it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Where malformed input rows go (default: OUTPUT with `.rejects.jsonl`).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Response length limit in tokens (default: the largest of the config's stages).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Prompts sampled and graded together; progress is shown after each batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write every sampled response with its verdict here (JSONL), for inspection.
    #[arg(long)]
    responses: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.samples >= 1, "--samples must be ≥ 1");
    anyhow::ensure!(args.batch >= 1, "--batch must be ≥ 1");
    let config =
        RunConfig::from_path(&args.config).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let output = args.output.clone().unwrap_or_else(|| {
        if args.model.is_none() {
            sibling(&args.input, "curated.jsonl")
        } else if args.input.to_string_lossy().ends_with(".rated.jsonl") {
            args.input.clone()
        } else {
            sibling(&args.input, "rated.jsonl")
        }
    });
    let rejects_path = args
        .rejects
        .clone()
        .unwrap_or_else(|| sibling(&output, "rejects.jsonl"));

    let loaded = Loaded::read_files(std::slice::from_ref(&args.input), args.format)
        .context("reading the input")?;
    for r in &loaded.rejects {
        eprintln!("{r}");
    }
    loaded
        .write_rejects(&rejects_path)
        .context("writing the rejects file")?;
    let rejected = loaded.rejected();
    let problems = loaded
        .into_problems(1.0)
        .context("the input cannot be curated")?;
    if problems.is_empty() {
        bail!("{}: no valid problems to curate", args.input.display());
    }
    let buckets = config.curriculum.buckets.clone();
    if args.model.is_none()
        && !buckets
            .iter()
            .any(|b| matches!(b.rule, BucketRule::PassRate { .. }))
    {
        eprintln!(
            "gradus curate: warning: {} defines no pass-rate buckets; kept prompts get a pass rate but no bucket",
            args.config.display()
        );
    }
    if let Some(model) = &args.model
        && !buckets.iter().any(|b| match &b.rule {
            BucketRule::Models(r) => r.models().contains(&model.as_str()),
            _ => false,
        })
    {
        eprintln!(
            "gradus curate: note: no pass_rates bucket of {} names {model}; its rates are recorded all the same",
            args.config.display()
        );
    }

    let longest = config
        .curriculum
        .stages
        .iter()
        .map(|s| s.generation.max_response_tokens as usize)
        .max()
        .unwrap_or(64);
    let max_tokens = args.max_tokens.unwrap_or(longest);
    let tokenizer = config.tokenizer().context("the run's tokenizer")?;
    let sampler = match (&args.endpoint, &args.model) {
        (Some(url), Some(model)) => {
            let api_key = match &args.api_key_env {
                Some(name) => Some(std::env::var(name).with_context(|| {
                    format!("--api-key-env: the environment variable {name} is not set")
                })?),
                None => None,
            };
            anyhow::ensure!(
                args.timeout_s > 0.0 && args.give_up_s > 0.0,
                "--timeout-s and --give-up-s must be > 0"
            );
            let settings = endpoint::Settings {
                model: model.clone(),
                api: args.api,
                max_tokens,
                temperature: args.temperature,
                top_p: 1.0,
                seed: args.seed,
                concurrency: args.concurrency,
                timeout: std::time::Duration::from_secs_f64(args.timeout_s),
                give_up: std::time::Duration::from_secs_f64(args.give_up_s),
            };
            eprintln!("gradus curate: sampling {model} at {url}");
            Sampler::Endpoint(endpoint::Endpoint::new(url, api_key, settings)?)
        }
        _ => {
            let device = gradus_policy::device::device(&config.compute).context("[compute]")?;
            let policy = load_policy(args.policy.as_deref(), &config, &tokenizer, &device)?;
            Sampler::Policy {
                policy,
                rng: ChaCha8Rng::seed_from_u64(args.seed),
                sampling: SamplingConfig {
                    temperature: args.temperature,
                    top_p: 1.0,
                    max_new_tokens: max_tokens,
                    stop_tokens: tokenizer.stop_ids(),
                },
            }
        }
    };
    let runtime = super::train::runtime()?;
    let sandbox = if problems.iter().any(|p| p.domain == Domain::Code) {
        Some(Arc::new(Sandbox::new(config.sandbox.clone()).context(
            "[sandbox] (run `gradus sandbox doctor` to see which protections this machine lacks)",
        )?))
    } else {
        None
    };
    let responses = match &args.responses {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut solver = Solving {
        responses,
        sampler,
        tokenizer,
        grade: config.grader.clone(),
        sandbox,
        runtime,
    };

    let total = problems.len();
    eprintln!(
        "gradus curate: {total} prompts × {} samples ({rejected} rows rejected)",
        args.samples
    );
    let started = Instant::now();
    let mut progress = |done: usize, total: usize| {
        let secs = started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = (total - done) as f64 / rate.max(1e-9);
        eprintln!(
            "gradus curate: {done}/{total} prompts ({:.0}%), {rate:.1} prompts/s, eta {eta:.0} s",
            100.0 * done as f64 / total as f64
        );
    };
    let opts = CurateOptions {
        samples: args.samples,
        batch: args.batch,
    };
    let curated = match &args.model {
        Some(model) => curate::rate(
            problems,
            model,
            &config.curriculum,
            &opts,
            &mut solver,
            &mut progress,
        )?,
        None => curate::curate(problems, &buckets, &opts, &mut solver, &mut progress)?,
    };
    if let Some(w) = solver.responses.as_mut() {
        std::io::Write::flush(w).context("writing --responses")?;
    }
    let paths = curate::write_outputs::<SolveError>(&curated, &output)?;
    let h = &curated.histogram;
    if let Some(model) = &args.model {
        eprintln!(
            "gradus curate: {model}'s counts added to {} prompts in {} ({} solved by none of this run's samples, {} by all) · histogram in {}",
            h.kept,
            paths.dataset.display(),
            h.never_solved,
            h.always_solved,
            paths.histogram.display()
        );
    } else {
        eprintln!(
            "gradus curate: kept {} in {} · set aside {} never solved and {} always solved in {} · histogram in {}",
            h.kept,
            paths.dataset.display(),
            h.never_solved,
            h.always_solved,
            paths.set_aside.display(),
            paths.histogram.display()
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "kept": h.kept,
            "never_solved": h.never_solved,
            "always_solved": h.always_solved,
            "rejected": rejected,
            "by_bucket": h.by_bucket,
            "by_correct": h.by_correct,
            "samples": h.samples,
            "model": args.model,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// `dir/stem.EXT` for `path = dir/stem.jsonl`.
fn sibling(path: &Path, ext: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.{ext}"))
}

/// The policy of a run directory, a checkpoint directory, or a fresh one.
fn load_policy(
    from: Option<&Path>,
    config: &RunConfig,
    tokenizer: &AnyTokenizer,
    device: &gradus_policy::Device,
) -> anyhow::Result<Policy> {
    let Some(path) = from else {
        if let Some(h) = &config.hf {
            eprintln!("gradus curate: policy from {}", h.dir.display());
            let ckpt = gradus_policy::hf::load::Checkpoint::open(&h.dir)?;
            let device = device.clone().without_autodiff();
            let model = ckpt.load_with(&config.model, &device)?;
            return Ok(Policy::from_model(
                model,
                config.model.clone(),
                tokenizer.pad_id(),
            ));
        }
        eprintln!(
            "gradus curate: warning: no --policy given; sampling from a freshly initialised model"
        );
        return Ok(Policy::new(
            config.model.clone(),
            device,
            tokenizer.pad_id(),
        )?);
    };
    let (_, dir) = locate_checkpoint(path, "curate").context("--policy")?;
    let (learner, _) = Learner::load_checkpoint(&dir.join("learner"), device)
        .with_context(|| format!("loading the policy from {}", dir.display()))?;
    // The config's model: the tokenizer's size for the built-in model, the
    // checkpoint's embedding (often padded past the tokenizer) with `[model] hf`.
    let vocab = learner.model_config().vocab_size;
    if vocab != config.model.vocab_size {
        bail!(
            "--policy {}: the model's vocabulary has {vocab} entries but the config's model {}; curate with the config the run used",
            dir.display(),
            config.model.vocab_size
        );
    }
    eprintln!("gradus curate: policy from {}", dir.display());
    Ok(Policy::from_snapshot(
        &learner.snapshot(),
        device,
        tokenizer.pad_id(),
    )?)
}

/// Sampling or grading failed (never a verdict on a response).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SolveError(String);

/// Where the samples come from (one per process: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Sampler {
    /// gradus's policy, on this machine.
    Policy {
        policy: Policy,
        rng: ChaCha8Rng,
        sampling: SamplingConfig,
    },
    /// A reference model on an OpenAI-compatible server.
    Endpoint(endpoint::Endpoint),
}

/// The real [`Solver`]: a sampler, the math grader and the sandbox.
struct Solving {
    /// `--responses`: one line per sampled response.
    responses: Option<std::io::BufWriter<std::fs::File>>,
    sampler: Sampler,
    tokenizer: AnyTokenizer,
    grade: gradus_math::GradeConfig,
    sandbox: Option<Arc<Sandbox>>,
    runtime: tokio::runtime::Runtime,
}

impl Solving {
    /// `k` responses per problem, problem-major: text and whether it was cut short.
    fn sample(
        &mut self,
        problems: &[Problem],
        k: usize,
    ) -> Result<Vec<(String, bool)>, SolveError> {
        match &mut self.sampler {
            Sampler::Policy {
                policy,
                rng,
                sampling,
            } => {
                let mut prompts = Vec::with_capacity(problems.len() * k);
                for p in problems {
                    let prompt = self
                        .tokenizer
                        .encode_prompt(&p.prompt)
                        .map_err(|e| SolveError(format!("problem {}: {e}", p.id)))?;
                    prompts.extend(std::iter::repeat_n(prompt, k));
                }
                let responses = policy
                    .sample(&prompts, sampling, rng)
                    .map_err(|e| SolveError(format!("sampling: {e}")))?;
                Ok(responses
                    .iter()
                    .map(|r| (self.tokenizer.decode(&r.tokens), r.truncated))
                    .collect())
            }
            Sampler::Endpoint(endpoint) => {
                let prompts = problems
                    .iter()
                    .map(|p| {
                        let before = p
                            .model_pass_rates()
                            .ok()
                            .and_then(|r| r.get(endpoint.model()).map(|(_, a)| *a))
                            .unwrap_or(0);
                        (p.id.clone(), p.prompt.clone(), before)
                    })
                    .collect();
                let got = self
                    .runtime
                    .block_on(endpoint.sample(prompts, k))
                    .map_err(SolveError)?;
                Ok(got
                    .into_iter()
                    .flatten()
                    .map(|s| (s.text, s.truncated))
                    .collect())
            }
        }
    }
}

impl Solver for Solving {
    type Error = SolveError;

    fn sample_and_grade(
        &mut self,
        problems: &[Problem],
        k: usize,
    ) -> Result<Vec<Vec<bool>>, SolveError> {
        let responses = self.sample(problems, k)?;
        let mut correct = vec![vec![false; k]; problems.len()];
        let mut verdicts = vec![""; responses.len()];
        let mut jobs = Vec::new();
        let mut job_at = Vec::new();
        for (i, (text, truncated)) in responses.iter().enumerate() {
            let (pi, si) = (i / k, i % k);
            let problem = &problems[pi];
            match problem.domain {
                Domain::Math => {
                    let gold = problem.answer.as_deref().unwrap_or_default();
                    let grade = gradus_math::grade(gold, text, &self.grade);
                    let r = rollout::math_result(&grade, *truncated);
                    correct[pi][si] = r.correct;
                    verdicts[i] = r.verdict;
                }
                Domain::Code => {
                    jobs.push(rollout::code_job(
                        problem,
                        text,
                        &format!("{}-{si}", problem.id),
                    ));
                    job_at.push((i, *truncated));
                }
            }
        }
        if !jobs.is_empty() {
            let sandbox = self
                .sandbox
                .clone()
                .expect("a sandbox is built when the input has code problems");
            let mut outcomes = self.runtime.block_on(sandbox.run_batch(jobs.clone()));
            // Our own failures are redone once, never counted against the prompt.
            for (i, o) in outcomes.iter_mut().enumerate() {
                if o.verdict == Verdict::SandboxError {
                    *o = self.runtime.block_on(sandbox.run(jobs[i].clone()));
                    if o.verdict == Verdict::SandboxError {
                        return Err(SolveError(format!(
                            "the sandbox failed twice on a response to {}: {}",
                            problems[job_at[i].0 / k].id,
                            o.detail.as_deref().unwrap_or("no detail")
                        )));
                    }
                }
            }
            for ((i, truncated), o) in job_at.into_iter().zip(outcomes) {
                let r = rollout::code_result(&o, truncated, false);
                correct[i / k][i % k] = r.correct;
                verdicts[i] = r.verdict;
            }
        }
        if let Some(w) = self.responses.as_mut() {
            for (i, (text, truncated)) in responses.iter().enumerate() {
                let line = serde_json::json!({
                    "id": problems[i / k].id,
                    "sample": i % k,
                    "response": text,
                    "truncated": truncated,
                    "correct": correct[i / k][i % k],
                    "verdict": verdicts[i],
                });
                writeln!(w, "{line}")
                    .map_err(|e| SolveError(format!("writing --responses: {e}")))?;
            }
        }
        Ok(correct)
    }
}

//! `gradus sandbox {run,batch,bench,serve,doctor}`: the command-line face of
//! gradus-sandbox. Settings come from `--config` (a TOML file: its `[sandbox]`
//! table, or the whole file) and a few flags that override it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use gradus_sandbox::job::{Job, JobLimits, Language, Tests, parse_line};
use gradus_sandbox::{Mode, Outcome, Sandbox, SandboxConfig, Verdict};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Judge one program: prints one JSON outcome; exit 0 only if accepted.
    Run {
        /// The tests: a `tests` object of the job schema (`{"kind": ...}`),
        /// or `{"tests": ..., "limits": ...}`.
        #[arg(long)]
        tests: PathBuf,
        /// The program.
        solution: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Judge a JSONL file of jobs; one JSON result line per job, in input order.
    Batch {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Concurrent jobs (default: the config's `workers`).
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Bare python3 subprocess vs gradus cold vs gradus warm (not a test).
    Bench {
        /// Jobs per way and worker count.
        #[arg(short = 'n', long, default_value_t = 500)]
        jobs: usize,
        /// Worker counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        workers: Vec<usize>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Serve the sandbox over HTTP: `POST /v1/jobs` (gradus's job schema),
    /// `POST /run_code` (SandboxFusion's, as verl sends it), `GET /health`
    /// and `GET /metrics`. With port 0 the first line printed is
    /// `listening on http://HOST:PORT`. SIGTERM drains: running jobs finish,
    /// new ones are refused.
    Serve(ServeArgs),
    /// Show which protections are active here, and why any is missing.
    Doctor {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// `gradus sandbox serve`'s settings.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Environment variable holding the key clients must send as
    /// `Authorization: Bearer KEY`. Without it the server listens on
    /// loopback only.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Concurrent jobs (default: the config's `workers`).
    #[arg(long)]
    workers: Option<usize>,
    /// Jobs admitted at once, running or waiting (default 16 per worker);
    /// past it requests get 429 with `Retry-After`.
    #[arg(long)]
    queue: Option<usize>,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 16)]
    max_request_mb: usize,
    /// On SIGTERM, the longest wait for running jobs, seconds.
    #[arg(long, default_value_t = 300)]
    drain_s: u64,
    #[command(flatten)]
    common: Common,
}

/// Settings shared by all subcommands.
#[derive(clap::Args)]
pub struct Common {
    /// TOML file with the sandbox settings (a `[sandbox]` table or the whole file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `warm` (zygote per worker) or `cold` (fresh interpreter per job).
    #[arg(long)]
    mode: Option<String>,
}

fn load_config(common: &Common) -> anyhow::Result<SandboxConfig> {
    let mut cfg = match &common.config {
        None => SandboxConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{}: not valid TOML", path.display()))?;
            let value = match table.remove("sandbox") {
                Some(v) => v,
                None => toml::Value::Table(table),
            };
            value
                .try_into::<SandboxConfig>()
                .with_context(|| format!("{}: [sandbox]", path.display()))?
        }
    };
    match common.mode.as_deref() {
        None => {}
        Some("warm") => cfg.mode = Mode::Warm,
        Some("cold") => cfg.mode = Mode::Cold,
        Some(other) => bail!("--mode must be `warm` or `cold`, got `{other}`"),
    }
    cfg.validate()?;
    Ok(cfg)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// `cfg` with `--workers` applied.
fn with_workers(mut cfg: SandboxConfig, workers: Option<usize>) -> anyhow::Result<SandboxConfig> {
    if let Some(w) = workers {
        anyhow::ensure!(w >= 1, "--workers must be at least 1");
        cfg.workers = w;
    }
    Ok(cfg)
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Run {
            tests,
            solution,
            common,
        } => run_one(&tests, &solution, &common),
        Command::Batch {
            input,
            output,
            workers,
            common,
        } => batch(&input, &output, workers, &common),
        Command::Bench {
            jobs,
            workers,
            json,
            common,
        } => bench(jobs, &workers, json, &common),
        Command::Doctor { json, common } => doctor(json, &common),
        Command::Serve(a) => serve(a),
    }
}

fn run_one(tests: &Path, solution: &Path, common: &Common) -> anyhow::Result<ExitCode> {
    let cfg = load_config(common)?;
    let source = std::fs::read_to_string(solution)
        .with_context(|| format!("reading {}", solution.display()))?;
    let text =
        std::fs::read_to_string(tests).with_context(|| format!("reading {}", tests.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", tests.display()))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        tests: Tests,
        #[serde(default)]
        limits: JobLimits,
    }
    let (tests_v, limits) = if value.get("tests").is_some() {
        let w: Wrapped =
            serde_json::from_value(value).with_context(|| format!("{}", tests.display()))?;
        (w.tests, w.limits)
    } else {
        let t: Tests = serde_json::from_value(value)
            .with_context(|| format!("{}: not a tests object", tests.display()))?;
        (t, JobLimits::default())
    };
    let id = solution
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let job = Job {
        id,
        language: Language::Python,
        source,
        tests: tests_v,
        limits,
    };
    let mut cfg = cfg;
    cfg.workers = 1;
    let sandbox = Sandbox::new(cfg)?;
    let out = runtime()?.block_on(sandbox.run(job));
    println!("{}", serde_json::to_string(&out)?);
    Ok(if out.verdict == Verdict::Accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn invalid(id: String, why: String) -> Outcome {
    Outcome::failure(&id, Verdict::InvalidJob, 0, why)
}

fn batch(
    input: &Path,
    output: &Path,
    workers: Option<usize>,
    common: &Common,
) -> anyhow::Result<ExitCode> {
    let cfg = with_workers(load_config(common)?, workers)?;
    let window = cfg.workers * 2;
    let reader =
        BufReader::new(File::open(input).with_context(|| format!("opening {}", input.display()))?);
    let mut writer = BufWriter::new(
        File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let sandbox = Sandbox::new(cfg)?;
    let rt = runtime()?;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    rt.block_on(async {
        // In-flight jobs, oldest first: at most `window`, so memory stays
        // bounded however long the input is, and output keeps input order.
        let mut pending: std::collections::VecDeque<tokio::task::JoinHandle<Outcome>> =
            Default::default();
        let mut write = |out: Outcome, writer: &mut BufWriter<File>| -> anyhow::Result<()> {
            *counts.entry(out.verdict.as_str()).or_default() += 1;
            serde_json::to_writer(&mut *writer, &out)?;
            writer.write_all(b"\n")?;
            Ok(())
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", input.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let handle = match parse_line(&line) {
                Ok(job) => {
                    let s = sandbox.clone();
                    tokio::spawn(async move { s.run(job).await })
                }
                Err(why) => {
                    let id = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_str().map(String::from)))
                        .unwrap_or_else(|| format!("line {}", n + 1));
                    let out = invalid(id, format!("{}:{}: {why}", input.display(), n + 1));
                    tokio::spawn(async move { out })
                }
            };
            pending.push_back(handle);
            if pending.len() >= window
                && let Some(h) = pending.pop_front()
            {
                write(h.await?, &mut writer)?;
            }
        }
        while let Some(h) = pending.pop_front() {
            write(h.await?, &mut writer)?;
        }
        anyhow::Ok(())
    })?;
    writer.flush()?;
    let total: usize = counts.values().sum();
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("gradus sandbox batch: {total} jobs: {}", summary.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn bench(jobs: usize, workers: &[usize], json: bool, common: &Common) -> anyhow::Result<ExitCode> {
    let cfg = load_config(common)?;
    anyhow::ensure!(jobs >= 1, "-n must be at least 1");
    anyhow::ensure!(
        workers.iter().all(|w| *w >= 1),
        "--workers entries must be at least 1"
    );
    eprintln!("gradus sandbox bench: {jobs} jobs per way, workers {workers:?}");
    let report = gradus_sandbox::bench::run(&cfg, jobs, workers, |row| {
        eprintln!(
            "  {:>4} workers={} median={:.2} ms p99={:.2} ms {:.1} jobs/s failures={}",
            row.way, row.workers, row.median_ms, row.p99_ms, row.jobs_per_s, row.failures
        );
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn doctor(json: bool, common: &Common) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(common)?;
    cfg.workers = 1;
    let sandbox = Sandbox::new(cfg)?;
    let report = sandbox.doctor();
    let missing_required = report
        .iter()
        .any(|p| p.requirement == gradus_sandbox::Requirement::Required && !p.active());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("interpreter: {}", sandbox.interpreter().display());
        println!("seccomp: {}", gradus_sandbox::seccomp::denied_summary());
        for p in &report {
            println!(
                "{:<14} {:<9} {:<40} {}",
                p.name,
                p.requirement.as_str(),
                p.state,
                p.stops
            );
        }
        if missing_required {
            println!(
                "\nA required protection is missing: jobs will refuse to run (sandbox_error)."
            );
        }
    }
    Ok(if missing_required {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        listen,
        api_key_env,
        workers,
        queue,
        max_request_mb,
        drain_s,
        common,
    } = a;
    let common = &common;
    use gradus_sandbox::service::{Service, ServiceConfig, server};
    let cfg = with_workers(load_config(common)?, workers)?;
    let api_key = match &api_key_env {
        Some(name) => {
            let key = std::env::var(name)
                .with_context(|| format!("--api-key-env: `{name}` is not set"))?;
            anyhow::ensure!(!key.is_empty(), "--api-key-env: `{name}` is empty");
            Some(key)
        }
        None => None,
    };
    if api_key.is_none() && !listen.ip().is_loopback() {
        bail!(
            "refusing to serve on {listen} without a key: anyone who reaches it could run code; \
             set --api-key-env NAME, or listen on loopback (127.0.0.1)"
        );
    }
    let mut scfg = ServiceConfig::for_workers(cfg.workers);
    scfg.api_key = api_key;
    scfg.max_request_bytes = max_request_mb.max(1) << 20;
    if let Some(q) = queue {
        anyhow::ensure!(q >= 1, "--queue must be at least 1");
        scfg.queue_limit = q;
    }
    let sandbox = Sandbox::new(cfg)?;
    sandbox
        .warm_up()
        .context("starting the sandbox workers (run `gradus sandbox doctor`)")?;
    runtime()?.block_on(async move {
        let service = Service::new(sandbox, scfg.clone());
        let (addr, task) = server::bind(service.clone(), listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        if scfg.api_key.is_none() {
            eprintln!("gradus sandbox serve: no --api-key-env: no auth, so loopback only");
        }
        eprintln!(
            "gradus sandbox serve: {} workers, queue {}, bodies up to {} MiB",
            service.health()["workers"],
            scfg.queue_limit,
            scfg.max_request_bytes >> 20
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!(
            "gradus sandbox serve: draining ({} jobs admitted)",
            service.health()["admitted"]
        );
        let left = service.drain(std::time::Duration::from_secs(drain_s)).await;
        task.abort();
        if left > 0 {
            eprintln!(
                "gradus sandbox serve: stopped with {left} jobs unfinished after {drain_s} s"
            );
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("gradus sandbox serve: drained, stopped");
        Ok(ExitCode::SUCCESS)
    })
}

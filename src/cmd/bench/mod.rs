//! `gradus bench ...`: benchmarks that measure gradus against a named peer in
//! the same run and print the ratio. None of them is a test.

mod data;
mod math;
mod policy;
mod sandbox_serve;
mod serve;
mod soak;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Load a generated million-problem parquet curriculum with gradus and with pyarrow;
    /// print load time, peak RSS, sampling cost at 10k vs 1M, checkpoint size and resume.
    Data(data::Args),
    /// Grade math cases with gradus and with HF Math-Verify; print throughput and agreement.
    Math(math::Args),
    /// Train and sample the policy with burn and with PyTorch; print tokens/s and ratios.
    Policy(policy::Args),
    /// Fuzz where bad input enters (the config and its reload, the data loaders):
    /// run N mutated inputs each and print what happened, findings first.
    Fuzz(FuzzArgs),
    /// Run the demo daemon for M minutes under scrapes and reloads; sample RSS,
    /// fds, threads, run-dir size and step time each minute, with slopes per hour.
    Soak(soak::Args),
    /// The sandbox through `gradus sandbox serve` (64 HTTP clients, hostile jobs
    /// mixed in) vs the local pool on the same jobs: jobs/s, p50/p99, lost, duplicated.
    #[command(name = "sandbox-serve")]
    SandboxServe(sandbox_serve::Args),
    /// `gradus serve` driven by 1, 8 and 64 concurrent HTTP clients vs the same
    /// model's local batched sampling: requests/s, tokens/s, p50/p99 latency.
    Serve(serve::Args),
}

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Inputs per fuzzer.
    #[arg(long, default_value_t = 100_000)]
    inputs: u64,
    /// Seed of the mutations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn fuzz(a: FuzzArgs) -> anyhow::Result<ExitCode> {
    let mut clean = true;
    for (name, run) in [
        (
            "config",
            gradus::fuzz::fuzz_config as fn(u64, u64) -> gradus::fuzz::Report,
        ),
        ("data", gradus::fuzz::fuzz_data),
    ] {
        let started = std::time::Instant::now();
        let r = run(a.inputs, a.seed);
        for f in r.findings.iter().take(10) {
            println!("finding ({name}): {f}");
        }
        clean &= r.findings.is_empty();
        let mut line = serde_json::to_value(&r)?;
        line["fuzzer"] = name.into();
        line["findings"] = r.findings.len().into();
        line["seconds"] = started.elapsed().as_secs_f64().into();
        println!("{line}");
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `p` quantile (nearest rank) of ascending `sorted`; NaN when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Starts this binary with `args` as a server (stdout piped), waits for its
/// first line, `listening on http://HOST:PORT`, and drains the rest of its
/// stdout; returns the child and `HOST:PORT`.
fn spawn_server(
    args: &[&str],
    stderr: std::process::Stdio,
) -> anyhow::Result<(std::process::Child, String)> {
    use anyhow::Context;
    use std::io::BufRead;
    let what = format!(
        "gradus {}",
        args.iter().take(2).copied().collect::<Vec<_>>().join(" ")
    );
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = lines
        .next()
        .with_context(|| format!("{what} printed nothing"))??;
    let addr = first
        .strip_prefix("listening on http://")
        .with_context(|| format!("{what}'s first line: {first}"))?
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Ok((child, addr))
}

/// The interpreter for a benchmark's Python peer: `given`, else the project venv's, else
/// `python3`.
fn python(given: Option<&str>) -> String {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    match given {
        Some(p) => p.to_string(),
        None if venv.exists() => venv.display().to_string(),
        None => "python3".into(),
    }
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Data(a) => data::run(a),
        Command::Math(a) => math::run(a),
        Command::Policy(a) => policy::run(a),
        Command::Fuzz(a) => fuzz(a),
        Command::Soak(a) => soak::run(a),
        Command::SandboxServe(a) => sandbox_serve::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

//! `gradus bench math`: grade the same labelled cases with gradus and with HF
//! Math-Verify 0.9.0 (`benches/math_verify.py`, its `parse` + `verify`) in one
//! run, each on one core, and print throughput, agreement with the labels and
//! the throughput ratio.
//!
//! Throughput is reported per CPU-second of the grading thread (gradus) or
//! process (Python), and per wall-second: the CPU figure is the fair one on a
//! shared machine, the wall figure is what a user waits for.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gradus_math::{GradeConfig, grade};
use nix::sys::resource::{UsageWho, getrusage};
use serde::Deserialize;

use crate::cmd::grade::Case;

#[derive(clap::Args)]
pub struct Args {
    /// Labelled cases, JSONL with gold, pred (or response) and expected.
    /// Default: ../shared/data/math_dev.jsonl beside the repository.
    #[arg(long)]
    pub cases: Option<PathBuf>,
    /// Minimum seconds of timing per grader (whole passes over the cases).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Python interpreter that has math-verify==0.9.0 installed.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Grade strictly (\boxed{} only) instead of with all extraction fallbacks.
    /// Math-Verify always extracts leniently, so the default compares like with like.
    #[arg(long)]
    pub strict: bool,
    /// Skip Math-Verify and report gradus alone.
    #[arg(long)]
    pub gradus_only: bool,
    /// List the rows where a grader disagrees with its label.
    #[arg(long)]
    pub show_disagreements: bool,
}

/// What `benches/math_verify.py` prints.
#[derive(Deserialize)]
struct PeerReport {
    version: String,
    cases: usize,
    passes: u64,
    seconds: f64,
    cpu_seconds: f64,
    agree: usize,
    disagreements: Vec<usize>,
}

struct Figures {
    per_cpu_s: f64,
    per_wall_s: f64,
    agree: usize,
    disagreements: Vec<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = a
        .cases
        .clone()
        .unwrap_or_else(|| root.join("../shared/data/math_dev.jsonl"));
    let cases = load(&path)?;
    let cfg = if a.strict {
        GradeConfig::strict()
    } else {
        GradeConfig::lenient()
    };
    let ours = bench_gradus(&cases, &cfg, a.seconds);
    let mode = if a.strict { "strict" } else { "lenient" };
    println!(
        "gradus bench math: {} labelled cases from {} ({mode} extraction)",
        cases.len(),
        path.display()
    );
    println!(
        "{:<22}{:>16}{:>16}{:>26}",
        "grader", "cases/CPU-s", "cases/wall-s", "agreement with labels"
    );
    let pct = |n: usize| 100.0 * n as f64 / cases.len().max(1) as f64;
    println!(
        "{:<22}{:>16.0}{:>16.0}{:>17}/{} ({:.2}%)",
        "gradus",
        ours.per_cpu_s,
        ours.per_wall_s,
        ours.agree,
        cases.len(),
        pct(ours.agree)
    );
    if a.show_disagreements {
        show(&cases, "gradus", &ours.disagreements);
    }
    if a.gradus_only {
        return Ok(ExitCode::SUCCESS);
    }
    let peer = match bench_peer(&root, &a.python, &path, a.seconds)? {
        Some(p) => p,
        None => {
            println!(
                "math-verify: not importable with `{}`; install it with `{} -m pip install math-verify==0.9.0` (gradus figures above)",
                a.python, a.python
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    if peer.cases != cases.len() {
        bail!(
            "benches/math_verify.py read {} cases from {}, gradus read {}",
            peer.cases,
            path.display(),
            cases.len()
        );
    }
    let theirs = Figures {
        per_cpu_s: (peer.cases as u64 * peer.passes) as f64 / peer.cpu_seconds.max(1e-9),
        per_wall_s: (peer.cases as u64 * peer.passes) as f64 / peer.seconds.max(1e-9),
        agree: peer.agree,
        disagreements: peer.disagreements,
    };
    println!(
        "{:<22}{:>16.1}{:>16.1}{:>17}/{} ({:.2}%)",
        format!("math-verify {}", peer.version),
        theirs.per_cpu_s,
        theirs.per_wall_s,
        theirs.agree,
        cases.len(),
        pct(theirs.agree)
    );
    println!(
        "ratio gradus / math-verify: {:.0}x per CPU-second, {:.0}x per wall-second; agreement {:+.2} points",
        ours.per_cpu_s / theirs.per_cpu_s,
        ours.per_wall_s / theirs.per_wall_s,
        pct(ours.agree) - pct(theirs.agree)
    );
    if a.show_disagreements {
        show(&cases, "math-verify", &theirs.disagreements);
    }
    Ok(ExitCode::SUCCESS)
}

fn load(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (pass --cases PATH for another labelled file)",
            path.display()
        )
    })?;
    let mut cases = vec![];
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case = Case::from_line(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        if case.expected.is_none() {
            bail!(
                "{}:{}: missing field \"expected\" (the bench needs labels)",
                path.display(),
                n + 1
            );
        }
        cases.push(case);
    }
    Ok(cases)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn bench_gradus(cases: &[Case], cfg: &GradeConfig, seconds: f64) -> Figures {
    let disagreements: Vec<usize> = (0..cases.len())
        .filter(|&i| {
            grade(&cases[i].gold, &cases[i].response, cfg).correct
                != cases[i].expected.unwrap_or(false)
        })
        .collect();
    let (wall0, cpu0) = (Instant::now(), thread_cpu());
    let mut graded = 0u64;
    while graded == 0 || wall0.elapsed().as_secs_f64() < seconds {
        for c in cases {
            std::hint::black_box(grade(
                std::hint::black_box(&c.gold),
                std::hint::black_box(&c.response),
                cfg,
            ));
        }
        graded += cases.len() as u64;
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu0).as_secs_f64();
    Figures {
        per_cpu_s: graded as f64 / if cpu > 0.0 { cpu } else { wall },
        per_wall_s: graded as f64 / wall,
        agree: cases.len() - disagreements.len(),
        disagreements,
    }
}

/// Runs the Python side; `None` when math-verify is not importable.
fn bench_peer(
    root: &Path,
    python: &str,
    cases: &Path,
    seconds: f64,
) -> anyhow::Result<Option<PeerReport>> {
    let script = root.join("benches/math_verify.py");
    let out = Command::new(python)
        .arg(&script)
        .arg("--cases")
        .arg(cases)
        .arg("--seconds")
        .arg(seconds.to_string())
        .output()
        .with_context(|| format!("cannot run `{python}` (pass --python PATH, or --gradus-only)"))?;
    if out.status.code() == Some(3) {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Ok(None);
    }
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    let report = serde_json::from_str(last)
        .with_context(|| format!("unexpected output from {}: {last:?}", script.display()))?;
    Ok(Some(report))
}

fn show(cases: &[Case], who: &str, rows: &[usize]) {
    for &i in rows {
        let c = &cases[i];
        let tail: String = c
            .response
            .chars()
            .rev()
            .take(100)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        println!(
            "  {who} disagrees on row {i} (label {:?}): gold {:?}, response …{tail:?}",
            c.expected, c.gold
        );
    }
}

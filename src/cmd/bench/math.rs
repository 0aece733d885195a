//! `gradus bench math`: grade the same labelled cases with gradus (strict and
//! lenient) and with HF Math-Verify 0.9.0 (`benches/math_verify.py`, its
//! `parse` + `verify`) in one run, each on one core, and print agreement with
//! the labels, throughput and the throughput ratio.
//!
//! Without `--cases` it runs the three standard sets: the grader corpus's
//! development split (`math/corpus/dev.jsonl`, what rules may be tuned on), its
//! held-out split (`math/corpus/heldout.jsonl`, never tuned on), and the older
//! `../shared/data/math_dev.jsonl`. Strict mode is judged on all rows and on
//! the rows whose response has a `\boxed{}`/`\fbox{}` (strict mode's whole
//! point is to refuse the others).
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
    /// Default: the corpus's two splits and ../shared/data/math_dev.jsonl.
    #[arg(long)]
    pub cases: Option<PathBuf>,
    /// Minimum seconds of timing per grader and set (whole passes over the cases).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Python interpreter that has math-verify==0.9.0 installed
    /// (default: the project venv's, `.venv/bin/python`, else python3).
    #[arg(long)]
    pub python: Option<String>,
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

/// One set's agreements, for the summary.
struct SetResult {
    name: String,
    cases: usize,
    boxed: usize,
    strict_boxed: usize,
    strict: usize,
    lenient: usize,
    peer: Option<(String, usize)>,
    ratio_cpu: Option<f64>,
}

/// Whether the response commits to a boxed answer.
fn has_box(response: &str) -> bool {
    response.contains("\\boxed") || response.contains("\\fbox")
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = super::python(a.python.as_deref());
    let sets: Vec<(String, PathBuf)> = match &a.cases {
        Some(p) => vec![(p.display().to_string(), p.clone())],
        None => vec![
            ("corpus dev".into(), root.join("math/corpus/dev.jsonl")),
            (
                "corpus held-out".into(),
                root.join("math/corpus/heldout.jsonl"),
            ),
            (
                "math_dev.jsonl".into(),
                root.join("../shared/data/math_dev.jsonl"),
            ),
        ],
    };
    let mut results = Vec::new();
    let mut peer_missing = false;
    for (name, path) in &sets {
        if a.cases.is_none() && !path.exists() {
            println!("{name}: {} not found, skipped", path.display());
            continue;
        }
        let r = bench_set(&a, &root, &python, name, path, &mut peer_missing)?;
        results.push(r);
    }
    if results.len() > 1 {
        println!("\nsummary (agreement with labels)");
        println!(
            "{:<18}{:>7}{:>22}{:>16}{:>16}{:>22}{:>10}",
            "set", "cases", "strict, boxed rows", "strict, all", "lenient", "math-verify", "speed"
        );
        let pct = |n: usize, d: usize| format!("{:.2}%", 100.0 * n as f64 / d.max(1) as f64);
        for r in &results {
            println!(
                "{:<18}{:>7}{:>22}{:>16}{:>16}{:>22}{:>10}",
                r.name,
                r.cases,
                format!("{} of {}", pct(r.strict_boxed, r.boxed), r.boxed),
                pct(r.strict, r.cases),
                pct(r.lenient, r.cases),
                r.peer
                    .as_ref()
                    .map_or("-".into(), |(v, n)| format!("{} ({v})", pct(*n, r.cases))),
                r.ratio_cpu.map_or("-".into(), |x| format!("{x:.0}x")),
            );
        }
        println!("(speed: gradus lenient cases per CPU-second over Math-Verify's, same cases)");
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_set(
    a: &Args,
    root: &Path,
    python: &str,
    name: &str,
    path: &Path,
    peer_missing: &mut bool,
) -> anyhow::Result<SetResult> {
    let cases = load(path)?;
    let boxed: Vec<usize> = (0..cases.len())
        .filter(|&i| has_box(&cases[i].response))
        .collect();
    let strict = bench_gradus(&cases, &GradeConfig::strict(), a.seconds);
    let lenient = bench_gradus(&cases, &GradeConfig::lenient(), a.seconds);
    let strict_boxed = boxed
        .iter()
        .filter(|i| !strict.disagreements.contains(i))
        .count();
    println!(
        "\n{name}: {} labelled cases from {} ({} with a boxed answer)",
        cases.len(),
        path.display(),
        boxed.len()
    );
    println!(
        "{:<26}{:>14}{:>14}{:>26}",
        "grader", "cases/CPU-s", "cases/wall-s", "agreement with labels"
    );
    let line = |label: &str, f: Option<&Figures>, agree: usize, of: usize| {
        let (cpu, wall) = f.map_or((String::new(), String::new()), |f| {
            (
                format!("{:.1}", f.per_cpu_s),
                format!("{:.1}", f.per_wall_s),
            )
        });
        println!(
            "{label:<26}{cpu:>14}{wall:>14}{:>17}/{of} ({:.2}%)",
            agree,
            100.0 * agree as f64 / of.max(1) as f64
        );
    };
    line("gradus strict, boxed rows", None, strict_boxed, boxed.len());
    line("gradus strict", Some(&strict), strict.agree, cases.len());
    line("gradus lenient", Some(&lenient), lenient.agree, cases.len());
    if a.show_disagreements {
        let boxed_wrong: Vec<usize> = strict
            .disagreements
            .iter()
            .copied()
            .filter(|i| boxed.contains(i))
            .collect();
        show(&cases, "gradus strict (boxed)", &boxed_wrong);
        show(&cases, "gradus lenient", &lenient.disagreements);
    }
    let mut result = SetResult {
        name: name.into(),
        cases: cases.len(),
        boxed: boxed.len(),
        strict_boxed,
        strict: strict.agree,
        lenient: lenient.agree,
        peer: None,
        ratio_cpu: None,
    };
    if a.gradus_only || *peer_missing {
        return Ok(result);
    }
    let Some(peer) = bench_peer(root, python, path, a.seconds)? else {
        println!(
            "math-verify: not importable with `{python}`; install it with `python3 -m venv .venv && .venv/bin/pip install math-verify==0.9.0` (gradus figures above)"
        );
        *peer_missing = true;
        return Ok(result);
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
    line(
        &format!("math-verify {}", peer.version),
        Some(&theirs),
        theirs.agree,
        cases.len(),
    );
    let ratio = lenient.per_cpu_s / theirs.per_cpu_s;
    println!(
        "ratio gradus lenient / math-verify: {ratio:.0}x per CPU-second, {:.0}x per wall-second",
        lenient.per_wall_s / theirs.per_wall_s,
    );
    if a.show_disagreements {
        show(&cases, "math-verify", &theirs.disagreements);
    }
    result.peer = Some((peer.version, theirs.agree));
    result.ratio_cpu = Some(ratio);
    Ok(result)
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
        let row = match &c.id {
            Some(serde_json::Value::String(id)) => format!("row {id}"),
            Some(id) => format!("row {id}"),
            None => format!("case {}", i + 1),
        };
        let label = match c.expected {
            Some(true) => "correct",
            Some(false) => "wrong",
            None => "none",
        };
        println!(
            "  {who} disagrees on {row} (labelled {label}): gold {:?}, response …{tail:?}",
            c.gold
        );
    }
}

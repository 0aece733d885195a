//! `gradus sandbox bench`: N small Python jobs run three ways in one process
//! (a bare `python3` subprocess per job without isolation, gradus cold, gradus
//! warm), at each worker count, with the same interpreter and flags. Not a
//! test: timings depend on the machine; the report gives ratios to bare.
//!
//! The ways take turns in [`ROUNDS`] blocks (bare, cold, warm, bare, ...),
//! each block running its share of the N jobs on all workers, so that a
//! change of load on a shared machine falls on all three alike rather than
//! on whichever way happened to run then. Both sandboxes build their slots'
//! cells before the first block (a cell is per slot in either mode, not per
//! job); the medians, p99s and jobs/s cover every job of the way.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{Mode, SandboxConfig};
use crate::job::{Compare, Job, JobLimits, Language, StdioCase, Tests};
use crate::{Sandbox, SandboxError, Verdict};

/// The per-job program: read a line, do a little work, print.
pub const PROGRAM: &str = "n = int(input())\nprint(sum(i * i for i in range(n)))\n";

/// Timings of one way at one worker count.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub way: String,
    pub workers: usize,
    pub jobs: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub jobs_per_s: f64,
    pub failures: usize,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub interpreter: String,
    pub flags: Vec<String>,
    pub rows: Vec<Row>,
    /// PSS of one idle warm worker, bytes.
    pub idle_warm_worker_bytes: Option<u64>,
}

impl Report {
    /// `way`'s median over bare's at the same worker count.
    pub fn ratio_to_bare(&self, row: &Row) -> f64 {
        self.rows
            .iter()
            .find(|b| b.way == "bare" && b.workers == row.workers)
            .map_or(f64::NAN, |b| row.median_ms / b.median_ms)
    }
}

/// The table `gradus sandbox bench` prints: one row per way and worker count.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "interpreter: {} {}",
            self.interpreter,
            self.flags.join(" ")
        )?;
        writeln!(
            f,
            "{:<6} {:>7} {:>11} {:>11} {:>9} {:>12} {:>9}",
            "way", "workers", "median ms", "p99 ms", "jobs/s", "median/bare", "failures"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<6} {:>7} {:>11.2} {:>11.2} {:>9.1} {:>12.2} {:>9}",
                r.way,
                r.workers,
                r.median_ms,
                r.p99_ms,
                r.jobs_per_s,
                self.ratio_to_bare(r),
                r.failures
            )?;
        }
        if let Some(b) = self.idle_warm_worker_bytes {
            writeln!(
                f,
                "memory per idle warm worker (PSS of the server, cell root and supervisor): {:.1} MiB",
                b as f64 / (1 << 20) as f64
            )?;
        }
        Ok(())
    }
}

/// Bench job `i`: read n, print the sum of squares below n (one stdio case).
pub fn job(i: usize) -> Job {
    let n = 1000 + i % 100;
    let sum: u64 = (0..n as u64).map(|x| x * x).sum();
    Job {
        id: format!("bench-{i}"),
        language: Language::Python,
        source: PROGRAM.into(),
        tests: Tests::Stdio {
            cases: vec![StdioCase {
                input: format!("{n}\n"),
                output: format!("{sum}\n"),
            }],
            compare: Compare::Exact,
        },
        limits: JobLimits::default(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// Blocks per way (see the module docs).
pub const ROUNDS: usize = 5;

type Runner = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// The timings of one way so far.
#[derive(Default)]
struct Tally {
    times: Vec<f64>,
    failures: usize,
    secs: f64,
}

impl Tally {
    fn row(mut self, way: &str, workers: usize) -> Row {
        self.times.sort_by(f64::total_cmp);
        Row {
            way: way.into(),
            workers,
            jobs: self.times.len(),
            median_ms: percentile(&self.times, 0.5),
            p99_ms: percentile(&self.times, 0.99),
            jobs_per_s: self.times.len() as f64 / self.secs,
            failures: self.failures,
        }
    }
}

/// Run jobs `range` with `workers` threads; `f` runs job i and says if it passed.
fn drive(range: std::ops::Range<usize>, workers: usize, f: Runner, tally: &mut Tally) {
    let n = range.end;
    let next = Arc::new(AtomicUsize::new(range.start));
    let times = Arc::new(Mutex::new(Vec::with_capacity(range.len())));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (next, times, failures, f) =
                (next.clone(), times.clone(), failures.clone(), f.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    if !f(i) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    times.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    tally.secs += start.elapsed().as_secs_f64();
    tally
        .times
        .extend(times.lock().unwrap_or_else(|p| p.into_inner()).iter());
    tally.failures += failures.load(Ordering::Relaxed);
}

/// Runs bench job `i` the bare way: a `python FLAGS -c PROGRAM` subprocess,
/// no isolation. True when it printed the expected output.
pub fn bare(python: &std::path::Path, flags: &[String], i: usize) -> bool {
    let j = job(i);
    let Tests::Stdio { cases, .. } = &j.tests else {
        return false;
    };
    let child = Command::new(python)
        .args(flags)
        .arg("-c")
        .arg(&j.source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(cases[0].input.as_bytes());
    }
    match child.wait_with_output() {
        Ok(o) => o.status.success() && String::from_utf8_lossy(&o.stdout) == cases[0].output,
        Err(_) => false,
    }
}

/// Run the benchmark: `n` jobs per way, for each entry of `worker_counts`.
pub fn run(
    base: &SandboxConfig,
    n: usize,
    worker_counts: &[usize],
    mut progress: impl FnMut(&Row),
) -> Result<Report, SandboxError> {
    let mut rows = Vec::new();
    let mut idle = None;
    let mut interpreter = String::new();
    for &workers in worker_counts {
        let sandbox = |mode: Mode| {
            let mut cfg = base.clone();
            cfg.workers = workers;
            cfg.mode = mode;
            let s = Sandbox::new(cfg)?;
            s.warm_up()?;
            Ok::<_, SandboxError>(s)
        };
        let cold = sandbox(Mode::Cold)?;
        let warm = sandbox(Mode::Warm)?;
        if idle.is_none() {
            idle = warm.idle_worker_memory().first().copied();
        }
        interpreter = cold.interpreter().display().to_string();
        let python = cold.interpreter().to_path_buf();
        let flags = base.python.flags.clone();
        let (c, w) = (cold.clone(), warm.clone());
        let ways: [(&str, Runner); 3] = [
            ("bare", Arc::new(move |i| bare(&python, &flags, i))),
            (
                "cold",
                Arc::new(move |i| c.run_blocking(&job(i)).verdict == Verdict::Accepted),
            ),
            (
                "warm",
                Arc::new(move |i| w.run_blocking(&job(i)).verdict == Verdict::Accepted),
            ),
        ];
        let mut tallies: [Tally; 3] = Default::default();
        for r in 0..ROUNDS {
            let range = r * n / ROUNDS..(r + 1) * n / ROUNDS;
            for ((_, f), tally) in ways.iter().zip(tallies.iter_mut()) {
                drive(range.clone(), workers, f.clone(), tally);
            }
        }
        for ((way, _), tally) in ways.iter().zip(tallies) {
            let row = tally.row(way, workers);
            progress(&row);
            rows.push(row);
        }
    }
    Ok(Report {
        interpreter,
        flags: base.python.flags.clone(),
        rows,
        idle_warm_worker_bytes: idle,
    })
}

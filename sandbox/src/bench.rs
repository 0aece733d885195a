//! `gradus sandbox bench`: N small Python jobs run three ways in one process
//! (a bare `python3` subprocess per job without isolation, gradus cold, gradus
//! warm), at each worker count, with the same interpreter and flags. Not a
//! test: timings depend on the machine; the report gives ratios to bare.

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

fn job(i: usize) -> Job {
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

/// Run `n` jobs with `workers` threads; `f` runs job i and says if it passed.
fn drive(way: &str, n: usize, workers: usize, f: Arc<dyn Fn(usize) -> bool + Send + Sync>) -> Row {
    let next = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new(Vec::with_capacity(n)));
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
    let secs = start.elapsed().as_secs_f64();
    let mut t = times.lock().unwrap_or_else(|p| p.into_inner()).clone();
    t.sort_by(f64::total_cmp);
    Row {
        way: way.into(),
        workers,
        jobs: n,
        median_ms: percentile(&t, 0.5),
        p99_ms: percentile(&t, 0.99),
        jobs_per_s: n as f64 / secs,
        failures: failures.load(Ordering::Relaxed),
    }
}

fn bare(python: &std::path::Path, flags: &[String], i: usize) -> bool {
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
        let mut cold_cfg = base.clone();
        cold_cfg.workers = workers;
        cold_cfg.mode = Mode::Cold;
        let cold = Sandbox::new(cold_cfg)?;
        interpreter = cold.interpreter().display().to_string();
        let python = cold.interpreter().to_path_buf();
        let flags = base.python.flags.clone();
        let row = drive(
            "bare",
            n,
            workers,
            Arc::new(move |i| bare(&python, &flags, i)),
        );
        progress(&row);
        rows.push(row);
        let c = cold.clone();
        let row = drive(
            "cold",
            n,
            workers,
            Arc::new(move |i| c.run_blocking(&job(i)).verdict == Verdict::Accepted),
        );
        progress(&row);
        rows.push(row);
        drop(cold);
        let mut warm_cfg = base.clone();
        warm_cfg.workers = workers;
        warm_cfg.mode = Mode::Warm;
        let warm = Sandbox::new(warm_cfg)?;
        warm.warm_up()?;
        if idle.is_none() {
            idle = warm.idle_worker_memory().first().copied();
        }
        let w = warm.clone();
        let row = drive(
            "warm",
            n,
            workers,
            Arc::new(move |i| w.run_blocking(&job(i)).verdict == Verdict::Accepted),
        );
        progress(&row);
        rows.push(row);
    }
    Ok(Report {
        interpreter,
        flags: base.python.flags.clone(),
        rows,
        idle_warm_worker_bytes: idle,
    })
}

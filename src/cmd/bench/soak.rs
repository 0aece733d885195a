//! `gradus bench soak --minutes M`: does a daemon that runs for days grow?
//!
//! Runs `gradus train` on the demo curriculum in async mode, with a last stage
//! that mixes every math and code bucket and never ends (so the sandbox and the
//! grader stay busy for the whole soak), while a client scrapes `/metrics` and
//! `/status` 20 times a second and the config is reloaded every minute (the
//! last stage's temperature toggled, so each reload is applied). Each minute it
//! samples the daemon's RSS, open fds and threads, the run directory's size
//! and the step time, and prints them; at the end, each series' least-squares
//! slope per hour over the minutes after warm-up, and whether it is flat.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// How long to soak, minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Sampling interval, seconds (60: once a minute).
    #[arg(long, default_value_t = 60.0)]
    every_s: f64,
    /// Where the run directory goes (default: a temp dir, removed afterwards).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Rotate the run's logs past this size (`[run].rotate_logs_mb`; 0: never).
    /// With rotation the run directory is bounded, and judged flat too.
    #[arg(long, default_value_t = 0.0)]
    rotate_logs_mb: f64,
}

const DEMO: &str = include_str!("../../../configs/demo.toml");

/// The demo config, in async mode on a free port, with a last stage that
/// samples every bucket and never advances; `temperature` is what reloads toggle.
fn soak_config(temperature: &str, rotate_logs_mb: f64) -> String {
    let mut c = DEMO
        .replacen("http = \"127.0.0.1:9464\"", "http = \"127.0.0.1:0\"", 1)
        .replacen(
            "[run]\n",
            &format!("[run]\nmode = \"async\"\nrotate_logs_mb = {rotate_logs_mb:?}\n"),
            1,
        );
    c.push_str(&format!(
        "\n# The soak: every bucket, math and code, for as long as the soak lasts.\n\
         [[curriculum.stages]]\n\
         name = \"soak\"\n\
         domains = {{ math = 0.5, code = 0.5 }}\n\
         buckets = {{ add1 = 1.0, add2 = 1.0, add3 = 1.0, lin = 1.0, affine = 1.0 }}\n\
         generation = {{ max_response_tokens = 40, group_size = 8, temperature = {temperature} }}\n\
         learner = {{ lr = 1e-4 }}\n\
         [curriculum.stages.advance]\n\
         combine = \"any\"\n\
         rules = [ {{ kind = \"max_steps\", steps = 100000000 }} ]\n"
    ));
    c
}

/// One minute's sample.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    minute: f64,
    rss_mb: f64,
    fds: f64,
    threads: f64,
    thread_names: std::collections::BTreeMap<String, u32>,
    run_dir_mb: f64,
    step_seconds: f64,
    steps: u64,
    scrapes_ok: u64,
    scrapes_failed: u64,
    reloads: u64,
}

fn proc_status(pid: u32, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The process's threads by name (`/proc/<pid>/task/*/comm`), sorted:
/// which pool a change in the thread count came from.
fn thread_names(pid: u32) -> std::collections::BTreeMap<String, u32> {
    let mut names = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(n) = std::fs::read_to_string(t.path().join("comm")) {
                *names.entry(n.trim().to_string()).or_insert(0) += 1;
            }
        }
    }
    names
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn get(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.1 200")
}

/// Least-squares slope of `ys` over `xs` (per unit of x), the residuals' SD,
/// and the slope's standard error.
fn fit(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    if xs.len() < 3 {
        return (0.0, 0.0, f64::INFINITY);
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let ss: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - (my + slope * (x - mx))).powi(2))
        .sum();
    let sd = (ss / (n - 1.0)).sqrt();
    let se = if sxx > 0.0 {
        (ss / (n - 2.0) / sxx).sqrt()
    } else {
        f64::INFINITY
    };
    (slope, sd, se)
}

/// Whether a series is flat: its fitted growth over the soak is within two
/// standard errors of zero (no trend the noise cannot explain), or within the
/// series' resolution `floor` (what the measurement cannot tell apart: the
/// allocator's page-sized steps, one fd or thread opened for a moment).
/// A steady leak has small residuals, hence a small standard error, and
/// fails as soon as it passes the floor.
///
/// One-sided: a leak is growth, so a series that falls (step time on a
/// machine whose other load went down, fds closed after a burst) is flat.
fn is_flat(slope: f64, se: f64, span_h: f64, floor: f64) -> bool {
    slope * span_h <= (2.0 * se * span_h).max(floor)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.minutes <= 0.0 || a.every_s <= 0.0 {
        bail!("--minutes and --every-s must be positive");
    }
    let tmp = tempfile::tempdir()?;
    let run_dir = a.run_dir.clone().unwrap_or_else(|| tmp.path().join("run"));
    let config = tmp.path().join("soak.toml");
    std::fs::write(&config, soak_config("1.0", a.rotate_logs_mb))?;
    let exe = std::env::current_exe()?;
    let mut child: Child = Command::new(&exe)
        .args(["train", "--config"])
        .arg(&config)
        .arg("--run-dir")
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting gradus train")?;
    let pid = child.id();
    // The first line names the HTTP address; the rest is drained.
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let addr = loop {
        let line = lines
            .next()
            .context("gradus train exited before serving HTTP")??;
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    println!(
        "soak: gradus train (pid {pid}) on http://{addr}, run dir {}",
        run_dir.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let scraper = {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = if i.is_multiple_of(2) {
                    "/metrics"
                } else {
                    "/status"
                };
                if get(&addr, path) { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let started = Instant::now();
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let every = Duration::from_secs_f64(a.every_s);
    let mut samples: Vec<Sample> = Vec::new();
    let mut reloads = 0u64;
    let mut last_reload = Instant::now();
    let mut last_step = 0u64;
    let mut next = started + every;
    println!(
        "{:>7} {:>9} {:>5} {:>8} {:>11} {:>9} {:>6} {:>9} {:>7}",
        "minute", "rss_mb", "fds", "threads", "run_dir_mb", "step_s", "steps", "scrapes", "reloads"
    );
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = child.try_wait()? {
            stop.store(true, Ordering::Relaxed);
            bail!("gradus train exited during the soak: {status}");
        }
        if last_reload.elapsed() >= Duration::from_secs(60) {
            let t = if reloads.is_multiple_of(2) {
                "0.9"
            } else {
                "1.0"
            };
            gradus::run_dir::write_atomic(&config, soak_config(t, a.rotate_logs_mb).as_bytes())?;
            reloads += 1;
            last_reload = Instant::now();
        }
        if Instant::now() < next {
            continue;
        }
        next += every;
        // The steps logged since the last sample, by step number: with log
        // rotation some of them may have moved to `metrics.jsonl.1` since.
        let metrics: Vec<serde_json::Value> = ["metrics.jsonl.1", "metrics.jsonl"]
            .iter()
            .flat_map(|f| gradus::run_dir::read_jsonl(&run_dir.join(f)).unwrap_or_default())
            .collect();
        let fresh: Vec<&serde_json::Value> = metrics
            .iter()
            .filter(|m| m["step"].as_u64().is_some_and(|s| s > last_step))
            .collect();
        last_step = fresh
            .iter()
            .filter_map(|m| m["step"].as_u64())
            .max()
            .unwrap_or(last_step);
        let step_seconds = if fresh.is_empty() {
            f64::NAN
        } else {
            fresh
                .iter()
                .filter_map(|m| m["step_seconds"].as_f64())
                .sum::<f64>()
                / fresh.len() as f64
        };
        let s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_mb: proc_status(pid, "VmRSS:").unwrap_or(f64::NAN) / 1024.0,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count() as f64)
                .unwrap_or(f64::NAN),
            threads: proc_status(pid, "Threads:").unwrap_or(f64::NAN),
            thread_names: thread_names(pid),
            run_dir_mb: dir_bytes(&run_dir) as f64 / 1e6,
            step_seconds,
            steps: fresh.len() as u64,
            scrapes_ok: ok.load(Ordering::Relaxed),
            scrapes_failed: failed.load(Ordering::Relaxed),
            reloads,
        };
        println!(
            "{:>7.1} {:>9.1} {:>5} {:>8} {:>11.2} {:>9.3} {:>6} {:>9} {:>7}",
            s.minute,
            s.rss_mb,
            s.fds,
            s.threads,
            s.run_dir_mb,
            s.step_seconds,
            s.steps,
            format!("{}/{}", s.scrapes_ok, s.scrapes_failed),
            s.reloads
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exit = child.wait()?;
    let events = gradus::run_dir::read_jsonl(&run_dir.join("events.jsonl")).unwrap_or_default();
    let applied = events
        .iter()
        .filter(|e| e["event"] == "config_reloaded")
        .count();

    // Slopes over the samples after warm-up (the first fifth, or the first
    // sample), judged by `is_flat`; the floors are each series' resolution.
    let warm = (samples.len() / 5)
        .max(1)
        .min(samples.len().saturating_sub(2));
    let kept = &samples[warm..];
    let xs: Vec<f64> = kept.iter().map(|s| s.minute / 60.0).collect();
    let span_h = xs.last().zip(xs.first()).map_or(0.0, |(l, f)| l - f);
    let mut verdicts = serde_json::Map::new();
    let mut all_flat = true;
    type Field = fn(&Sample) -> f64;
    let mean_step = {
        let v: Vec<f64> = kept
            .iter()
            .map(|s| s.step_seconds)
            .filter(|v| v.is_finite())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    // (name, value, floor: the change over the soak too small to tell)
    let series: [(&str, Field, f64); 5] = [
        ("rss_mb", |s| s.rss_mb, 2.0),
        ("fds", |s| s.fds, 2.0),
        ("threads", |s| s.threads, 1.0),
        // Step time on a shared machine: 10% of its mean.
        ("step_seconds", |s| s.step_seconds, 0.1 * mean_step),
        ("run_dir_mb", |s| s.run_dir_mb, 0.0),
    ];
    for (name, f, floor) in series {
        let pts: Vec<(f64, f64)> = xs
            .iter()
            .zip(kept)
            .map(|(x, s)| (*x, f(s)))
            .filter(|(_, y)| y.is_finite())
            .collect();
        let (px, py): (Vec<f64>, Vec<f64>) = pts.into_iter().unzip();
        let (slope, sd, se) = fit(&px, &py);
        let mean = py.iter().sum::<f64>() / py.len().max(1) as f64;
        let change = slope * span_h;
        let flat = is_flat(slope, se, span_h, floor);
        // The run dir grows by the logs by design: its slope is reported, not
        // judged; with rotation its bound is judged below.
        if name != "run_dir_mb" {
            all_flat &= flat;
        }
        verdicts.insert(
            name.into(),
            serde_json::json!({"slope_per_hour": slope, "slope_se": se, "per_day": slope * 24.0,
                               "mean": mean, "residual_sd": sd, "change_over_soak": change,
                               "floor": floor, "flat": flat}),
        );
    }
    // With rotation the run dir is bounded: the checkpoints kept, plus per
    // log the live file and its kept rotated files (each about the size),
    // plus a megabyte for the small files. Judged on the largest sample.
    let run_dir_bound = (a.rotate_logs_mb > 0.0).then(|| {
        let ckpt = dir_bytes(&run_dir.join("checkpoints")) as f64 / 1e6;
        let kept = 5.0; // [run].rotated_logs_kept's default, which the soak keeps
        let bound = ckpt + 4.0 * (kept + 1.0) * a.rotate_logs_mb * 1.048_576 * 1.1 + 1.0;
        let max = samples.iter().map(|s| s.run_dir_mb).fold(0.0, f64::max);
        (bound, max, max <= bound)
    });
    if let Some((_, _, within)) = run_dir_bound {
        all_flat &= within;
    }
    let last = samples.last().cloned();
    let failed_scrapes = last.as_ref().map_or(0, |s| s.scrapes_failed);
    let summary = serde_json::json!({
        "minutes": a.minutes,
        "samples": samples.len(),
        "warm_up_samples": warm,
        "series": verdicts,
        "scrapes_ok": last.as_ref().map_or(0, |s| s.scrapes_ok),
        "scrapes_failed": failed_scrapes,
        "reloads_sent": reloads,
        "reloads_applied": applied,
        "train_exit": exit.code(),
        // Threads by name at the first and the last sample, and at every
        // sample whose names differ from the one before (at most 20).
        "thread_names_first": samples.first().map(|s| &s.thread_names),
        "thread_names_last": last.as_ref().map(|s| &s.thread_names),
        "thread_name_changes": samples
            .windows(2)
            .filter(|w| w[0].thread_names != w[1].thread_names)
            .take(20)
            .map(|w| serde_json::json!({"minute": w[1].minute, "names": w[1].thread_names}))
            .collect::<Vec<_>>(),
        "run_dir_bound_mb": run_dir_bound.map(|b| b.0),
        "run_dir_max_mb": run_dir_bound.map(|b| b.1),
        "run_dir_within_bound": run_dir_bound.map(|b| b.2),
        "flat": all_flat,
    });
    println!("{summary}");
    Ok(if all_flat && failed_scrapes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let xs: Vec<f64> = (12..=60).map(|m| m as f64 / 60.0).collect();
        let ys = xs.iter().map(|&x| f(x)).collect();
        (xs, ys)
    }

    #[test]
    fn a_steady_leak_is_not_flat_and_noise_is() {
        let span = 48.0 / 60.0;
        // +6.6 MB/h on 340 MB with 0.1 MB of jitter: 5% of the mean would
        // call it flat; it is a leak of 158 MB a day.
        let (xs, ys) = series(|x| 340.0 + 6.6 * x + 0.1 * (x * 977.0).sin());
        let (slope, _, se) = fit(&xs, &ys);
        assert!((slope - 6.6).abs() < 0.5, "{slope}");
        assert!(!is_flat(slope, se, span, 2.0));
        // Jitter of +-1.5 MB with no trend, and a level step of 1 MB (the
        // allocator keeping a new arena): flat.
        let (xs, ys) =
            series(|x| 340.0 + 1.5 * (x * 977.0).sin() + if x > 0.5 { 1.0 } else { 0.0 });
        let (slope, _, se) = fit(&xs, &ys);
        assert!(is_flat(slope, se, span, 2.0), "{slope} {se}");
        // A constant fd count is flat; one more fd every ten minutes is not.
        let (xs, ys) = series(|_| 40.0);
        let (slope, _, se) = fit(&xs, &ys);
        assert!(is_flat(slope, se, span, 2.0));
        // Falling is not growing.
        let (xs, ys) = series(|x| 0.34 - 0.08 * x + 0.01 * (x * 977.0).sin());
        let (slope, _, se) = fit(&xs, &ys);
        assert!(is_flat(slope, se, span, 0.03), "{slope} {se}");
        let (xs, ys) = series(|x| 40.0 + (x * 6.0).floor());
        let (slope, _, se) = fit(&xs, &ys);
        assert!(!is_flat(slope, se, span, 2.0), "{slope} {se}");
    }
}

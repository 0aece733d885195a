//! `gradus experiment`: run each config with the same sample budget over the
//! same seeds, then compare them in one table and one plot.
//!
//! Runs are sequential subprocesses of the gradus binary, each
//! `gradus train --config X --run-dir OUT/<stem>/seed-<s> --seed <s>
//! --max-samples BUDGET --http 127.0.0.1:0` (an ephemeral port, so a daemon
//! already on 9464 does not collide), with its output in
//! `OUT/<stem>/seed-<s>.log`. One progress line is printed as each run
//! starts and ends; a failed run is reported with the tail of its log and
//! listed in the table, and makes the command exit non-zero after the table
//! is written.

mod aggregate;
mod render;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub use aggregate::{ConfigRow, RunRecord, RunResult, Stat, Table, summarise};

use crate::error::{Error, Result};
use crate::run::Run;

/// Arguments of `gradus experiment`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExperimentArgs {
    /// A run config to compare; repeat for each (`--config A --config B`).
    #[arg(long = "config", required = true)]
    pub configs: Vec<PathBuf>,
    /// Samples each run may spend: graded responses, dropped groups included
    /// (`gradus train --max-samples`).
    #[arg(long)]
    pub budget: u64,
    /// Seeds per config: runs use seeds 0..N.
    #[arg(long, default_value_t = 3)]
    pub seeds: u32,
    /// Directory for the run dirs, logs, table and plot.
    #[arg(long, default_value = "runs/experiment")]
    pub out: PathBuf,
    /// Pass rate on the hardest bucket that counts as reached (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub target: f64,
    /// The bucket the target is judged on, e.g. `math/add3` [default: the
    /// bucket with the lowest mean final pass rate over all runs].
    #[arg(long)]
    pub bucket: Option<String>,
    /// Keep run dirs under --out that already hold a finished run instead of
    /// refusing to start; only missing runs are run.
    #[arg(long)]
    pub reuse: bool,
}

/// What `gradus experiment` wrote.
#[derive(Debug)]
pub struct ExperimentOutput {
    pub table: Table,
    /// `experiment.md`, `experiment.json`, `hardest_bucket.svg`/`.png`.
    pub files: Vec<PathBuf>,
}

/// Runs the experiment with `gradus_exe` as the trainer, prints progress and
/// the table, writes the outputs. Errors with [`Error::RunsFailed`] (after
/// writing everything) when any run failed.
pub fn run_experiment(args: &ExperimentArgs, gradus_exe: &Path) -> Result<ExperimentOutput> {
    let plan = plan(args)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let total = plan.len();
    let mut records = Vec::new();
    for (k, p) in plan.iter().enumerate() {
        let tag = format!("[{}/{total}] {} seed {}", k + 1, p.config, p.seed);
        if p.reuse {
            println!("{tag}: reusing the finished run in {}", p.dir.display());
            records.push(RunRecord {
                config: p.config.clone(),
                seed: p.seed,
                dir: p.dir.clone(),
                failure: None,
                wall_s: None,
            });
            continue;
        }
        println!(
            "{tag}: training ({} → {})",
            p.config_path.display(),
            p.dir.display()
        );
        let rec = run_one(args, gradus_exe, p)?;
        match &rec.failure {
            None => println!(
                "{tag}: finished in {}",
                crate::summary::duration(rec.wall_s.unwrap_or(0.0))
            ),
            Some(why) => {
                println!("{tag}: FAILED: {why}; log {}", p.log.display());
                for line in log_tail(&p.log, 5) {
                    println!("    {line}");
                }
            }
        }
        records.push(rec);
    }
    let table = summarise(&records, args.target, args.bucket.as_deref());
    let md = render::markdown(&table, args.budget, args.seeds);
    println!("\n{md}");
    let mut files = Vec::new();
    let md_path = args.out.join("experiment.md");
    std::fs::write(&md_path, &md).map_err(|e| Error::io(&md_path, e))?;
    files.push(md_path.clone());
    let json_path = args.out.join("experiment.json");
    let json = serde_json::to_string_pretty(&table).map_err(|e| Error::Json {
        path: json_path.clone(),
        source: e,
    })?;
    std::fs::write(&json_path, json).map_err(|e| Error::io(&json_path, e))?;
    files.push(json_path);
    let fig = render::figure(&table);
    if fig.has_data() {
        files.extend(fig.write(&args.out)?);
    }
    for f in &files {
        println!("wrote {}", f.display());
    }
    if !table.failures.is_empty() {
        return Err(Error::RunsFailed {
            failed: table.failures.len(),
            total,
            table: md_path,
        });
    }
    Ok(ExperimentOutput { table, files })
}

/// One planned run.
#[derive(Debug)]
struct Planned {
    config: String,
    config_path: PathBuf,
    seed: u32,
    dir: PathBuf,
    log: PathBuf,
    /// The dir already holds a finished run and `--reuse` keeps it.
    reuse: bool,
}

/// Checks the arguments and every run dir before anything runs, so a typo
/// or a leftover run dir is found in a second, not an hour in.
fn plan(args: &ExperimentArgs) -> Result<Vec<Planned>> {
    let bad = |m: String| Err(Error::BadArgs(m));
    if args.budget == 0 {
        return bad("--budget must be at least 1 sample".into());
    }
    if args.seeds == 0 {
        return bad("--seeds must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.target) {
        return bad(format!("--target must be in [0, 1], got {}", args.target));
    }
    let mut stems: Vec<String> = Vec::new();
    for c in &args.configs {
        if !c.is_file() {
            return bad(format!("--config {}: no such file", c.display()));
        }
        let stem = c
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stems.contains(&stem) {
            return bad(format!(
                "--config {}: another config has the same file name `{stem}`; run dirs are named by it, so rename one",
                c.display()
            ));
        }
        stems.push(stem);
    }
    let mut plan = Vec::new();
    for (c, stem) in args.configs.iter().zip(&stems) {
        for seed in 0..args.seeds {
            let dir = args.out.join(stem).join(format!("seed-{seed}"));
            let log = args.out.join(stem).join(format!("seed-{seed}.log"));
            let exists = dir
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            let finished = exists && Run::load(&dir).is_ok_and(|r| r.status().is_finished());
            if exists && !(args.reuse && finished) {
                let what = if finished {
                    "a finished run"
                } else {
                    "an unfinished run"
                };
                let hint = if finished {
                    "pass --reuse to keep it, "
                } else {
                    ""
                };
                return bad(format!(
                    "{} already holds {what}; {hint}remove it or choose another --out",
                    dir.display()
                ));
            }
            plan.push(Planned {
                config: stem.clone(),
                config_path: c.clone(),
                seed,
                dir,
                log,
                reuse: exists,
            });
        }
    }
    Ok(plan)
}

/// Runs one training subprocess to its end.
fn run_one(args: &ExperimentArgs, exe: &Path, p: &Planned) -> Result<RunRecord> {
    let parent = p.log.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let log = File::create(&p.log).map_err(|e| Error::io(&p.log, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&p.log, e))?;
    let started = Instant::now();
    let status = Command::new(exe)
        .arg("train")
        .arg("--config")
        .arg(&p.config_path)
        .arg("--run-dir")
        .arg(&p.dir)
        .arg("--seed")
        .arg(p.seed.to_string())
        .arg("--max-samples")
        .arg(args.budget.to_string())
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .status()
        .map_err(|e| Error::Spawn {
            exe: exe.to_path_buf(),
            source: e,
        })?;
    let wall = started.elapsed().as_secs_f64();
    let failure = if !status.success() {
        Some(format!("gradus train exited with {status}"))
    } else {
        match Run::load(&p.dir) {
            Ok(run) if run.status().is_finished() => None,
            Ok(run) => Some(format!(
                "exited 0 but the run is not finished ({:?})",
                run.status()
            )),
            Err(e) => Some(format!("exited 0 but left no readable run: {e}")),
        }
    };
    Ok(RunRecord {
        config: p.config.clone(),
        seed: p.seed,
        dir: p.dir.clone(),
        failure,
        wall_s: Some(wall),
    })
}

/// The last `n` lines of a log (fewer if it is shorter or unreadable).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return vec![];
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(|l| l.ok()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests;

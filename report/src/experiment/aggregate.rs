//! From the run directories of an experiment to its table: final pass rate
//! per bucket with its spread over seeds, samples to reach the target pass
//! rate on the hardest bucket, and wall time, per config.
//!
//! Failed runs are kept in the table as failures and left out of the
//! statistics; nothing is averaged over a run that did not finish.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::run::Run;
use crate::series::{PassRates, RatePoint, Source};

/// One run of the experiment, as the orchestrator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The config's file stem.
    pub config: String,
    pub seed: u32,
    pub dir: PathBuf,
    /// Why the run does not count (exit status, no finished event, ...).
    pub failure: Option<String>,
    /// Wall seconds measured around the subprocess; `None` for runs that
    /// were not run here (read from the run's own events instead).
    pub wall_s: Option<f64>,
}

/// Mean, sample standard deviation, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Stat {
            n,
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One finished run's results.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub config: String,
    pub seed: u32,
    pub dir: PathBuf,
    pub source: Source,
    /// Samples (graded responses) the run spent.
    pub samples: u64,
    pub wall_s: Option<f64>,
    /// Last pass rate of each bucket.
    pub final_rates: BTreeMap<String, f64>,
    /// Samples spent when the hardest bucket first reached the target
    /// (in an evaluation); `None`: not reached.
    pub samples_to_target: Option<u64>,
    /// The hardest bucket's curve: (samples, pass rate).
    #[serde(skip)]
    pub hardest_curve: Vec<(f64, f64)>,
}

/// One config's row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRow {
    pub config: String,
    /// Runs started (seeds).
    pub runs: usize,
    /// Runs that finished and count.
    pub ok: usize,
    /// Final pass rate per bucket over the finished seeds.
    pub final_rates: BTreeMap<String, Stat>,
    /// Seeds whose hardest bucket reached the target.
    pub reached: usize,
    /// Samples to the target over the seeds that reached it.
    pub samples_to_target: Option<Stat>,
    /// Samples spent per run.
    pub samples: Option<Stat>,
    pub wall_s: Option<Stat>,
}

/// The experiment's table.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub target: f64,
    /// The bucket the target is judged on.
    pub hardest: Option<String>,
    /// Why that bucket: chosen with `--bucket`, or the lowest mean final rate.
    pub hardest_reason: String,
    /// Where the pass rates come from (mixed when some runs lack eval.jsonl).
    pub sources: Vec<Source>,
    pub configs: Vec<ConfigRow>,
    pub runs: Vec<RunResult>,
    pub failures: Vec<RunRecord>,
}

/// Builds the table from the runs' directories. `bucket` picks the judged
/// bucket; by default it is the one with the lowest mean final pass rate over
/// every finished run (of all configs), among buckets every run has.
pub fn summarise(records: &[RunRecord], target: f64, bucket: Option<&str>) -> Table {
    let mut failures = Vec::new();
    let mut loaded = Vec::new();
    for r in records {
        if r.failure.is_some() {
            failures.push(r.clone());
            continue;
        }
        match Run::load(&r.dir) {
            Ok(run) if run.status().is_finished() => loaded.push((r, run)),
            Ok(run) => failures.push(RunRecord {
                failure: Some(format!("no finished event ({:?})", run.status())),
                ..r.clone()
            }),
            Err(e) => failures.push(RunRecord {
                failure: Some(format!("unreadable: {e}")),
                ..r.clone()
            }),
        }
    }
    let rates: Vec<PassRates> = loaded.iter().map(|(_, run)| PassRates::of(run)).collect();
    let (hardest, hardest_reason) = match bucket {
        Some(b) => (Some(b.to_string()), "chosen with --bucket".to_string()),
        None => match lowest_final(&rates) {
            Some(b) => (
                Some(b),
                "lowest mean final pass rate over all finished runs; --bucket picks another".into(),
            ),
            None => (None, "no finished run logged a pass rate".into()),
        },
    };
    let runs: Vec<RunResult> = loaded
        .iter()
        .zip(&rates)
        .map(|((rec, run), rates)| {
            let curve: &[RatePoint] = hardest
                .as_ref()
                .and_then(|h| rates.curves.get(h))
                .map_or(&[], Vec::as_slice);
            RunResult {
                config: rec.config.clone(),
                seed: rec.seed,
                dir: rec.dir.clone(),
                source: rates.source,
                samples: run.samples(),
                wall_s: rec.wall_s.or_else(|| run.wall_seconds()),
                final_rates: rates.last(),
                samples_to_target: curve.iter().find(|p| p.rate >= target).map(|p| p.samples),
                hardest_curve: curve.iter().map(|p| (p.samples as f64, p.rate)).collect(),
            }
        })
        .collect();
    let mut configs: Vec<String> = Vec::new();
    for r in records {
        if !configs.contains(&r.config) {
            configs.push(r.config.clone());
        }
    }
    let rows = configs
        .iter()
        .map(|c| config_row(c, records, &runs))
        .collect();
    let mut sources: Vec<Source> = runs.iter().map(|r| r.source).collect();
    sources.sort_by_key(|s| *s as u8);
    sources.dedup();
    Table {
        target,
        hardest,
        hardest_reason,
        sources,
        configs: rows,
        runs,
        failures,
    }
}

fn config_row(config: &str, records: &[RunRecord], runs: &[RunResult]) -> ConfigRow {
    let mine: Vec<&RunResult> = runs.iter().filter(|r| r.config == config).collect();
    let mut per_bucket: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &mine {
        for (b, v) in &r.final_rates {
            per_bucket.entry(b.clone()).or_default().push(*v);
        }
    }
    let reached: Vec<f64> = mine
        .iter()
        .filter_map(|r| Some(r.samples_to_target? as f64))
        .collect();
    let samples: Vec<f64> = mine.iter().map(|r| r.samples as f64).collect();
    let wall: Vec<f64> = mine.iter().filter_map(|r| r.wall_s).collect();
    ConfigRow {
        config: config.to_string(),
        runs: records.iter().filter(|r| r.config == config).count(),
        ok: mine.len(),
        final_rates: per_bucket
            .into_iter()
            .filter_map(|(b, v)| Some((b, Stat::of(&v)?)))
            .collect(),
        reached: reached.len(),
        samples_to_target: Stat::of(&reached),
        samples: Stat::of(&samples),
        wall_s: Stat::of(&wall),
    }
}

/// The bucket every run has whose mean final pass rate is lowest. Ties (often
/// several buckets at 0) go to the lowest mean pass rate over all points of
/// the runs' curves, then to the first name.
fn lowest_final(rates: &[PassRates]) -> Option<String> {
    let finals: Vec<BTreeMap<String, f64>> = rates.iter().map(PassRates::last).collect();
    let first = finals.first()?;
    let mean_all = |b: &String| {
        let pts: Vec<f64> = rates
            .iter()
            .filter_map(|r| r.curves.get(b))
            .flat_map(|c| c.iter().map(|p| p.rate))
            .collect();
        pts.iter().sum::<f64>() / pts.len().max(1) as f64
    };
    first
        .keys()
        .filter(|b| finals.iter().all(|f| f.contains_key(*b)))
        .map(|b| {
            let mean = finals.iter().map(|f| f[b]).sum::<f64>() / finals.len() as f64;
            (b.clone(), mean, mean_all(b))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)))
        .map(|(b, _, _)| b)
}

/// The mean of several curves on the union of their x values, within the x
/// range all of them cover, each curve linearly interpolated.
pub fn mean_curve(curves: &[&[(f64, f64)]]) -> Vec<(f64, f64)> {
    let curves: Vec<&[(f64, f64)]> = curves.iter().copied().filter(|c| !c.is_empty()).collect();
    if curves.is_empty() {
        return vec![];
    }
    let lo = curves
        .iter()
        .map(|c| c[0].0)
        .fold(f64::NEG_INFINITY, f64::max);
    let hi = curves
        .iter()
        .map(|c| c[c.len() - 1].0)
        .fold(f64::INFINITY, f64::min);
    let mut xs: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.iter().map(|p| p.0))
        .filter(|x| *x >= lo && *x <= hi)
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .map(|x| {
            let sum: f64 = curves.iter().map(|c| interpolate(c, x)).sum();
            (x, sum / curves.len() as f64)
        })
        .collect()
}

/// `curve` (sorted by x) at `x`, linearly interpolated, clamped at the ends.
fn interpolate(curve: &[(f64, f64)], x: f64) -> f64 {
    let i = curve.partition_point(|p| p.0 < x);
    if i == 0 {
        return curve[0].1;
    }
    if i == curve.len() {
        return curve[i - 1].1;
    }
    let (a, b) = (curve[i - 1], curve[i]);
    if b.0 == a.0 {
        return b.1;
    }
    a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Spec};

    fn records(root: &std::path::Path) -> Vec<RunRecord> {
        // "staged" learns the hard bucket fast, "flat" slowly; seed 2 of flat failed.
        let mut out = Vec::new();
        for (config, slopes) in [("staged", [0.3, 0.35, 0.4]), ("flat", [0.1, 0.12, 0.0])] {
            for (seed, slope) in slopes.iter().enumerate() {
                let dir = root.join(config).join(format!("seed-{seed}"));
                let failed = config == "flat" && seed == 2;
                if !failed {
                    fixture::write(
                        &dir,
                        &Spec {
                            hard_slope: *slope,
                            ..Spec::default()
                        },
                    );
                }
                out.push(RunRecord {
                    config: config.into(),
                    seed: seed as u32,
                    dir,
                    failure: failed.then(|| "exit status: 3".into()),
                    wall_s: Some(10.0 + seed as f64),
                });
            }
        }
        out
    }

    #[test]
    fn the_table_aggregates_seeds_and_judges_the_hardest_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let t = summarise(&records(dir.path()), 0.5, None);
        assert_eq!(t.hardest.as_deref(), Some("math/add2"));
        assert_eq!(t.sources, [Source::Eval]);
        assert_eq!(t.failures.len(), 1);
        assert_eq!(
            (t.failures[0].config.as_str(), t.failures[0].seed),
            ("flat", 2)
        );
        let staged = &t.configs[0];
        assert_eq!(
            (staged.config.as_str(), staged.runs, staged.ok),
            ("staged", 3, 3)
        );
        // Final evaluation at 224 samples: rate = slope * 2.24.
        let add2 = staged.final_rates["math/add2"];
        assert!((add2.mean - 0.35 * 2.24).abs() < 1e-9, "{add2:?}");
        assert!((add2.min - 0.3 * 2.24).abs() < 1e-9 && (add2.max - 0.4 * 2.24).abs() < 1e-9);
        assert!((add2.std - 0.05 * 2.24).abs() < 1e-9, "{add2:?}");
        // Evaluations every 32 samples: slope 0.3 first reaches 0.5 at 192
        // (0.576), 0.35 at 160 (0.56), 0.4 at 128 (0.512).
        let seeds: Vec<_> = t
            .runs
            .iter()
            .filter(|r| r.config == "staged")
            .map(|r| r.samples_to_target)
            .collect();
        assert_eq!(seeds, [Some(192), Some(160), Some(128)]);
        let s = staged.samples_to_target.unwrap();
        assert_eq!(
            (staged.reached, s.mean, s.min, s.max),
            (3, 160.0, 128.0, 192.0)
        );
        let flat = &t.configs[1];
        assert_eq!((flat.runs, flat.ok, flat.reached), (3, 2, 0));
        assert!(flat.samples_to_target.is_none());
        assert_eq!(
            flat.wall_s.unwrap().mean,
            10.5,
            "the failed seed's time is not averaged"
        );
        assert_eq!(flat.samples.unwrap().mean, 224.0);
    }

    #[test]
    fn a_chosen_bucket_and_training_rates_are_used_when_asked_or_needed() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("a/seed-0");
        fixture::write(
            &run,
            &Spec {
                eval: false,
                ..Spec::default()
            },
        );
        let rec = RunRecord {
            config: "a".into(),
            seed: 0,
            dir: run,
            failure: None,
            wall_s: None,
        };
        let t = summarise(&[rec], 0.5, Some("math/add1"));
        assert_eq!(t.hardest.as_deref(), Some("math/add1"));
        assert_eq!(t.sources, [Source::Training]);
        // add1 = 0.1 + 0.05 * step reaches 0.5 at step 8 (128 samples).
        assert_eq!(t.runs[0].samples_to_target, Some(128));
        assert_eq!(
            t.runs[0].wall_s,
            Some(14.5),
            "wall time from the run's own events"
        );
    }

    #[test]
    fn an_unfinished_run_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("a/seed-0");
        fixture::write(
            &run,
            &Spec {
                finished: false,
                ..Spec::default()
            },
        );
        let rec = RunRecord {
            config: "a".into(),
            seed: 0,
            dir: run,
            failure: None,
            wall_s: Some(1.0),
        };
        let signalled = dir.path().join("a/seed-1");
        let spec = Spec {
            stop_reason: "signal",
            ..Spec::default()
        };
        fixture::write(&signalled, &spec);
        let rec2 = RunRecord {
            seed: 1,
            dir: signalled,
            ..rec.clone()
        };
        let t = summarise(&[rec, rec2], 0.5, None);
        assert_eq!(t.configs[0].ok, 0);
        assert_eq!(t.failures.len(), 2);
        let why = t.failures[1].failure.as_deref().unwrap();
        assert!(why.contains("Stopped(\"signal\")"), "{why}");
        assert!(
            t.failures[0]
                .failure
                .as_deref()
                .unwrap()
                .starts_with("no finished event")
        );
    }

    #[test]
    fn ties_at_the_final_rate_go_to_the_bucket_that_was_lower_throughout() {
        let curve = |rates: &[f64]| {
            rates
                .iter()
                .enumerate()
                .map(|(i, r)| RatePoint {
                    step: i as u64,
                    samples: i as u64,
                    rate: *r,
                })
                .collect::<Vec<_>>()
        };
        let rates = PassRates {
            source: Source::Eval,
            curves: [
                ("a/first".to_string(), curve(&[0.0, 0.2, 0.0])),
                ("b/second".to_string(), curve(&[0.0, 0.0, 0.0])),
                ("c/easy".to_string(), curve(&[0.5, 0.6, 0.7])),
            ]
            .into(),
        };
        assert_eq!(lowest_final(&[rates]).as_deref(), Some("b/second"));
    }

    #[test]
    fn mean_curve_interpolates_within_the_common_range() {
        let a = [(0.0, 0.0), (10.0, 1.0)];
        let b = [(5.0, 0.0), (15.0, 0.0)];
        assert_eq!(mean_curve(&[&a, &b]), vec![(5.0, 0.25), (10.0, 0.5)]);
        assert_eq!(mean_curve(&[&a]), a.to_vec());
    }

    #[test]
    fn stat_uses_the_sample_deviation() {
        let s = Stat::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.min, s.max), (2.0, 1.0, 3.0));
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[4.0]).unwrap().std, 0.0);
        assert!(Stat::of(&[]).is_none());
    }
}

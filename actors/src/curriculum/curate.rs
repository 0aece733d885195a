//! The pure core of `gradus curate`: from K graded samples per prompt, each prompt's pass
//! rate and bucket, a histogram, and the prompts set aside because the policy never or
//! always solves them (no learning signal for GRPO; DeepScaleR's and Ji et al.'s curation
//! both drop them).
//!
//! Sampling and grading come from a [`Solver`] (the policy plus the graders in the real
//! command, a fake in tests), called in batches so progress can be shown on long inputs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::config::{Bucket, BucketRule, CurriculumConfig};
use crate::data::{Difficulty, Problem};

/// Samples K responses per problem and grades them.
pub trait Solver {
    /// What can go wrong while sampling or grading.
    type Error: std::error::Error + 'static;

    /// One vector of `k` verdicts per problem, in the order given.
    fn sample_and_grade(
        &mut self,
        problems: &[Problem],
        k: usize,
    ) -> Result<Vec<Vec<bool>>, Self::Error>;
}

impl<F, E> Solver for F
where
    F: FnMut(&[Problem], usize) -> Result<Vec<Vec<bool>>, E>,
    E: std::error::Error + 'static,
{
    type Error = E;

    fn sample_and_grade(&mut self, problems: &[Problem], k: usize) -> Result<Vec<Vec<bool>>, E> {
        self(problems, k)
    }
}

/// How curation runs.
#[derive(Clone, Debug)]
pub struct CurateOptions {
    /// Responses per prompt (K ≥ 1).
    pub samples: usize,
    /// Prompts per solver call (≥ 1); progress is reported after each.
    pub batch: usize,
}

/// Why a prompt was set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetAside {
    /// 0 of K correct.
    NeverSolved,
    /// K of K correct.
    AlwaysSolved,
}

/// Counts over a curated dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// K.
    pub samples: usize,
    /// Prompts with exactly `i` correct responses, for `i` in `0..=K`.
    pub by_correct: Vec<usize>,
    /// Kept prompts per bucket (`""`: in no pass-rate bucket).
    pub by_bucket: BTreeMap<String, usize>,
    /// Prompts kept.
    pub kept: usize,
    /// Prompts set aside as never solved.
    pub never_solved: usize,
    /// Prompts set aside as always solved.
    pub always_solved: usize,
}

/// The result of curation.
#[derive(Clone, Debug, Default)]
pub struct Curated {
    /// Prompts with `difficulty` set to their pass rate, and `metadata.curate`.
    pub kept: Vec<Problem>,
    /// Prompts never or always solved, with `metadata.curate` saying which.
    pub set_aside: Vec<(Problem, SetAside)>,
    /// The counts.
    pub histogram: Histogram,
}

/// Why curation stopped.
#[derive(Debug, thiserror::Error)]
pub enum CurateError<E: std::error::Error + 'static> {
    /// Bad options.
    #[error("curate: {0}")]
    Options(String),
    /// The solver failed.
    #[error("sampling or grading failed: {0}")]
    Solver(#[source] E),
    /// The solver answered for the wrong number of prompts or samples.
    #[error("the solver returned {got} for a batch that needed {want}")]
    Shape {
        /// What was needed.
        want: String,
        /// What came back.
        got: String,
    },
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Samples and grades every problem, then buckets and sets aside; `progress(done, total)` is
/// called after each batch.
pub fn curate<S: Solver>(
    problems: Vec<Problem>,
    buckets: &[Bucket],
    opts: &CurateOptions,
    solver: &mut S,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Curated, CurateError<S::Error>> {
    if opts.samples == 0 || opts.batch == 0 {
        return Err(CurateError::Options("samples and batch must be ≥ 1".into()));
    }
    let k = opts.samples;
    let total = problems.len();
    let mut out = Curated {
        histogram: Histogram {
            samples: k,
            by_correct: vec![0; k + 1],
            ..Histogram::default()
        },
        ..Curated::default()
    };
    let mut done = 0;
    for chunk in problems.chunks(opts.batch) {
        let verdicts = solve(solver, chunk, k)?;
        for (p, v) in chunk.iter().zip(verdicts) {
            let correct = v.iter().filter(|c| **c).count();
            out.histogram.by_correct[correct] += 1;
            let rate = correct as f64 / k as f64;
            let bucket = buckets
                .iter()
                .find(|b| matches!(b.rule, BucketRule::PassRate { .. }) && b.rule.holds_rate(rate))
                .map(|b| b.name.clone());
            let mut p = p.clone();
            p.difficulty = Some(Difficulty::PassRate(rate));
            let aside = match correct {
                0 => Some(SetAside::NeverSolved),
                c if c == k => Some(SetAside::AlwaysSolved),
                _ => None,
            };
            p.metadata.insert(
                "curate".into(),
                json!({"correct": correct, "attempts": k, "bucket": bucket, "set_aside": aside}),
            );
            match aside {
                Some(why) => {
                    match why {
                        SetAside::NeverSolved => out.histogram.never_solved += 1,
                        SetAside::AlwaysSolved => out.histogram.always_solved += 1,
                    }
                    out.set_aside.push((p, why));
                }
                None => {
                    *out.histogram
                        .by_bucket
                        .entry(bucket.unwrap_or_default())
                        .or_default() += 1;
                    out.histogram.kept += 1;
                    out.kept.push(p);
                }
            }
        }
        done += chunk.len();
        progress(done, total);
    }
    Ok(out)
}

/// Curation with a reference model that is not trained (the difficulty-staged paper rates
/// problems with a 1.5B, a 7B and a 32B model): each problem's K graded samples are added to
/// `metadata.curate.pass_rates.MODEL = {correct, attempts}`, so runs with other models
/// accumulate beside it and a second run with the same model adds to its counts. Nothing is
/// set aside (a problem every small model fails is exactly what a hard bucket wants); the
/// histogram's `by_bucket` counts membership of every bucket of `config` (they may overlap)
/// over the rates known after this run, and `never_solved`/`always_solved` count this run's
/// 0-of-K and K-of-K prompts.
pub fn rate<S: Solver>(
    problems: Vec<Problem>,
    model: &str,
    config: &CurriculumConfig,
    opts: &CurateOptions,
    solver: &mut S,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Curated, CurateError<S::Error>> {
    if opts.samples == 0 || opts.batch == 0 {
        return Err(CurateError::Options("samples and batch must be ≥ 1".into()));
    }
    if model.trim().is_empty() {
        return Err(CurateError::Options(
            "the model name must not be empty".into(),
        ));
    }
    for p in &problems {
        if p.metadata.get("curate").is_some_and(|c| !c.is_object()) {
            return Err(CurateError::Options(format!(
                "problem {}: metadata.curate is not an object, so pass rates cannot be added to it",
                p.id
            )));
        }
        if let Err(e) = p.model_pass_rates() {
            return Err(CurateError::Options(format!(
                "problem {}: {}: {}",
                p.id, e.field, e.reason
            )));
        }
    }
    let k = opts.samples;
    let total = problems.len();
    let mut histogram = Histogram {
        samples: k,
        by_correct: vec![0; k + 1],
        ..Histogram::default()
    };
    let mut kept = Vec::with_capacity(total);
    for chunk in problems.chunks(opts.batch) {
        let verdicts = solve(solver, chunk, k)?;
        for (p, v) in chunk.iter().zip(verdicts) {
            let correct = v.iter().filter(|c| **c).count() as u64;
            histogram.by_correct[correct as usize] += 1;
            match correct {
                0 => histogram.never_solved += 1,
                c if c == k as u64 => histogram.always_solved += 1,
                _ => {}
            }
            let mut p = p.clone();
            let (c0, a0) = p
                .model_pass_rates()
                .expect("checked above")
                .get(model)
                .copied()
                .unwrap_or((0, 0));
            let curate = p
                .metadata
                .entry("curate")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("checked above");
            let rates = curate
                .entry("pass_rates")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("checked by model_pass_rates");
            rates.insert(
                model.to_string(),
                json!({"correct": c0 + correct, "attempts": a0 + k as u64}),
            );
            kept.push(p);
        }
        progress(kept.len(), total);
    }
    let assignment = super::buckets::assign(config, &kept);
    for b in &assignment.of {
        if b.is_empty() {
            *histogram.by_bucket.entry(String::new()).or_default() += 1;
        }
        for name in b {
            *histogram.by_bucket.entry(name.clone()).or_default() += 1;
        }
    }
    histogram.kept = kept.len();
    Ok(Curated {
        kept,
        set_aside: Vec::new(),
        histogram,
    })
}

/// One solver call, its answer's shape checked.
fn solve<S: Solver>(
    solver: &mut S,
    chunk: &[Problem],
    k: usize,
) -> Result<Vec<Vec<bool>>, CurateError<S::Error>> {
    let verdicts = solver
        .sample_and_grade(chunk, k)
        .map_err(CurateError::Solver)?;
    if verdicts.len() != chunk.len() || verdicts.iter().any(|v| v.len() != k) {
        return Err(CurateError::Shape {
            want: format!("{} prompts × {k} samples", chunk.len()),
            got: format!(
                "{} prompts with {:?} samples",
                verdicts.len(),
                verdicts.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        });
    }
    Ok(verdicts)
}

/// Paths written by [`write_outputs`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// The curated dataset (gradus JSONL).
    pub dataset: PathBuf,
    /// The prompts set aside (gradus JSONL, loadable as a dataset).
    pub set_aside: PathBuf,
    /// The histogram (JSON).
    pub histogram: PathBuf,
}

/// Writes `out` (dataset), `out` with `.set-aside.jsonl` and `.histogram.json` beside it.
pub fn write_outputs<E: std::error::Error + 'static>(
    c: &Curated,
    out: &Path,
) -> Result<Outputs, CurateError<E>> {
    let stem = out
        .file_stem()
        .map_or_else(|| "curated".into(), |s| s.to_string_lossy().into_owned());
    let dir = out.parent().unwrap_or(Path::new(""));
    let paths = Outputs {
        dataset: out.to_path_buf(),
        set_aside: dir.join(format!("{stem}.set-aside.jsonl")),
        histogram: dir.join(format!("{stem}.histogram.json")),
    };
    write_jsonl(&paths.dataset, c.kept.iter())?;
    write_jsonl(&paths.set_aside, c.set_aside.iter().map(|(p, _)| p))?;
    let text = serde_json::to_string_pretty(&c.histogram).expect("the histogram serialises");
    std::fs::write(&paths.histogram, text + "\n").map_err(|source| CurateError::Io {
        path: paths.histogram.clone(),
        source,
    })?;
    Ok(paths)
}

fn write_jsonl<'a, E: std::error::Error + 'static>(
    path: &Path,
    rows: impl Iterator<Item = &'a Problem>,
) -> Result<(), CurateError<E>> {
    let io = |source| CurateError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Written beside and renamed over: the output may be the input (pass rates of several
    // models accumulate in one file), which a crash mid-write must not cut short.
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut w = BufWriter::new(File::create(&partial).map_err(io)?);
    for p in rows {
        writeln!(
            w,
            "{}",
            serde_json::to_string(p).expect("a problem serialises")
        )
        .map_err(io)?;
    }
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{FormatChoice, Loaded};

    fn problems(n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| Problem {
                id: format!("p{i}"),
                domain: crate::data::Domain::Math,
                prompt: format!("what is {i}?"),
                answer: Some(i.to_string()),
                tests: None,
                solution: None,
                difficulty: None,
                source: "t".into(),
                metadata: Default::default(),
            })
            .collect()
    }

    fn buckets() -> Vec<Bucket> {
        [
            ("hard", 0.0, 0.25),
            ("medium", 0.25, 0.75),
            ("easy", 0.75, 1.0),
        ]
        .into_iter()
        .map(|(n, lo, hi)| Bucket {
            name: n.into(),
            rule: BucketRule::PassRate { lo, hi },
        })
        .collect()
    }

    /// A fake policy: problem `pi` is solved by the first `i mod (K+1)` of its K samples.
    fn fake(ps: &[Problem], k: usize) -> Result<Vec<Vec<bool>>, std::io::Error> {
        Ok(ps
            .iter()
            .map(|p| {
                let i: usize = p.id[1..].parse().unwrap();
                (0..k).map(|s| s < i % (k + 1)).collect()
            })
            .collect())
    }

    #[test]
    fn pass_rates_buckets_histogram_and_set_asides() {
        let mut calls = Vec::new();
        let c = curate(
            problems(10),
            &buckets(),
            &CurateOptions {
                samples: 4,
                batch: 3,
            },
            &mut fake,
            &mut |d, t| calls.push((d, t)),
        )
        .unwrap();
        assert_eq!(calls, vec![(3, 10), (6, 10), (9, 10), (10, 10)]);
        // i mod 5 = 0,1,2,3,4,0,1,2,3,4 correct of 4.
        assert_eq!(c.histogram.by_correct, vec![2, 2, 2, 2, 2]);
        assert_eq!(
            (
                c.histogram.never_solved,
                c.histogram.always_solved,
                c.histogram.kept
            ),
            (2, 2, 6)
        );
        assert_eq!(
            c.histogram.by_bucket,
            BTreeMap::from([("medium".into(), 4), ("easy".into(), 2)])
        );
        let p3 = c.kept.iter().find(|p| p.id == "p3").unwrap();
        assert_eq!(p3.difficulty, Some(Difficulty::PassRate(0.75)));
        assert_eq!(p3.metadata["curate"]["bucket"], "easy");
        let aside: Vec<(&str, SetAside)> = c
            .set_aside
            .iter()
            .map(|(p, w)| (p.id.as_str(), *w))
            .collect();
        assert_eq!(
            aside,
            [
                ("p0", SetAside::NeverSolved),
                ("p4", SetAside::AlwaysSolved),
                ("p5", SetAside::NeverSolved),
                ("p9", SetAside::AlwaysSolved)
            ]
        );
    }

    #[test]
    fn outputs_reload_as_gradus_data() {
        let c = curate(
            problems(10),
            &buckets(),
            &CurateOptions {
                samples: 4,
                batch: 4,
            },
            &mut fake,
            &mut |_, _| {},
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let paths =
            write_outputs::<std::io::Error>(&c, &dir.path().join("math.curated.jsonl")).unwrap();
        assert_eq!(
            paths.set_aside,
            dir.path().join("math.curated.set-aside.jsonl")
        );
        let kept = Loaded::read_files(&[paths.dataset], FormatChoice::Auto).unwrap();
        assert_eq!((kept.problems.len(), kept.rejects.len()), (6, 0));
        let aside = Loaded::read_files(&[paths.set_aside], FormatChoice::Auto).unwrap();
        assert_eq!((aside.problems.len(), aside.rejects.len()), (4, 0));
        let h: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(paths.histogram).unwrap()).unwrap();
        assert_eq!(h["by_correct"], json!([2, 2, 2, 2, 2]));
    }

    #[test]
    fn reference_model_rates_accumulate_and_nothing_is_set_aside() {
        let ps = problems(6);
        let src = r#"
[[buckets]]
name = "L1"
pass_rates = [{ small = "(0, 1)" }]
[[buckets]]
name = "L2"
pass_rates = [{ small = 0, big = "(0, 1]" }]
[[stages]]
name = "s"
domains = { math = 1.0 }
buckets = { L1 = 1.0 }
"#;
        let config = CurriculumConfig::from_toml_str(src, None).unwrap();
        let opts = CurateOptions {
            samples: 4,
            batch: 4,
        };
        // Problem pi: `small` solves i mod 5 of its 4 samples.
        let small = rate(ps, "small", &config, &opts, &mut fake, &mut |_, _| {}).unwrap();
        assert!(small.set_aside.is_empty());
        assert_eq!(small.kept.len(), 6);
        assert_eq!(small.histogram.never_solved, 2);
        // `big` solves all of every one; then `small` again adds its counts.
        let mut all = |ps: &[Problem], k: usize| -> Result<Vec<Vec<bool>>, std::io::Error> {
            Ok(vec![vec![true; k]; ps.len()])
        };
        let big = rate(small.kept, "big", &config, &opts, &mut all, &mut |_, _| {}).unwrap();
        let again = rate(big.kept, "small", &config, &opts, &mut fake, &mut |_, _| {}).unwrap();
        for (i, p) in again.kept.iter().enumerate() {
            let r = p.model_pass_rates().unwrap();
            let c = fake(std::slice::from_ref(p), 4).unwrap()[0]
                .iter()
                .filter(|c| **c)
                .count() as u64;
            assert_eq!(r["small"], (2 * c, 8), "problem {i}");
            assert_eq!(r["big"], (4, 4));
        }
        let h = &again.histogram;
        let partial = again.kept.iter().filter(|p| {
            let (c, a) = p.model_pass_rates().unwrap()["small"];
            c > 0 && c < a
        });
        assert_eq!(h.by_bucket.get("L1").copied().unwrap_or(0), partial.count());
        assert_eq!(h.by_bucket.get("L2").copied().unwrap_or(0), h.never_solved);
        assert_eq!(h.kept, 6);

        let mut odd = problems(1);
        odd[0].metadata.insert("curate".into(), json!("rated"));
        let e = rate(odd, "small", &config, &opts, &mut fake, &mut |_, _| {}).unwrap_err();
        assert!(
            e.to_string().contains("metadata.curate is not an object"),
            "{e}"
        );
    }

    #[test]
    fn a_solver_that_miscounts_is_an_error() {
        let mut short = |ps: &[Problem], _k: usize| -> Result<Vec<Vec<bool>>, std::io::Error> {
            Ok(vec![vec![true]; ps.len()])
        };
        let err = curate(
            problems(2),
            &buckets(),
            &CurateOptions {
                samples: 3,
                batch: 2,
            },
            &mut short,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("2 prompts × 3 samples"), "{err}");
    }
}

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

use super::config::{Bucket, BucketRule};
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
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for p in rows {
        writeln!(
            w,
            "{}",
            serde_json::to_string(p).expect("a problem serialises")
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
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

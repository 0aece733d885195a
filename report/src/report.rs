//! `gradus report RUN_DIR [--out DIR]`: the plots and the one-page summary of
//! one run, finished or still going.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::run::Run;
use crate::timeline::Timeline;
use crate::{figures, summary};

/// Arguments of `gradus report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The run directory (`gradus train --run-dir`); it may still be running.
    pub run_dir: PathBuf,
    /// Where to write the plots and summary.md [default: RUN_DIR/report].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `gradus report` wrote.
#[derive(Debug)]
pub struct ReportOutput {
    pub summary: PathBuf,
    /// Every file written, the summary last.
    pub files: Vec<PathBuf>,
    /// Lines set aside while reading the run (also listed in the summary).
    pub warnings: Vec<String>,
}

/// Writes the report of `args.run_dir` and prints where it went (stdout) and
/// any lines set aside (stderr).
pub fn run_report(args: &ReportArgs) -> Result<ReportOutput> {
    let out = write_report(args)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    for f in &out.files {
        println!("wrote {}", f.display());
    }
    Ok(out)
}

/// Writes the report without printing anything.
pub fn write_report(args: &ReportArgs) -> Result<ReportOutput> {
    let run = Run::load(&args.run_dir)?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("report"));
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let timeline = Timeline::of(&run);
    let mut files = Vec::new();
    let mut plots = Vec::new();
    for fig in figures::all(&run, &timeline) {
        files.extend(fig.write(&out_dir)?);
        plots.push(format!("{}.svg", fig.stem));
    }
    let summary = out_dir.join("summary.md");
    let md = summary::render(&run, &timeline, &plots);
    std::fs::write(&summary, md).map_err(|e| Error::io(&summary, e))?;
    files.push(summary.clone());
    Ok(ReportOutput {
        summary,
        files,
        warnings: run.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Spec};

    fn report(spec: &Spec) -> (tempfile::TempDir, ReportOutput, String) {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fixture::write(&run, spec);
        let out = write_report(&ReportArgs {
            run_dir: run.clone(),
            out: None,
        })
        .unwrap();
        let md = std::fs::read_to_string(&out.summary).unwrap();
        (dir, out, md)
    }

    fn read(out: &ReportOutput, name: &str) -> String {
        let path = out.summary.with_file_name(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_summary_lists_each_stage_with_its_steps_rule_and_evidence() {
        let (_d, out, md) = report(&Spec::default());
        assert!(md.contains("- status: finished (max_samples)"), "{md}");
        let timeline =
            &md[md.find("## Stage timeline").unwrap()..md.find("## Final pass rates").unwrap()];
        let rows: Vec<&str> = timeline
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
            .collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert!(
            rows[0].starts_with(
                "| 1 | warmup | sft | 1 | 4 | `any(max_steps 4)` at step 4 | ✓ max_steps 4: 4 vs 4"
            ),
            "{}",
            rows[0]
        );
        assert!(rows[1].starts_with("| 2 | easy | grpo | 5 | 10 | `any(pass_rate(add1) >= 0.5 over last 32 (min 16))` at step 10"), "{}", rows[1]);
        assert!(rows[1].contains("✓ pass_rate(add1) >= 0.5 over last 32 (min 16): 0.625 vs 0.500, 32 samples<br>✗ max_steps 50: 6 vs 50"), "{}", rows[1]);
        assert!(
            rows[2].starts_with("| 3 | hard | grpo | 11 | 14 | (run finished: max_samples) |"),
            "{}",
            rows[2]
        );
        // Final held-out rates: the last evaluation (step 14, 224 samples).
        assert!(md.contains("Source: held-out evaluation (eval.jsonl)."));
        assert!(
            md.contains(&format!(
                "| math/add1 | {:.3} | 32 | 14 |",
                fixture::easy_rate(14)
            )),
            "{md}"
        );
        assert!(md.contains("| math/add2 | 0.022 | 32 | 14 |"), "{md}");
        // Rates at the end of each stage come from the last evaluation at or before it.
        assert!(
            md.contains(&format!(
                "| easy (10) | {:.3} | 0.016 |",
                fixture::easy_rate(10)
            )),
            "{md}"
        );
        // The unknown event and the restart are listed, not dropped.
        assert!(md.contains("| a_kind_from_the_future |"), "{md}");
        assert!(
            md.contains("| actor_restarted | `{\"actor\":\"grader\"}` |"),
            "{md}"
        );
        assert!(!md.contains("Lines set aside"));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        for plot in [
            "pass_rate",
            "training_pass_rate",
            "reward",
            "length",
            "learner",
            "throughput",
        ] {
            assert!(md.contains(&format!("![{plot}.svg]({plot}.svg)")), "{plot}");
            let png = std::fs::read(out.summary.with_file_name(format!("{plot}.png"))).unwrap();
            assert_eq!(&png[1..4], b"PNG", "{plot}.png");
        }
    }

    #[test]
    fn the_pass_rate_plot_shows_every_bucket_and_labels_each_boundary_with_its_rule() {
        let (_d, out, _) = report(&Spec::default());
        let svg = read(&out, "pass_rate.svg");
        assert!(svg.contains("Pass rate per bucket: held-out evaluation"));
        for needle in [
            "math/add1",
            "math/add2",
            "→ easy: max_steps 4",
            "→ hard: pass_rate(add1) &gt;= 0.5 over last 32 (min 16)",
        ] {
            assert!(svg.contains(needle), "pass_rate.svg lacks {needle}");
        }
        let train = read(&out, "training_pass_rate.svg");
        assert!(train.contains("training window"));
        let learner = read(&out, "learner.svg");
        for panel in ["SFT loss", "RL (GRPO) loss", "Approximate KL", "Entropy"] {
            assert!(learner.contains(panel), "learner.svg lacks {panel}");
        }
        assert!(read(&out, "length.svg").contains("Truncation rate"));
    }

    #[test]
    fn a_run_still_going_with_torn_lines_and_no_eval_is_reported() {
        let spec = Spec {
            steps: 12,
            finished: false,
            torn: true,
            eval: false,
            ..Spec::default()
        };
        let (_d, out, md) = report(&spec);
        assert!(
            out.warnings.is_empty(),
            "a torn tail is not a defect: {:?}",
            out.warnings
        );
        assert!(md.contains("- status: still running"), "{md}");
        assert!(md.contains("`events.jsonl`: last line incomplete"), "{md}");
        assert!(md.contains("`metrics.jsonl`: last line incomplete"), "{md}");
        assert!(
            md.contains("- learner steps: 12; samples (graded responses): 192"),
            "{md}"
        );
        assert!(
            md.contains("| 3 | hard | grpo | 11 | 12 | (running) |"),
            "{md}"
        );
        assert!(
            md.contains("## Latest pass rates (run still going)\n\nSource: training window"),
            "{md}"
        );
        assert!(
            !out.summary
                .with_file_name("training_pass_rate.svg")
                .exists()
        );
        assert!(read(&out, "pass_rate.svg").contains("→ hard: pass_rate(add1)"));
    }

    #[test]
    fn a_run_that_ended_on_an_error_event_says_so() {
        let dir = tempfile::tempdir().unwrap();
        fixture::write(
            dir.path(),
            &Spec {
                finished: false,
                ..Spec::default()
            },
        );
        let path = dir.path().join("events.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"event\":\"error\",\"time\":1795374100.0,\"step\":14,\"error\":\"stage 'hard': dynamic sampling kept no group\"}\n");
        std::fs::write(&path, text).unwrap();
        let out = write_report(&ReportArgs {
            run_dir: dir.path().into(),
            out: None,
        })
        .unwrap();
        let md = std::fs::read_to_string(&out.summary).unwrap();
        assert!(
            md.contains("- status: stopped (error: stage 'hard': dynamic sampling kept no group)"),
            "{md}"
        );
        assert!(
            md.contains("| 3 | hard | grpo | 11 | 14 | (run stopped: error: stage 'hard'"),
            "{md}"
        );
    }

    #[test]
    fn a_malformed_line_is_listed_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fixture::write(dir.path(), &Spec::default());
        let path = dir.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.insert_str(0, "this is not json\n");
        std::fs::write(&path, text).unwrap();
        let out = write_report(&ReportArgs {
            run_dir: dir.path().into(),
            out: Some(dir.path().join("elsewhere")),
        })
        .unwrap();
        assert_eq!(out.summary, dir.path().join("elsewhere/summary.md"));
        let md = std::fs::read_to_string(&out.summary).unwrap();
        assert!(md.contains("## Lines set aside"));
        assert!(
            md.contains(&format!("- {}:1: set aside", path.display())),
            "{md}"
        );
        assert!(md.contains("- learner steps: 14"));
    }

    #[test]
    fn a_directory_without_run_files_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_report(&ReportArgs {
            run_dir: dir.path().into(),
            out: None,
        })
        .unwrap_err();
        assert!(matches!(err, Error::NotARunDir(_)));
        assert!(err.to_string().contains("not a gradus run directory"));
    }
}

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

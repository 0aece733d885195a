//! `gradus report` and `gradus experiment`: thin wrappers over gradus-report.

use std::process::ExitCode;

use anyhow::Context;

pub fn run(args: gradus_report::ReportArgs) -> anyhow::Result<ExitCode> {
    gradus_report::run_report(&args)
        .with_context(|| format!("reporting on {}", args.run_dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn experiment(args: gradus_report::ExperimentArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the gradus executable")?;
    gradus_report::run_experiment(&args, &exe)?;
    Ok(ExitCode::SUCCESS)
}

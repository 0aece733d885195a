//! gradus-report: reading run directories back — plots, a one-page summary,
//! and multi-seed experiments comparing configs under one sample budget.
//!
//! # Layout
//!
//! - [`jsonl`]: lenient reading of files a live run appends to.
//! - [`run`]: a run directory as typed rows (events, steps, evaluations).
//! - [`timeline`]: which stage ran when, and the rule that ended it.
//! - [`series`]: pass-rate curves and per-step figures.
//! - [`plot`]: figures drawn to SVG and PNG.
//! - [`report`]: `gradus report RUN_DIR` (figures and the Markdown summary).
//! - [`experiment`]: `gradus experiment --config A --config B ...`.
//! - [`dashboard`]: the check that `configs/grafana/gradus.json` queries only
//!   metrics and labels that `src/metrics.rs` declares.
//!
//! The crate does not link burn or the runtime: it reads the files a run
//! writes, so it builds in seconds and works on a run that is still going.
//! The CLI (`src/cmd/`) only parses [`ReportArgs`] / [`ExperimentArgs`] and
//! calls [`run_report`] / [`run_experiment`].

pub mod dashboard;
pub mod error;
pub mod experiment;
mod figures;
pub mod jsonl;
pub mod plot;
pub mod report;
pub mod run;
pub mod series;
mod summary;
pub mod timeline;

#[cfg(test)]
mod demo_configs;
#[cfg(test)]
mod fixture;

pub use error::{Error, Result};
pub use experiment::{ExperimentArgs, ExperimentOutput, run_experiment};
pub use report::{ReportArgs, ReportOutput, run_report};

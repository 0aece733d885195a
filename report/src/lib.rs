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
//! - [`report`]: `gradus report RUN_DIR`.
//! - [`experiment`]: `gradus experiment --config A --config B ...`.
//!
//! The crate does not link burn or the runtime: it reads the files a run
//! writes, so it builds in seconds and works on a run that is still going.

pub mod dashboard;
pub mod error;
pub mod jsonl;
pub mod plot;
pub mod run;
pub mod series;
pub mod timeline;

pub use error::{Error, Result};
mod figures;
pub mod report;
mod summary;

pub use report::{ReportArgs, ReportOutput, run_report};

pub mod experiment;
#[cfg(test)]
mod fixture;

pub use experiment::{ExperimentArgs, ExperimentOutput, run_experiment};

//! The curriculum engine: difficulty buckets, stages that advance on pass-rate targets,
//! per-prompt statistics, the deterministic sampler, exact state save/restore, mid-run
//! config changes, and the pure core of `gradus curate`.
//!
//! # Layout
//! - [`config`]: the `[curriculum]` TOML (raw and validated layers).
//! - [`stats`]: per-prompt `(correct, attempts)` and rolling windows.
//! - [`rules`]: advancement rules at runtime and their evidence.
//! - [`buckets`]: which buckets each problem is in (own difficulty, or reference models'
//!   pass rates).
//! - [`sampler`]: pools walked in seeded per-epoch permutations, chosen by weight.
//! - [`engine`]: [`Curriculum`], tying them together per batch.
//! - [`state`]: [`State`] and save/restore.
//! - [`change`]: mid-run config changes applied at batch boundaries.
//! - [`curate`]: pass rates, buckets and set-asides from K graded samples per prompt.
//! - [`actor`]: the curriculum actor, the only writer of the run's [`Curriculum`], with
//!   exactly-once operations across its restarts.
//!
//! None of it but [`actor`] needs the actor runtime.

pub mod actor;
pub mod buckets;
pub mod change;
pub mod config;
pub mod curate;
pub mod engine;
pub mod rules;
pub mod sampler;
pub mod state;
pub mod stats;

pub use change::{Applied, Change, ChangeRefused};
pub use config::CurriculumConfig;
pub use engine::{
    BuildError, BuildReport, Curriculum, Draw, Graded, GroupVerdict, SampleError, StageAdvanced,
    StepOutcome,
};
pub use state::{RestoreError, State};

#[cfg(test)]
mod tests;

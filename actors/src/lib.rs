//! gradus-actors: the actors of a gradus run and their pure logic.
//!
//! # Layout
//! - [`data`]: the [`data::Problem`] type, gradus's own JSONL format, importers for the public
//!   dataset shapes (MATH, GSM8K, DeepScaleR/verl, HumanEval, LiveCodeBench/APPS/TACO) and the
//!   rejects file for malformed rows.
//! - [`curriculum`]: difficulty buckets, stages and their advancement rules, per-prompt
//!   statistics, the deterministic sampler, the serialisable curriculum state, mid-run
//!   config changes and the pure core of `gradus curate`.
//! - [`ledger`]: the exactly-once ledger of rollout groups (dispatched, generated, graded,
//!   learned), saved in every checkpoint.
//! - [`rollout`]: rewards and verdict labels of graded responses, programs from responses.
//! - [`trainer`]: the loop that drives the actors and owns curriculum and ledger.
//! - The actors, one module each, thin shells over the logic above: [`generator`],
//!   [`grader`] (math), [`executor`] (the sandbox client), [`rewards`] (reward assembly:
//!   complete groups and their advantages), [`learner`], [`checkpointer`] (run
//!   checkpoints, written atomically), and the [`supervisor`] that restarts them; [`call`] is how callers survive a restart of the callee.

pub mod call;
pub mod checkpointer;
pub mod curriculum;
pub mod data;
pub mod engine;
pub mod executor;
pub mod fault;
pub mod generator;
pub mod grader;
pub mod learner;
pub mod ledger;
pub mod rewards;
pub mod rollout;
pub mod supervisor;
pub mod trainer;

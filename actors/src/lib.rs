//! gradus-actors: the actors of a gradus run and their pure logic.
//!
//! # Layout
//! - [`data`]: the [`data::Problem`] type, gradus's own JSONL format, importers for the public
//!   dataset shapes (MATH, GSM8K, DeepScaleR/verl, HumanEval, LiveCodeBench/APPS/TACO) and the
//!   rejects file for malformed rows.
//! - [`curriculum`]: difficulty buckets, stages and their advancement rules, per-prompt
//!   statistics, the deterministic sampler, the serialisable curriculum state, mid-run
//!   config changes and the pure core of `gradus curate`.
//!
//! Everything here is plain data and functions: the actor modules (added beside these) own the
//! messages and the runtime, and delegate every decision to these types so it can be tested
//! without an actor system.

pub mod curriculum;
pub mod data;

//! gradus-actors (work in progress).
pub mod executor;
pub mod generator;
pub mod grader;
pub mod learner;
pub mod ledger;
pub mod rollout;
pub mod supervisor;
pub mod trainer;

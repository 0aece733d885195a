//! gradus-actors (work in progress).
pub mod ledger;
pub mod supervisor;

//! End-to-end tests of the `gradus` binary: one integration test binary (it links
//! once), one module per behaviour.

mod curate;
mod data;
mod generate;
mod grade;
mod hf;
mod inference;
mod report;
mod sandbox;
mod serve;
mod train;
mod util;

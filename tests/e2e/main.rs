//! End-to-end tests of the `gradus` binary: one integration test binary (it links
//! once), one module per behaviour.

mod util;
mod data;
mod grade;
mod sandbox;

//! One module per subcommand area. Each exposes its clap arguments and a `run`
//! that returns the process exit code.

pub mod bench;
pub mod curate;
pub mod data;
pub mod export;
pub mod generate;
pub mod grade;
pub mod report;
pub mod sandbox;
pub mod train;

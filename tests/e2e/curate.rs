//! End-to-end tests of `gradus curate`: K samples per prompt from a policy,
//! graded by the math grader and the real sandbox, written back with pass
//! rates and buckets; never/always-solved prompts set aside and counted;
//! malformed rows reported as file:line and kept in a rejects file.
//!
//! The fixture's code prompts expect no output at all, so a near-random
//! policy solves some of its samples (a digit or a comment runs and prints
//! nothing) and fails others; the assertions are the invariants that hold for
//! any such mix, not particular counts.

use std::path::Path;

use serde_json::Value;

use crate::util::{gradus, repo_root, train_tiny};

const CONFIG: &str = "tests/fixtures/curate/curate.toml";

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bucket_of(rate: f64) -> &'static str {
    // The fixture config's buckets: hard [0, .25), medium [.25, .75), easy [.75, 1].
    if rate < 0.25 {
        "hard"
    } else if rate < 0.75 {
        "medium"
    } else {
        "easy"
    }
}

fn curate(dir: &Path, extra: &[&str]) -> (std::process::Output, Value) {
    let input = dir.join("problems.jsonl");
    std::fs::copy(
        repo_root().join("tests/fixtures/curate/problems.jsonl"),
        &input,
    )
    .unwrap();
    let out = gradus()
        .args(["curate", "--config", CONFIG, "--input"])
        .arg(&input)
        .args(["--samples", "8", "--batch", "7", "--max-tokens", "2"])
        .args(extra)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = stdout
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(Value::Null);
    (out, summary)
}

#[test]
fn curate_writes_pass_rates_buckets_set_asides_and_a_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let (out, summary) = curate(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    // The malformed row: reported with file:line and field, set aside, counted.
    assert!(
        stderr.contains("problems.jsonl:6: answer:"),
        "the reject names file:line and field: {stderr}"
    );
    let rejects = jsonl(&dir.path().join("problems.curated.rejects.jsonl"));
    assert_eq!(rejects.len(), 1);
    assert_eq!(summary["rejected"], 1);
    // Progress for the 18 valid prompts, batch by batch.
    assert!(stderr.contains("7/18 prompts"), "{stderr}");
    assert!(stderr.contains("18/18 prompts"), "{stderr}");

    let kept = jsonl(&dir.path().join("problems.curated.jsonl"));
    let aside = jsonl(&dir.path().join("problems.curated.set-aside.jsonl"));
    let hist: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("problems.curated.histogram.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kept.len() + aside.len(),
        18,
        "every valid prompt lands somewhere"
    );
    assert_eq!(hist["kept"], kept.len());
    let by_correct: Vec<u64> = hist["by_correct"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(by_correct.len(), 9, "0..=K correct");
    assert_eq!(by_correct.iter().sum::<u64>(), 18);
    assert_eq!(hist["never_solved"].as_u64().unwrap(), by_correct[0]);
    assert_eq!(hist["always_solved"].as_u64().unwrap(), by_correct[8]);
    let mut per_bucket = std::collections::BTreeMap::<String, u64>::new();
    for p in &kept {
        let c = &p["metadata"]["curate"];
        let (correct, attempts) = (
            c["correct"].as_u64().unwrap(),
            c["attempts"].as_u64().unwrap(),
        );
        assert_eq!(attempts, 8);
        assert!(
            0 < correct && correct < 8,
            "kept prompts are neither never nor always solved: {p}"
        );
        let rate = p["difficulty"].as_f64().unwrap();
        assert!((rate - correct as f64 / 8.0).abs() < 1e-12, "{p}");
        assert_eq!(c["bucket"], bucket_of(rate), "{p}");
        *per_bucket.entry(bucket_of(rate).into()).or_default() += 1;
    }
    assert_eq!(
        hist["by_bucket"],
        serde_json::to_value(&per_bucket).unwrap()
    );
    for p in &aside {
        let c = &p["metadata"]["curate"];
        let correct = c["correct"].as_u64().unwrap();
        let why = if correct == 0 {
            "never_solved"
        } else {
            "always_solved"
        };
        assert!(correct == 0 || correct == 8, "{p}");
        assert_eq!(c["set_aside"], why, "{p}");
    }
    // The set-aside file is a dataset again: `gradus data check` accepts it.
    let check = gradus()
        .args(["data", "check"])
        .arg(dir.path().join("problems.curated.set-aside.jsonl"))
        .arg("--rejects")
        .arg(dir.path().join("r.jsonl"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn curate_samples_from_a_runs_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // One learner step of the tiny staged run, then its final checkpoint.
    train_tiny(&run, 1);
    let (out, summary) = curate(dir.path(), &["--policy", run.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("policy from") && stderr.contains("step-"),
        "the policy comes from the run's checkpoint: {stderr}"
    );
    assert_eq!(
        summary["kept"].as_u64().unwrap()
            + summary["never_solved"].as_u64().unwrap()
            + summary["always_solved"].as_u64().unwrap(),
        18
    );

    // A path that is neither a run nor a checkpoint is refused by name.
    let (bad, _) = curate(dir.path(), &["--policy", dir.path().to_str().unwrap()]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("neither a run directory"), "{err}");
}

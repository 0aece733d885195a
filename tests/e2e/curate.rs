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

/// Issue 14: reference models on an OpenAI-compatible server (a scripted
/// stand-in that answers each prompt with a known number of correct
/// responses) rate the prompts, one `gradus curate --endpoint --model` run
/// per model accumulating in one file; the difficulty-staged paper's L1/L2/L3
/// buckets then hold exactly the problems their definitions name, and a
/// training run draws from them.
#[test]
fn reference_models_on_an_endpoint_rate_prompts_into_the_papers_levels() {
    let dir = tempfile::tempdir().unwrap();
    let k = 4usize;
    let n = 40usize;
    // small, medium, large correct of K for problem i.
    let counts = |i: usize| {
        (
            i % 5,
            (i / 5) % 5,
            if i.is_multiple_of(3) { 0 } else { 1 + i % 4 },
        )
    };
    let mut rows = String::new();
    let mut table = serde_json::json!({"small": {}, "medium": {}, "large": {}});
    for i in 0..n {
        let prompt = format!("What is {i} plus 1?");
        rows += &serde_json::json!({"id": format!("q{i:02}"), "domain": "math",
            "prompt": prompt, "answer": (i + 1).to_string()})
        .to_string();
        rows.push('\n');
        let (s, m, l) = counts(i);
        for (model, c) in [("small", s), ("medium", m), ("large", l)] {
            let texts: Vec<String> = (0..k)
                .map(|j| {
                    if j < c {
                        format!("So the answer is \\boxed{{{}}}.", i + 1)
                    } else {
                        "So the answer is \\boxed{-7}.".to_string()
                    }
                })
                .collect();
            table[model][&prompt] = serde_json::json!(texts);
        }
    }
    let input = dir.path().join("problems.jsonl");
    std::fs::write(&input, rows).unwrap();
    let table_path = dir.path().join("table.json");
    std::fs::write(&table_path, table.to_string()).unwrap();
    let py = crate::util::python_with("json", "the scripted reference-model server");
    let (mut server, addr) = crate::util::spawn_listening(
        std::process::Command::new(py)
            .arg(repo_root().join("tests/fixtures/curate/scripted_server.py"))
            .arg(&table_path),
    );
    let url = format!("http://{addr}");
    let rated = dir.path().join("problems.rated.jsonl");
    let run = |input: &Path, model: &str, api: &str, samples: usize| {
        let out = gradus()
            .args([
                "curate",
                "--config",
                "tests/fixtures/curate/levels.toml",
                "--input",
            ])
            .arg(input)
            .args(["--endpoint", &url, "--model", model, "--api", api])
            .args([
                "--samples",
                &samples.to_string(),
                "--batch",
                "16",
                "--max-tokens",
                "32",
            ])
            .current_dir(repo_root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), stdout, stderr)
    };
    // The first run writes INPUT.rated.jsonl; later ones rewrite it in place.
    let (ok, _, err) = run(&input, "small", "chat", k);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&rated, "medium", "completions", k);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&rated, "large", "chat", k);
    assert!(ok, "{err}");
    // The same model again, two samples more: its counts add up.
    let (ok, stdout, err) = run(&rated, "small", "chat", 2);
    assert!(ok, "{err}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let rows = jsonl(&rated);
    assert_eq!(rows.len(), n, "nothing set aside");
    let (mut l1, mut l2, mut l3_fail, mut l3_rest) = (0, 0, 0, 0);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], format!("q{i:02}"));
        let r = &row["metadata"]["curate"]["pass_rates"];
        let (s, m, l) = counts(i);
        assert_eq!(
            r["small"],
            serde_json::json!({"correct": s + s.min(2), "attempts": k + 2})
        );
        assert_eq!(
            r["medium"],
            serde_json::json!({"correct": m, "attempts": k})
        );
        assert_eq!(r["large"], serde_json::json!({"correct": l, "attempts": k}));
        let partial = |c: usize| 0 < c && c < k;
        l1 += usize::from(partial(s));
        l2 += usize::from((s == 0 && (m == k || partial(m))) || (partial(s) && partial(m)));
        if l == 0 {
            l3_fail += 1;
        } else {
            l3_rest += 1;
        }
    }
    let by_bucket = &summary["by_bucket"];
    assert_eq!(by_bucket["L1"], l1, "{summary}");
    assert_eq!(by_bucket["L2"], l2, "{summary}");
    // Everything the large model fails, and exactly half of the rest.
    let half = (l3_rest as f64 * 0.5).round() as usize;
    assert_eq!(by_bucket["L3"], l3_fail + half, "{summary}");

    // A model the server does not serve: its refusal, named.
    let (ok, _, err) = run(&rated, "huge", "chat", 1);
    assert!(!ok);
    assert!(
        err.contains("400") && err.contains("`huge` does not exist"),
        "{err}"
    );

    // A training run on the rated file draws from the three levels.
    let config = std::fs::read_to_string(repo_root().join("tests/fixtures/curate/levels.toml"))
        .unwrap()
        .replace(
            "builtin_per_bucket = 10",
            &format!("files = [{:?}]", rated.display().to_string()),
        );
    let config_path = dir.path().join("train.toml");
    std::fs::write(&config_path, config).unwrap();
    let out = gradus()
        .args(["train", "--config"])
        .arg(&config_path)
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["--max-samples", "16"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pools = stdout
        .lines()
        .find(|l| l.starts_with("gradus: pools: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        pools,
        format!(
            "gradus: pools: math/L1 {l1}, math/L2 {l2}, math/L3 {}",
            l3_fail + half
        )
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Issue 14: `gradus curate --endpoint` against a real `gradus serve` of a
/// trained run: every prompt's recorded counts are exactly the verdicts of
/// the responses it wrote, and a second run adds to them.
#[test]
fn curate_through_gradus_serve_records_what_it_graded() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    train_tiny(&run_dir, 16);
    let (mut server, addr) = crate::util::spawn_listening(
        gradus()
            .args(["serve", "--model"])
            .arg(&run_dir)
            .args(["--listen", "127.0.0.1:0", "--served-model-name", "tiny"])
            .stderr(std::process::Stdio::null()),
    );
    let input = dir.path().join("problems.jsonl");
    std::fs::copy(
        repo_root().join("tests/fixtures/curate/problems.jsonl"),
        &input,
    )
    .unwrap();
    let rated = dir.path().join("problems.rated.jsonl");
    let mut graded: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (round, from) in [(0, &input), (1, &rated)] {
        let responses = dir.path().join(format!("responses-{round}.jsonl"));
        let out = gradus()
            .args(["curate", "--config", CONFIG, "--input"])
            .arg(from)
            .args([
                "--endpoint",
                &format!("http://{addr}/v1"),
                "--model",
                "tiny",
            ])
            .args([
                "--api",
                "completions",
                "--samples",
                "4",
                "--max-tokens",
                "2",
            ])
            .arg("--responses")
            .arg(&responses)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for r in jsonl(&responses) {
            let e = graded
                .entry(r["id"].as_str().unwrap().to_string())
                .or_default();
            e.0 += u64::from(r["correct"].as_bool().unwrap());
            e.1 += 1;
        }
    }
    let rows = jsonl(&rated);
    assert!(rows.len() >= 15, "the fixture's valid rows are all kept");
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let (c, a) = graded[id];
        assert_eq!(a, 8, "{id}: 4 samples in each of two runs");
        assert_eq!(
            row["metadata"]["curate"]["pass_rates"]["tiny"],
            serde_json::json!({"correct": c, "attempts": a}),
            "{id}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

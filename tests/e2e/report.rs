//! End-to-end tests of `gradus report` and `gradus experiment` against real
//! (tiny) training runs of the binary.

use crate::util::{gradus, repo_root, train_tiny};

const TINY: &str = "tests/fixtures/train/tiny.toml";

#[test]
fn report_plots_and_summarises_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Past the 3-step warm-up and the 3-step math stage, into code.
    train_tiny(&run, 60);
    let out = gradus().arg("report").arg(&run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = run.join("report");
    let summary = std::fs::read_to_string(report.join("summary.md")).unwrap();
    for stage in ["warmup", "math", "code"] {
        assert!(
            summary.contains(stage),
            "summary lists stage {stage}:\n{summary}"
        );
    }
    assert!(
        summary.contains("max_steps 3"),
        "the rule that fired:\n{summary}"
    );
    for plot in ["pass_rate", "reward", "length", "learner", "throughput"] {
        for ext in ["svg", "png"] {
            let f = report.join(format!("{plot}.{ext}"));
            let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} is missing or empty", f.display());
        }
    }
    let svg = std::fs::read_to_string(report.join("pass_rate.svg")).unwrap();
    assert!(svg.contains("math/add1"), "the series are labelled");
    assert!(svg.contains("code"), "stage boundaries are labelled");
}

#[test]
fn experiment_runs_every_config_and_seed_and_tabulates_them() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("exp");
    // A second arm: the same run with a lower learning rate for the math stage.
    let slow = dir.path().join("tiny-slow.toml");
    let text = std::fs::read_to_string(repo_root().join(TINY)).unwrap();
    std::fs::write(
        &slow,
        text.replace("name = \"warmup\"", "name = \"warmup\"\n# slower arm")
            .replace("lr = 3e-3 }", "lr = 1e-3 }"),
    )
    .unwrap();
    let out = gradus()
        .args(["experiment", "--config", TINY, "--config"])
        .arg(&slow)
        .args(["--budget", "40", "--seeds", "2", "--out"])
        .arg(&out_dir)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stem in ["tiny", "tiny-slow"] {
        for seed in 0..2 {
            let events =
                std::fs::read_to_string(out_dir.join(format!("{stem}/seed-{seed}/events.jsonl")))
                    .unwrap();
            assert!(
                events.contains("\"max_samples\""),
                "{stem} seed {seed}: {events}"
            );
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("experiment.json")).unwrap())
            .unwrap();
    let table = std::fs::read_to_string(out_dir.join("experiment.md")).unwrap();
    assert!(table.contains("tiny-slow"), "{table}");
    assert!(table.contains("math/add1"), "{table}");
    assert!(json.to_string().contains("tiny-slow"), "{json}");
    assert!(out_dir.join("hardest_bucket.svg").exists());
}

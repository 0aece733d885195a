//! End-to-end tests of `gradus sandbox {run,batch,bench,doctor}` against the
//! real binary. They need the machine's isolation features: `doctor` must
//! report every required protection active, or these tests fail naming it.

use std::process::Output;

use crate::util::{gradus, repo_root};

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/sandbox")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn doctor_reports_every_required_protection_active() {
    let out = gradus()
        .args(["sandbox", "doctor", "--json"])
        .output()
        .unwrap();
    let report = stdout_json(&out);
    let missing: Vec<String> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["requirement"] == "required" && p["state"] != "on")
        .map(|p| format!("{}: {}", p["name"], p["state"]))
        .collect();
    assert!(
        missing.is_empty(),
        "required protections missing on this machine: {missing:?}"
    );
    assert!(out.status.success());
    let names: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "user_ns",
        "net_ns",
        "pid_ns",
        "mount_ns",
        "ipc_ns",
        "seccomp",
        "pids_cgroup",
        "no_new_privs",
    ] {
        assert!(names.contains(&n), "doctor does not report {n}");
    }
}

#[test]
fn run_prints_one_outcome_and_exit_status_follows_the_verdict() {
    let ok = gradus()
        .args([
            "sandbox",
            "run",
            "--tests",
            &fixture("double.tests.json"),
            &fixture("double.py"),
        ])
        .output()
        .unwrap();
    let v = stdout_json(&ok);
    assert_eq!(v["verdict"], "accepted", "{v}");
    assert_eq!(
        (v["passed"].as_u64(), v["total"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(ok.status.success());

    let bad = gradus()
        .args([
            "sandbox",
            "run",
            "--tests",
            &fixture("double.tests.json"),
            &fixture("double_wrong.py"),
        ])
        .output()
        .unwrap();
    let v = stdout_json(&bad);
    assert_eq!(v["verdict"], "wrong_answer", "{v}");
    assert_eq!(v["passed"], 1);
    assert_eq!(v["cases"][1]["expected"], "42\n");
    assert_eq!(v["cases"][1]["got"], "23\n");
    assert!(!bad.status.success());
}

#[test]
fn batch_judges_every_line_and_sets_malformed_ones_aside() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    for mode in ["warm", "cold"] {
        let out = gradus()
            .args([
                "sandbox",
                "batch",
                "--input",
                &fixture("jobs.jsonl"),
                "--output",
            ])
            .arg(&results)
            .args(["--workers", "2", "--mode", mode])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&results)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    l["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("stdio-ok", "accepted"),
            ("stdio-wrong", "wrong_answer"),
            ("float", "accepted"),
            ("he", "accepted"),
            ("call", "accepted"),
            ("loop", "time_limit"),
            ("HumanEval/x", "accepted"),
            ("lcb-1", "accepted"),
            ("7", "accepted"),
            ("bad-limits", "invalid_job"),
            ("line 11", "invalid_job"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "mode {mode}");
        for l in &lines {
            for key in ["id", "verdict", "passed", "total", "cases", "wall_ms"] {
                assert!(l.get(key).is_some(), "{key} missing in {l}");
            }
        }
        let wrong = &lines[1];
        assert_eq!(
            (wrong["passed"].as_u64(), wrong["total"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(wrong["cases"][1]["expected"], "1");
        assert_eq!(wrong["cases"][1]["got"], "0\n");
        assert!(
            lines[9]["detail"].as_str().unwrap().contains("cpus"),
            "{}",
            lines[9]
        );
        assert!(
            stderr.contains("accepted=7") && stderr.contains("invalid_job=2"),
            "{stderr}"
        );
    }
}

#[test]
fn bench_runs_all_three_ways() {
    let out = gradus()
        .args(["sandbox", "bench", "-n", "4", "--workers", "1", "--json"])
        .output()
        .unwrap();
    let report = stdout_json(&out);
    let ways: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["way"].as_str().unwrap())
        .collect();
    assert_eq!(ways, ["bare", "cold", "warm"]);
    for r in report["rows"].as_array().unwrap() {
        assert_eq!(r["failures"], 0, "{r}");
    }
    assert!(report["idle_warm_worker_bytes"].as_u64().unwrap_or(0) > 0);
}

//! The orchestration, end to end, with a fake `gradus`: a shell script that
//! checks its arguments, records them, and copies a fixture run dir into
//! `--run-dir` (or fails, when told to), so no training runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::fixture::{self, Spec};

/// Held by every test that writes or runs the fake executable: a script
/// still open for writing in one thread while another forks cannot be
/// executed (ETXTBSY).
static SPAWN: Mutex<()> = Mutex::new(());

const FAKE_GRADUS: &str = r#"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls.txt"
[ "$1" = train ] || { echo "expected train, got $1" >&2; exit 2; }
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --run-dir) dir=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --max-samples) budget=$2; shift 2 ;;
    --http) shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
stem=$(basename "$config" .toml)
echo "training $stem seed $seed for $budget samples"
if [ -f "$here/fail-$stem-$seed" ]; then echo "training blew up (simulated)" >&2; exit 3; fi
mkdir -p "$dir" && cp -R "$here/templates/$stem/seed-$seed/." "$dir/"
echo "$budget" > "$dir/budget.txt"
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    exe: PathBuf,
    args: ExperimentArgs,
}

/// Two configs, two seeds; "staged" reaches 0.5 on the hard bucket, "flat" does not.
fn setup() -> Setup {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let bin = root.join("bin");
    for (config, slopes) in [("staged", [0.3, 0.4]), ("flat", [0.1, 0.12])] {
        std::fs::write(root.join(format!("{config}.toml")), "# a config\n").unwrap();
        for (seed, slope) in slopes.iter().enumerate() {
            let spec = Spec {
                hard_slope: *slope,
                ..Spec::default()
            };
            fixture::write(&bin.join(format!("templates/{config}/seed-{seed}")), &spec);
        }
    }
    let exe = bin.join("gradus");
    std::fs::write(&exe, FAKE_GRADUS).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ExperimentArgs {
        configs: vec![root.join("staged.toml"), root.join("flat.toml")],
        budget: 224,
        seeds: 2,
        out: root.join("out"),
        target: 0.5,
        bucket: None,
        reuse: false,
    };
    Setup {
        _tmp: tmp,
        root,
        exe,
        args,
    }
}

fn calls(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(s.exe.with_file_name("calls.txt"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_config_and_seed_runs_once_in_order_with_the_same_budget() {
    let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let out = run_experiment(&s.args, &s.exe).unwrap();
    let o = s.root.join("out");
    let expected: Vec<String> = [("staged", 0), ("staged", 1), ("flat", 0), ("flat", 1)]
        .iter()
        .map(|(c, seed)| {
            format!(
                "train --config {} --run-dir {} --seed {seed} --max-samples 224 --http 127.0.0.1:0",
                s.root.join(format!("{c}.toml")).display(),
                o.join(format!("{c}/seed-{seed}")).display()
            )
        })
        .collect();
    assert_eq!(calls(&s), expected);
    assert_eq!(read(&o.join("flat/seed-1/budget.txt")), "224\n");
    assert!(read(&o.join("flat/seed-1.log")).contains("training flat seed 1 for 224 samples"));
    let md = read(&o.join("experiment.md"));
    assert!(md.contains("- hardest bucket: `math/add2`"), "{md}");
    // slope 0.3 reaches 0.5 at 192 samples, 0.4 at 128.
    assert!(
        md.contains(
            "| staged | 2/2 | 160 ± 45 [128–192] (2/2 seeds reached) | 224 ± 0 [224–224] |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| flat | 2/2 | not reached (0/2 seeds) |"),
        "{md}"
    );
    assert!(
        md.contains("| math/add2 | 0.784 ± 0.158 [0.672–0.896] | 0.246 ± 0.032 [0.224–0.269] |"),
        "{md}"
    );
    assert!(!md.contains("Failed runs"));
    let json: serde_json::Value = serde_json::from_str(&read(&o.join("experiment.json"))).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 4);
    assert_eq!(json["configs"][0]["samples_to_target"]["mean"], 160.0);
    let svg = read(&o.join("hardest_bucket.svg"));
    for needle in [
        "Pass rate on math/add2 vs samples",
        "staged (mean of 2 seeds)",
        "flat (mean of 2 seeds)",
        "target 0.5",
    ] {
        assert!(svg.contains(needle), "hardest_bucket.svg lacks {needle}");
    }
    assert!(o.join("hardest_bucket.png").is_file());
    assert_eq!(out.table.configs.len(), 2);
}

#[test]
fn a_failed_run_is_reported_and_fails_the_command_after_the_table_is_written() {
    let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    std::fs::write(s.exe.with_file_name("fail-flat-1"), "").unwrap();
    let err = run_experiment(&s.args, &s.exe).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RunsFailed {
                failed: 1,
                total: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(calls(&s).len(), 4, "the runs after a failure still run");
    let o = s.root.join("out");
    let md = read(&o.join("experiment.md"));
    assert!(md.contains("| flat | 1/2 |"), "{md}");
    assert!(md.contains("## Failed runs"), "{md}");
    assert!(
        md.contains("- flat seed 1: gradus train exited with exit status: 3"),
        "{md}"
    );
    assert!(read(&o.join("flat/seed-1.log")).contains("training blew up (simulated)"));
}

#[test]
fn a_leftover_run_dir_is_refused_before_anything_runs_unless_reused() {
    let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let o = s.root.join("out");
    fixture::write(
        &o.join("staged/seed-0"),
        &Spec {
            finished: false,
            ..Spec::default()
        },
    );
    let err = run_experiment(&s.args, &s.exe).unwrap_err().to_string();
    assert!(
        err.contains("staged/seed-0 already holds an unfinished run"),
        "{err}"
    );
    assert!(calls(&s).is_empty());

    fixture::write(&o.join("staged/seed-0"), &Spec::default());
    let err = run_experiment(&s.args, &s.exe).unwrap_err().to_string();
    assert!(
        err.contains("already holds a finished run; pass --reuse"),
        "{err}"
    );
    let args = ExperimentArgs {
        reuse: true,
        ..s.args.clone()
    };
    run_experiment(&args, &s.exe).unwrap();
    let c = calls(&s);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(!c.iter().any(|l| l.contains("staged/seed-0")));
}

#[test]
fn bad_arguments_are_refused_by_flag() {
    let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let mut dup = s.args.clone();
    std::fs::create_dir_all(s.root.join("other")).unwrap();
    std::fs::write(s.root.join("other/staged.toml"), "").unwrap();
    dup.configs.push(s.root.join("other/staged.toml"));
    let cases = [
        (
            ExperimentArgs {
                budget: 0,
                ..s.args.clone()
            },
            "--budget",
        ),
        (
            ExperimentArgs {
                seeds: 0,
                ..s.args.clone()
            },
            "--seeds",
        ),
        (
            ExperimentArgs {
                target: 1.5,
                ..s.args.clone()
            },
            "--target must be in [0, 1], got 1.5",
        ),
        (
            ExperimentArgs {
                configs: vec![s.root.join("nope.toml")],
                ..s.args.clone()
            },
            "nope.toml: no such file",
        ),
        (dup, "same file name `staged`"),
    ];
    for (args, needle) in cases {
        let err = plan(&args).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

//! End-to-end tests of `gradus train`: a short staged run, faults, reloads,
//! kill -9 and resume, and /metrics over HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{gradus, repo_root};

const TINY: &str = "tests/fixtures/train/tiny.toml";

/// A run directory in a temp dir, with the tiny config copied in (edited by `edit`).
struct Run {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

impl Run {
    fn new(edit: impl Fn(String) -> String) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("run.toml");
        let text = std::fs::read_to_string(repo_root().join(TINY)).unwrap();
        std::fs::write(&config, edit(text)).unwrap();
        let dir = tmp.path().join("run");
        Self {
            _tmp: tmp,
            dir,
            config,
        }
    }

    fn spawn(&self, faults: &str) -> Child {
        let mut cmd = gradus();
        cmd.args(["train", "--config"])
            .arg(&self.config)
            .arg("--run-dir")
            .arg(&self.dir);
        if !faults.is_empty() {
            cmd.args(["--faults", faults]);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn resume(&self) -> Child {
        gradus()
            .arg("train")
            .arg("--resume")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn events(&self) -> Vec<Value> {
        read_jsonl(&self.dir.join("events.jsonl"))
    }

    fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Polls until `pred` holds on the events, or panics after `secs`.
    fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if pred(&self.events()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; events: {:#?}", self.events());
    }
}

pub(crate) fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn http_get(addr: &str, path: &str) -> String {
    http_get_with_key(addr, path, None)
}

/// `GET path`, with `Authorization: Bearer KEY` when a key is given; the
/// whole response.
pub(crate) fn http_get_with_key(addr: &str, path: &str, key: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The lines of a JSONL file without their timings and redo counts (which
/// differ between runs that otherwise learn the same).
pub(crate) fn untimed(path: &Path) -> Vec<Value> {
    let mut rows = read_jsonl(path);
    for row in &mut rows {
        if let Some(obj) = row.as_object_mut() {
            obj.retain(|k, _| {
                !(k == "time" || k == "redone" || k.ends_with("seconds") || k.ends_with("_per_s"))
            });
        }
    }
    rows
}

/// Every group learned at most once, and none left half-done after a clean stop:
/// read from the ledger of the final checkpoint. Every id handed out is there,
/// terminal; each learned group names the one learner step that learned it, and
/// the groups the ledger puts at each step are exactly those metrics.jsonl says
/// that step learned (a group applied twice would be counted twice there).
fn assert_ledger_clean(run: &Run) {
    assert_run_ledger_clean(&run.dir);
}

/// [`assert_ledger_clean`] of the run in `run_dir`.
pub(crate) fn assert_run_ledger_clean(run_dir: &Path) {
    let checkpoints = run_dir.join("checkpoints");
    let latest = std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    let dir = checkpoints.join(latest.trim());
    gradus_actors::checkpointer::verify(&dir).unwrap();
    let state = gradus_actors::checkpointer::RuntimeState::read(&dir).unwrap();
    let ledger = &state.ledger;
    let ids: Vec<u64> = ledger.entries().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        (0..ledger.next_id()).collect::<Vec<_>>(),
        "every id handed out is in the ledger, once"
    );
    let mut learned_per_step = std::collections::BTreeMap::<u64, u64>::new();
    for (id, e) in ledger.entries() {
        use gradus_actors::ledger::Phase;
        match e.phase {
            Phase::Learned => {
                let at = e
                    .learned_at
                    .unwrap_or_else(|| panic!("group {id} learned at no step"));
                *learned_per_step.entry(at).or_default() += 1;
            }
            Phase::Dropped => assert!(e.learned_at.is_none(), "group {id}: {e:?}"),
            other => panic!("group {id} left {other:?} after a clean stop"),
        }
    }
    let mut kept_per_step = std::collections::BTreeMap::<u64, u64>::new();
    for m in read_jsonl(&run_dir.join("metrics.jsonl")) {
        let kept = m["groups_kept"].as_u64().unwrap();
        if kept > 0 {
            *kept_per_step
                .entry(m["step"].as_u64().unwrap())
                .or_default() += kept;
        }
    }
    assert_eq!(
        learned_per_step, kept_per_step,
        "groups learned per step: ledger vs metrics.jsonl"
    );
    assert_ledger_totals(run_dir);
}

/// The `stopped` event's totals add up.
fn assert_ledger_totals(run_dir: &Path) {
    let stopped: Vec<Value> = read_jsonl(&run_dir.join("events.jsonl"))
        .into_iter()
        .filter(|e| e["event"] == "stopped")
        .collect();
    let ledger = &stopped.last().expect("a stopped event")["ledger"];
    let dispatched = ledger["dispatched"].as_u64().unwrap();
    let learned = ledger["learned"].as_u64().unwrap();
    let dropped = ledger["dropped"].as_u64().unwrap();
    assert_eq!(
        dispatched,
        learned + dropped,
        "groups in flight after a clean stop: {ledger}"
    );
}

#[test]
fn a_short_run_advances_stages_by_its_rules_and_stops_cleanly() {
    let run = Run::new(|t| t.replace("steps = 200", "steps = 2"));
    // Issue 18: a GRADUS_FAULTS left in the environment does nothing without
    // --faults (the learner would crash after its first batch).
    let child = gradus()
        .args(["train", "--config"])
        .arg(&run.config)
        .arg("--run-dir")
        .arg(&run.dir)
        .env("GRADUS_FAULTS", "learner_crash_after_batch=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GRADUS_FAULTS is ignored"), "{out}");
    assert!(
        run.named("actor_restarted").is_empty(),
        "{:#?}",
        run.events()
    );
    let advanced = run.named("stage_advanced");
    assert_eq!(advanced.len(), 3, "{:#?}", run.events());
    assert_eq!(advanced[0]["from"], "warmup");
    assert_eq!(advanced[0]["to"], "math");
    assert!(advanced[0]["rule"].as_str().unwrap().contains("max_steps"));
    assert!(advanced[0]["evidence"].is_array());
    assert!(run.dir.join("checkpoints/latest").exists());
    assert!(!read_jsonl(&run.dir.join("metrics.jsonl")).is_empty());
    // Held-out evaluation at the start, every 4 steps, at each stage boundary
    // (steps 3 and 6) and at the end (step 8, also a multiple of 4: written once).
    let evals = read_jsonl(&run.dir.join("eval.jsonl"));
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 3, 4, 6, 8], "{evals:#?}");
    assert_eq!(evals[0]["samples"], 0);
    let samples: Vec<u64> = evals
        .iter()
        .map(|e| e["samples"].as_u64().unwrap())
        .collect();
    assert!(samples.windows(2).all(|w| w[0] < w[1]), "{samples:?}");
    for e in &evals {
        let buckets = e["buckets"].as_object().unwrap();
        let names: Vec<&str> = buckets.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "code/affine",
                "code/lin",
                "math/add1",
                "math/add2",
                "math/add3"
            ]
        );
        for b in buckets.values() {
            assert_eq!(b["n"], 4, "{e}");
            let rate = b["pass_rate"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&rate), "{e}");
        }
    }
    assert_ledger_clean(&run);
}

#[test]
fn metrics_are_served_over_http_in_prometheus_text() {
    let run = Run::new(|t| t);
    let child = run.spawn("");
    run.wait_for(120, "two steps", |_| {
        read_jsonl(&run.dir.join("metrics.jsonl")).len() >= 2
    });
    let addr = std::fs::read_to_string(run.dir.join("http.addr")).unwrap();
    let metrics = http_get(addr.trim(), "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for name in [
        "gradus_curriculum_stage_index",
        "gradus_curriculum_pass_rate_ratio",
        "gradus_rollout_responses_total",
        "gradus_learner_step_seconds_bucket",
        "gradus_generator_tokens_total",
        "gradus_learner_policy_version",
        "gradus_learner_last_step_timestamp_seconds",
        "gradus_config_reloads_total",
        "gradus_runtime_queue_depth_items{queue=\"generator\"}",
        "gradus_learner_staleness_versions_bucket",
        "gradus_eval_pass_rate_ratio",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // Every sample line parses as `name{labels} value`.
    for line in metrics
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad sample line: {line}"
        );
    }
    let status: Value = serde_json::from_str(
        http_get(addr.trim(), "/status")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    assert!(status["step"].as_u64().unwrap() >= 2);
    // Every supervised actor is up (looked up in the actor registry), and
    // every one the trainer calls has a queue depth (0 between calls).
    let actors = status["actors"].as_object().unwrap();
    let queues = status["queues"].as_object().unwrap();
    for a in [
        "curriculum",
        "generator",
        "rewards",
        "grader",
        "executor",
        "learner",
        "checkpointer",
    ] {
        let health = actors.get(a).and_then(Value::as_str);
        assert_eq!(health, Some("running"), "{status}");
        assert!(a == "checkpointer" || queues.contains_key(a), "{status}");
    }
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_running_one_on_an_invalid_one() {
    let run = Run::new(|t| t);
    let child = run.spawn("");
    run.wait_for(120, "the first step", |e| {
        e.iter().any(|e| e["event"] == "started")
    });
    // Invalid: a typo in a field name. The run goes on with the old config.
    let good = std::fs::read_to_string(&run.config).unwrap();
    std::fs::write(&run.config, good.replace("batch_prompts", "batch_promts")).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    run.wait_for(60, "the invalid reload", |e| {
        e.iter().any(|e| e["event"] == "config_reload_invalid")
    });
    let invalid = &run.named("config_reload_invalid")[0];
    assert!(
        invalid["errors"].to_string().contains("run.toml:"),
        "{invalid}"
    );
    assert!(
        invalid["errors"].to_string().contains("batch_promts"),
        "{invalid}"
    );
    // Refused: a setting the run cannot change while it runs ([sandbox]
    // workers here, beside a curriculum change), named, never dropped
    // silently with the rest applied.
    std::fs::write(
        &run.config,
        good.replace("steps = 200", "steps = 150")
            .replace("workers = 2", "workers = 3"),
    )
    .unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    // The file watcher and the signal may each trigger the reload (at two
    // batch boundaries): the refusal is then reported once per trigger.
    run.wait_for(60, "the refused reload", |e| {
        e.iter()
            .filter(|e| e["event"] == "config_reload_invalid")
            .count()
            >= 2
    });
    let refused = &run.named("config_reload_invalid")[1];
    assert!(
        refused["errors"]
            .to_string()
            .contains("cannot change by reload: sandbox"),
        "{refused}"
    );
    assert!(run.named("config_reloaded").is_empty());
    // Valid: a later stage's rule changes. Applied at a batch boundary (the
    // run's --http override holds for the new file too).
    std::fs::write(&run.config, good.replace("steps = 200", "steps = 150")).unwrap();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    run.wait_for(60, "the valid reload", |e| {
        e.iter().any(|e| e["event"] == "config_reloaded")
    });
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
    assert_ledger_clean(&run);
}

#[test]
fn kill_9_then_resume_continues_from_the_last_checkpoint() {
    let run = Run::new(|t| t);
    let mut child = run.spawn("");
    run.wait_for(180, "two checkpoints", |_| {
        std::fs::read_dir(run.dir.join("checkpoints"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 3
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let latest = std::fs::read_to_string(run.dir.join("checkpoints/latest")).unwrap();
    let saved_step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    let child = run.resume();
    run.wait_for(120, "the resume", |e| {
        e.iter().any(|e| e["event"] == "resumed")
    });
    let resumed = &run.named("resumed")[0];
    assert_eq!(resumed["step"].as_u64().unwrap(), saved_step, "{resumed}");
    // The killed holder left no stale lock: the resume took it at once.
    let lock = std::fs::read_to_string(run.dir.join("lock")).unwrap();
    assert!(lock.contains(&format!("\"pid\":{}", child.id())), "{lock}");
    run.wait_for(120, "a step after the resume", |_| {
        read_jsonl(&run.dir.join("metrics.jsonl"))
            .iter()
            .any(|m| m["step"].as_u64().unwrap() > saved_step + 1)
    });
    // Killed again, with the newest checkpoint then corrupted (one flipped
    // byte): the next resume verifies the checksums, says which checkpoint it
    // skipped and why, and continues from the one before.
    let mut child = child;
    run.wait_for(120, "a checkpoint after the resume", |_| {
        std::fs::read_to_string(run.dir.join("checkpoints/latest"))
            .is_ok_and(|l| l.trim() != latest.trim())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoints = run.dir.join("checkpoints");
    let newest = std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    let mut steps: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    let newest_name = newest.trim().to_string();
    assert!(
        steps.len() >= 2 && steps.contains(&newest_name),
        "{steps:?}"
    );
    // The checkpoint a resume falls back to: the newest other step directory (a kill
    // between a checkpoint's rename and the update of `latest` leaves that one newer than
    // what `latest` names; it is complete, and the loader takes it).
    let previous = steps.iter().rev().find(|s| **s != newest_name).unwrap();
    let runtime = checkpoints.join(newest.trim()).join("runtime.bin");
    let mut bytes = std::fs::read(&runtime).unwrap();
    bytes[0] ^= 0x40;
    std::fs::write(&runtime, bytes).unwrap();
    let child = run.resume();
    // The resume goes back to a checkpoint from before the first resume, so
    // the events since (the first `resumed` among them) are cut from
    // events.jsonl into events.jsonl.superseded: nothing is lost.
    run.wait_for(120, "the second resume", |e| {
        let at = |name: &str| e.iter().rposition(|e| e["event"] == name);
        matches!((at("checkpoint_skipped"), at("resumed")), (Some(s), Some(r)) if s < r)
    });
    let superseded = read_jsonl(&run.dir.join("events.jsonl.superseded"));
    let resumes = |rows: &[Value]| rows.iter().filter(|e| e["event"] == "resumed").count();
    assert_eq!(
        resumes(&run.events()) + resumes(&superseded),
        2,
        "both resumes are on record: {superseded:#?}"
    );
    let skipped = run.named("checkpoint_skipped");
    assert_eq!(skipped.len(), 1, "{:#?}", run.events());
    assert!(
        skipped[0]["checkpoint"]
            .as_str()
            .unwrap()
            .ends_with(newest.trim())
            && skipped[0]["why"].as_str().unwrap().contains("corrupted"),
        "{}",
        skipped[0]
    );
    let resumed = run.named("resumed").last().cloned().unwrap();
    let previous_step: u64 = previous.trim_start_matches("step-").parse().unwrap();
    assert_eq!(
        resumed["step"].as_u64().unwrap(),
        previous_step,
        "{resumed}"
    );
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("skipping checkpoint"), "{out}");
    assert_ledger_clean(&run);
}

#[test]
fn crashed_actors_are_restarted_their_work_redone_once_and_nothing_is_learned_twice() {
    // The learner crashes right after applying batch 4 (before its reply),
    // the grader panics on its 5th batch, the reward assembler dies after
    // grading its 3rd batch, the curriculum actor after applying its 4th
    // operation (the draw of step 2), the checkpointer halfway through its
    // 2nd save (step 4); all are restarted and their work redone exactly
    // once. The sandbox worker running a program of step 1 is killed mid-job
    // (the executor's 2nd batch; its 1st is the evaluation at step 0): the
    // job is our failure, redone once.
    let run = Run::new(|t| {
        t.replace("steps = 200", "steps = 4")
            .replace("keep_checkpoints = 2", "keep_checkpoints = 20")
    });
    let faults = "learner_crash_after_batch=4,grader_panic_on_call=5,rewards_crash_on_call=3,\
                  curriculum_crash_on_call=4,checkpointer_crash_on_save=2,sandbox_kill_on_call=2";
    let (code, out) = finish(run.spawn(faults));
    assert_eq!(code, 0, "{out}");
    let restarts = run.named("actor_restarted");
    for actor in ["learner", "grader", "rewards", "curriculum", "checkpointer"] {
        assert!(
            restarts.iter().any(|r| r["actor"] == actor),
            "{actor} not restarted: {:#?}",
            run.events()
        );
    }
    assert_ledger_clean(&run);
    let stopped = &run.named("stopped")[0];
    assert!(
        stopped["ledger"]["redone"].as_u64().unwrap() >= 3,
        "{stopped}"
    );
    let metrics = read_jsonl(&run.dir.join("metrics.jsonl"));
    assert_eq!(
        metrics[0]["redone"], 1,
        "the killed job of step 1: {}",
        metrics[0]
    );
    // Nothing lost, nothing twice: the run learned, measured and logged
    // exactly what an uninterrupted run with the same seed does.
    let clean = Run::new(|t| {
        t.replace("steps = 200", "steps = 4")
            .replace("keep_checkpoints = 2", "keep_checkpoints = 20")
    });
    let (code, out) = finish(clean.spawn(""));
    assert_eq!(code, 0, "{out}");
    for file in ["metrics.jsonl", "rollouts.jsonl", "eval.jsonl"] {
        let (faulty, uninterrupted) =
            (untimed(&run.dir.join(file)), untimed(&clean.dir.join(file)));
        assert!(!faulty.is_empty(), "{file} is empty");
        assert_eq!(
            faulty, uninterrupted,
            "{file} differs from an uninterrupted run's"
        );
    }
    // The interrupted save (the 2nd: step 4) was redone: it exists, is
    // complete (every file its checksums name, intact) and holds step 4; no
    // half-written temp dir is left.
    let checkpoints = run.dir.join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");
    let redone = checkpoints.join("step-00000004");
    assert_eq!(
        gradus_actors::checkpointer::verify(&redone),
        Ok(()),
        "{names:?}"
    );
    let state = gradus_actors::checkpointer::RuntimeState::read(&redone).unwrap();
    assert_eq!(state.step, 4);
    assert!(redone.join("learner/manifest.json").exists());
    assert!(
        restarts
            .iter()
            .any(|r| r["actor"] == "checkpointer" && r["step"].as_u64().unwrap() == 4),
        "the checkpointer crashed in the save of step 4: {restarts:#?}"
    );
}

#[test]
fn an_async_run_learns_within_its_staleness_bound_and_nothing_twice() {
    let run = Run::new(|t| {
        t.replace("[run]\n", "[run]\nmode = \"async\"\nmax_staleness = 1\n")
            .replace("steps = 200", "steps = 6")
    });
    let (code, out) = finish(run.spawn(""));
    assert_eq!(code, 0, "{out}");
    let metrics = read_jsonl(&run.dir.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 12, "3 + 3 + 6 steps");
    // The first step's update is still running when the step ends.
    assert!(metrics[0]["staleness_max"].is_null(), "{}", metrics[0]);
    let lags: Vec<u64> = metrics
        .iter()
        .filter_map(|m| m["staleness_max"].as_u64())
        .collect();
    assert!(
        lags.contains(&1),
        "batches generated while the learner updated are one version old: {lags:?}"
    );
    assert!(lags.iter().all(|l| *l <= 1), "bound 1 holds: {lags:?}");
    assert!(metrics.iter().all(|m| m["stale_dropped"] == 0));
    assert_eq!(run.named("stage_advanced").len(), 3);
    assert_ledger_clean(&run);
    let ledger = &run.named("stopped")[0]["ledger"];
    assert!(ledger["learned"].as_u64().unwrap() > 0, "{ledger}");
}

#[test]
fn a_second_writer_on_a_live_run_dir_is_refused_and_changes_nothing() {
    let run = Run::new(|t| t.replace("steps = 200", "steps = 4"));
    let child = run.spawn("");
    run.wait_for(180, "the first checkpoint", |_| {
        run.dir.join("checkpoints/latest").exists()
    });
    // Held still (its lock held) while the others try, so the short run
    // cannot finish before they start.
    signal(&child, nix::sys::signal::Signal::SIGSTOP);
    let lock_before = std::fs::read(run.dir.join("lock")).unwrap();
    // `--resume` (a supervisor restarting too early) and a fresh start on the
    // same directory: both refused at once, naming the live process.
    let second_start = gradus()
        .args(["train", "--config"])
        .arg(&run.config)
        .arg("--run-dir")
        .arg(&run.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for second in [run.resume(), second_start] {
        let started = Instant::now();
        let (code, out) = finish(second);
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains("in use") && out.contains(&format!("pid {}", child.id())),
            "{out}"
        );
        assert!(out.contains("UTC"), "the holder's start time: {out}");
        assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    }
    assert_eq!(
        std::fs::read(run.dir.join("lock")).unwrap(),
        lock_before,
        "a refused process rewrote the lock file"
    );
    signal(&child, nix::sys::signal::Signal::SIGCONT);
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
    assert_ledger_clean(&run);
    assert_eq!(run.named("started").len(), 1, "{:#?}", run.events());
    assert!(run.named("resumed").is_empty(), "{:#?}", run.events());
    // The live run's files are those of an undisturbed run (timings aside).
    let clean = Run::new(|t| t.replace("steps = 200", "steps = 4"));
    let (code, out) = finish(clean.spawn(""));
    assert_eq!(code, 0, "{out}");
    assert_same_logs(&run, &clean, "an undisturbed run's");
}

#[test]
fn a_failed_checkpoint_write_keeps_the_previous_one_and_is_retried() {
    // The disk is "full" from the 2nd save on (step 4), for good: saves at 4
    // and 6 fail, each logged and counted with the step-2 checkpoint in
    // force; the 3rd failure in a row ([run].max_checkpoint_failures = 3)
    // stops the run through the one shutdown: an error event, a final save
    // that fails the same way, a non-zero exit.
    let run = Run::new(|t| t.replace("steps = 200", "steps = 8"));
    let (code, out) = finish(run.spawn("disk_full_from_save=2"));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("fault injection is on"), "{out}");
    let failed = run.named("checkpoint_failed");
    let steps: Vec<u64> = failed.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [4, 6, 8], "{:#?}", run.events());
    let consecutive: Vec<u64> = failed
        .iter()
        .map(|e| e["consecutive"].as_u64().unwrap())
        .collect();
    assert_eq!(consecutive, [1, 2, 3]);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{}",
        failed[0]
    );
    let error = &run.named("error");
    assert_eq!(error.len(), 1, "{:#?}", run.events());
    assert!(
        error[0]["error"]
            .as_str()
            .unwrap()
            .contains("3 checkpoint writes in a row failed"),
        "{}",
        error[0]
    );
    assert!(out.contains("retrying at step 6"), "{out}");
    // Nothing half-written was taken as a checkpoint: latest is step 2, intact.
    let checkpoints = run.dir.join("checkpoints");
    let latest = std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000002");
    assert!(checkpoints.join("step-00000002/checksums.json").exists());
    // And the run resumes from it.
    let child = run.resume();
    run.wait_for(120, "the resume", |e| {
        e.iter().any(|e| e["event"] == "resumed")
    });
    assert_eq!(run.named("resumed")[0]["step"], 2);
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (code, out) = finish(child);
    assert_eq!(code, 0, "{out}");
}

/// The lines of `file` in `dir` without timings, paths and addresses (which
/// differ between two runs that learn the same), and without the events a
/// resume adds.
fn comparable(dir: &Path, file: &str) -> Vec<Value> {
    untimed(&dir.join(file))
        .into_iter()
        .filter(|row| !matches!(row["event"].as_str(), Some("resumed")))
        .map(|mut row| {
            if let Some(o) = row.as_object_mut() {
                o.retain(|k, _| {
                    !matches!(k.as_str(), "config" | "http" | "checkpoint" | "elapsed_s")
                });
            }
            row
        })
        .collect()
}

/// The four logs of `run` equal those of `other` (see [`comparable`]).
fn assert_same_logs(run: &Run, other: &Run, what: &str) {
    for file in [
        "metrics.jsonl",
        "rollouts.jsonl",
        "eval.jsonl",
        "events.jsonl",
    ] {
        let (a, b) = (comparable(&run.dir, file), comparable(&other.dir, file));
        assert!(!a.is_empty(), "{file} is empty");
        assert_eq!(a, b, "{file} differs from {what}");
    }
}

/// Issue 18: after a resume, metrics.jsonl (and the other logs) repeated the
/// steps between the checkpoint and the crash, a torn last line was glued to
/// the next one, and the pass-rate window was not in the checkpoint. Now
/// every log is cut back to its length at the checkpoint and the window is
/// saved: a run killed with -9 mid-run (its metrics.jsonl then torn) and
/// resumed writes every file as an uninterrupted run does.
#[test]
fn resume_after_kill_9_is_exact_in_every_run_file() {
    let edit = |t: String| t.replace("steps = 200", "steps = 8");
    let run = Run::new(edit);
    let mut child = run.spawn("");
    // Stopped (then killed) once metrics.jsonl holds a step past the latest
    // checkpoint: those lines are what a resume used to log twice.
    let past_checkpoint = || {
        let latest = std::fs::read_to_string(run.dir.join("checkpoints/latest")).ok()?;
        let saved: u64 = latest.trim().trim_start_matches("step-").parse().ok()?;
        let logged = read_jsonl(&run.dir.join("metrics.jsonl"))
            .iter()
            .filter_map(|m| m["step"].as_u64())
            .max()?;
        (logged > saved).then_some(())
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "never past a checkpoint: {:#?}",
            run.events()
        );
        assert!(
            run.named("stopped").is_empty(),
            "the run ended before the kill"
        );
        if past_checkpoint().is_some() {
            signal(&child, nix::sys::signal::Signal::SIGSTOP);
            // Still so once it is held (it may have checkpointed meanwhile).
            if past_checkpoint().is_some() {
                break;
            }
            signal(&child, nix::sys::signal::Signal::SIGCONT);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A torn last line, as a kill in the middle of a write leaves.
    std::fs::OpenOptions::new()
        .append(true)
        .open(run.dir.join("metrics.jsonl"))
        .unwrap()
        .write_all(b"{\"step\": 99, \"lo")
        .unwrap();
    let (code, out) = finish(run.resume());
    assert_eq!(code, 0, "{out}");
    let resumed = &run.named("resumed")[0];
    assert!(
        resumed["logs_cut_bytes"]["metrics.jsonl"].as_u64().unwrap() > 0,
        "{resumed}"
    );
    let clean = Run::new(edit);
    let (code, out) = finish(clean.spawn(""));
    assert_eq!(code, 0, "{out}");
    assert_same_logs(&run, &clean, "an uninterrupted run's");
    assert_ledger_clean(&run);
}

#[test]
fn logs_rotate_by_size_at_checkpoints_and_readers_see_them_whole() {
    // 1 KiB logs, 50 rotated files kept: the tiny run rotates at most checkpoints.
    let edit = |t: String| t.replace("steps = 200", "steps = 4");
    let run = Run::new(|t| {
        edit(t).replace(
            "keep_checkpoints = 2",
            "keep_checkpoints = 2\nrotate_logs_mb = 0.001\nrotated_logs_kept = 50",
        )
    });
    let (code, out) = finish(run.spawn(""));
    assert_eq!(code, 0, "{out}");
    let rotated = gradus::run_dir::rotated_files(&run.dir, "metrics.jsonl");
    assert!(rotated.len() >= 2, "{rotated:?}");
    // Rotated files, oldest first, then the live one: the whole log, as an
    // undisturbed run without rotation writes it.
    let mut whole = Vec::new();
    for (_, p) in &rotated {
        whole.extend(untimed(p));
    }
    whole.extend(untimed(&run.dir.join("metrics.jsonl")));
    let clean = Run::new(edit);
    let (code, out) = finish(clean.spawn(""));
    assert_eq!(code, 0, "{out}");
    assert_eq!(whole, untimed(&clean.dir.join("metrics.jsonl")));
    // `gradus report` reads the rotated files too.
    let report = gradus_report::run::Run::load(&run.dir).unwrap();
    assert_eq!(report.steps.len(), whole.len());
}

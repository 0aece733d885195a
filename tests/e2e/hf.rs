//! End-to-end: the whole staged pipeline (SFT warm-up, math RL, code RL) on
//! a Hugging Face checkpoint, `configs/hf-tiny.toml` (the tiny Qwen2 of
//! `tests/fixtures/hf/qwen2`), then sampling from the run it wrote.

use std::process::Command;

use serde_json::Value;

use crate::train::read_jsonl;
use crate::util::{gradus, repo_root};

#[test]
fn the_hf_demo_trains_every_stage_and_its_run_generates() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The demo with shorter stages (its SFT warm-up is 300 steps).
    let demo = std::fs::read_to_string(repo_root().join("configs/hf-tiny.toml")).unwrap();
    let short = demo
        .replace("steps = 300", "steps = 12")
        .replace("steps = 40", "steps = 6");
    assert_ne!(short, demo);
    let config = dir.path().join("hf-tiny.toml");
    std::fs::write(&config, short).unwrap();
    let out = gradus()
        .arg("train")
        .arg("--config")
        .arg(&config)
        .arg("--run-dir")
        .arg(&run)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("tests/fixtures/hf/qwen2"), "{stdout}");
    let events = read_jsonl(&run.join("events.jsonl"));
    let advanced: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "stage_advanced")
        .collect();
    let path: Vec<(&Value, &Value)> = advanced.iter().map(|e| (&e["from"], &e["to"])).collect();
    assert_eq!(
        path,
        [
            (&Value::from("warmup"), &Value::from("math")),
            (&Value::from("math"), &Value::from("code")),
            (&Value::from("code"), &Value::Null),
        ],
        "warm-up → math → code → end"
    );
    let stopped = events.iter().find(|e| e["event"] == "stopped").unwrap();
    assert_eq!(stopped["reason"], "finished", "{stopped}");
    // Every RL step's responses were scored by the grader or the sandbox.
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    assert!(metrics.len() >= 14, "{} steps", metrics.len());
    assert!(
        metrics.iter().any(|m| m["kind"] == "grpo"),
        "RL steps were taken"
    );
    assert!(
        std::fs::read_dir(run.join("checkpoints")).unwrap().count() >= 2,
        "checkpoints written"
    );

    // The run's latest checkpoint, through the checkpoint's tokenizer and
    // chat template; then the same checkpoint exported in Hugging Face
    // layout samples the same greedy tokens.
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": 1, \"prompt\": \"What is 12 + 30?\"}\n{\"id\": 2, \"prompt\": \"Write add(a, b).\"}\n",
    )
    .unwrap();
    let greedy = |model: &std::path::Path| -> Vec<Value> {
        let o = Command::new(env!("CARGO_BIN_EXE_gradus"))
            .arg("generate")
            .arg("--model")
            .arg(model)
            .arg("--prompts")
            .arg(&prompts)
            .args(["--temperature", "0", "--max-tokens", "12"])
            // The run's own system turn (configs/hf-tiny.toml), which a run
            // directory applies by itself and an exported checkpoint does not.
            .args(["--system", "Put the final answer in \\boxed{}."])
            .current_dir(repo_root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let from_run = greedy(&run);
    assert_eq!(from_run.len(), 2);
    for row in &from_run {
        let n = row["tokens"].as_array().unwrap().len();
        assert!((1..=12).contains(&n), "{row}");
    }
    let export = |out: &std::path::Path, extra: &[&str]| {
        gradus()
            .arg("export")
            .arg(&run)
            .arg("--out")
            .arg(out)
            .args(extra)
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    let exported = dir.path().join("export");
    let o = export(&exported, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
    ] {
        assert!(exported.join(f).is_file(), "{f} exported");
    }
    // The trained weights, not the starting ones.
    let start =
        std::fs::read(repo_root().join("tests/fixtures/hf/qwen2/model.safetensors")).unwrap();
    assert_ne!(
        std::fs::read(exported.join("model.safetensors")).unwrap(),
        start
    );
    let texts = |rows: &[Value]| rows.iter().map(|r| r["tokens"].clone()).collect::<Vec<_>>();
    assert_eq!(
        texts(&greedy(&exported)),
        texts(&from_run),
        "export samples as the run"
    );
    // Sharded (`--max-shard-size`): shards and an index, sampling as the run.
    let sharded = dir.path().join("export-sharded");
    let o = export(&sharded, &["--max-shard-size", "64KiB"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(sharded.join("model.safetensors.index.json").is_file());
    assert!(!sharded.join("model.safetensors").exists());
    let shards = std::fs::read_dir(&sharded)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("model-") && n.ends_with(".safetensors")
        })
        .count();
    assert!(shards > 2, "{shards} shards");
    assert_eq!(
        texts(&greedy(&sharded)),
        texts(&from_run),
        "a sharded export samples as the run"
    );
    // A second export into the same directory is refused.
    let o = export(&exported, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not empty"));
}

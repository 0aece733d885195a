//! End-to-end: `gradus generate` on the Hugging Face fixtures of
//! `tests/fixtures/hf/` (made by transformers: `make.py`) and on a run
//! directory of the built-in model.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::{gradus, repo_root, train_tiny};

fn hf(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/hf").join(name)
}

fn reference(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(hf(name).join("reference.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// Runs `gradus generate` on `rows`; returns (exit code, output rows, stderr).
fn generate(model: &Path, rows: &[String], extra: &[&str]) -> (i32, Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, rows.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let o = gradus()
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--prompts")
        .arg(&prompts)
        .arg("--output")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let rows = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (o.status.code().unwrap_or(-1), rows, stderr)
}

/// Greedy decoding through the chat template gives transformers' greedy
/// tokens: 64 of them where no stop token comes (Qwen3), and up to and
/// including the first stop token where one does (Qwen2, whose greedy
/// continuation in transformers ran on past it). A string prompt with
/// `--system` is the same prompt as the message list with that system turn.
#[test]
fn greedy_generation_through_the_chat_template_equals_transformers() {
    for name in ["qwen3", "qwen2"] {
        let meta = reference(name);
        let stops = ids(&meta["stop_ids"]);
        let chats = meta["chats"].as_array().unwrap();
        let user0 = chats[0][0]["content"].as_str().unwrap();
        let rows = [
            json!({"id": "a", "prompt": user0}).to_string(),
            json!({"id": 7, "prompt": chats[1]}).to_string(),
        ];
        let (code, out, stderr) = generate(
            &hf(name),
            &rows,
            &["--temperature", "0", "--max-tokens", "64"],
        );
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(out.len(), 2, "{name}");
        assert_eq!(out[0]["id"], "a");
        assert_eq!(out[1]["id"], 7);
        for (i, row) in out.iter().enumerate() {
            let greedy = ids(&meta["greedy"][i]);
            let want: Vec<u64> = match greedy.iter().position(|t| stops.contains(t)) {
                Some(stop) => greedy[..=stop].to_vec(),
                None => greedy.clone(),
            };
            let got = ids(&row["tokens"]);
            assert_eq!(got, want, "{name}: prompt {i}");
            let finish = if want.len() < 64 { "stop" } else { "length" };
            assert_eq!(row["finish_reason"], finish, "{name}: prompt {i}");
            let lps = row["logprobs"].as_array().unwrap();
            assert_eq!(lps.len(), got.len());
            assert!(lps.iter().all(|l| l.as_f64().unwrap() <= 0.0), "{row}");
            assert!(row["text"].is_string());
        }
        // The system turn given on the command line.
        let system = chats[1][0]["content"].as_str().unwrap();
        let user1 = chats[1][1]["content"].as_str().unwrap();
        let (code, again, stderr) = generate(
            &hf(name),
            &[json!({"id": 7, "prompt": user1}).to_string()],
            &[
                "--temperature",
                "0",
                "--max-tokens",
                "64",
                "--system",
                system,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(again[0]["tokens"], out[1]["tokens"], "{name}: --system");
    }
}

/// Malformed rows are named by line and set aside, the rest generated, and
/// the exit status is 2; sampling with a seed repeats itself.
#[test]
fn malformed_prompt_rows_are_reported_by_line_and_the_rest_generated() {
    let rows = [
        json!({"id": 1, "prompt": "What is 12 + 30?"}).to_string(),
        "{not json".to_string(),
        json!({"id": 3}).to_string(),
        json!({"id": 4, "prompt": 5}).to_string(),
        json!({"id": 5, "prompt": [{"content": "no role"}]}).to_string(),
        json!({"id": 6, "prompt": "x ".repeat(600)}).to_string(),
        json!({"id": 7, "prompt": "Write add(a, b)."}).to_string(),
    ];
    let args = [
        "--temperature",
        "1",
        "--top-p",
        "0.9",
        "--max-tokens",
        "16",
        "--seed",
        "3",
    ];
    let (code, out, stderr) = generate(&hf("llama3"), &rows, &args);
    assert_eq!(code, 2, "{stderr}");
    for (line, says) in [
        (2, "not JSON"),
        (3, "no \"prompt\" field"),
        (4, "neither a string nor a list"),
        (5, "needs a string \"role\""),
        (6, "exceed the model's 256 positions"),
    ] {
        let at = format!("prompts.jsonl:{line}: ");
        assert!(
            stderr.lines().any(|l| l.contains(&at) && l.contains(says)),
            "line {line} ({says}) not in {stderr}"
        );
    }
    let got: Vec<&Value> = out.iter().map(|r| &r["id"]).collect();
    assert_eq!(got, [&json!(1), &json!(7)]);
    let (_, again, _) = generate(&hf("llama3"), &rows, &args);
    assert_eq!(out, again, "same seed, same samples");
    let stops = ids(&reference("llama3")["stop_ids"]);
    for r in &out {
        let t = ids(&r["tokens"]);
        assert!(!t.is_empty() && t.len() <= 16);
        match r["finish_reason"].as_str().unwrap() {
            "stop" => assert!(stops.contains(t.last().unwrap()), "{r}"),
            "length" => assert_eq!(t.len(), 16, "{r}"),
            other => panic!("finish_reason {other}"),
        }
    }
}

/// `--no-chat-template` encodes the text as is, with the post-processor's
/// BOS (Llama); a message list then is refused.
#[test]
fn without_the_chat_template_a_prompt_is_plain_text() {
    let rows = [
        json!({"id": 1, "prompt": "print(1)"}).to_string(),
        json!({"id": 2, "prompt": [{"role": "user", "content": "hi"}]}).to_string(),
    ];
    let (code, out, stderr) = generate(
        &hf("llama3"),
        &rows,
        &[
            "--no-chat-template",
            "--temperature",
            "0",
            "--max-tokens",
            "4",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("prompts.jsonl:2: prompt: a message list cannot"),
        "{stderr}"
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["tokens"].as_array().unwrap().len(), 4);
}

/// A run directory of the built-in model: its config's tokenizer, its latest
/// checkpoint.
#[test]
fn generates_from_a_run_directory_and_refuses_what_is_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run, 64);
    let rows = [json!({"id": "q", "prompt": "12+30="}).to_string()];
    let (code, out, stderr) = generate(&run, &rows, &["--temperature", "0", "--max-tokens", "8"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("policy from"), "{stderr}");
    assert_eq!(out[0]["id"], "q");
    let n = out[0]["tokens"].as_array().unwrap().len();
    assert!((1..=8).contains(&n), "{}", out[0]);
    let (code, _, stderr) = generate(dir.path(), &rows, &[]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("neither a Hugging Face checkpoint"),
        "{stderr}"
    );
}

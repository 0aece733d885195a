//! End-to-end tests of `gradus serve` and the `openai` generator backend:
//! real server processes on loopback ports, a staged training run whose
//! generation goes through two of them (one SIGKILLed mid-run and
//! restarted), the official `openai` Python client, and a weight reload
//! under load.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::train::read_jsonl;
use crate::util::{gradus, repo_root};

/// A running `gradus serve`, killed when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(model: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = gradus();
        cmd.args(["serve", "--model"])
            .arg(model)
            .args(["--listen", listen, "--served-model-name", "policy"])
            .args(extra)
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, addr) = crate::util::spawn_listening(&mut cmd);
        Serve { child, addr }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn metrics(&self) -> String {
        http(&self.addr, "GET", "/metrics", "", None).1
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request; status and body.
fn http(addr: &str, method: &str, path: &str, body: &str, key: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Sum of a counter's samples whose labels contain `labels`.
fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn qwen2() -> PathBuf {
    repo_root().join("tests/fixtures/hf/qwen2")
}

/// The tiny built-in config with a short code stage and `extra` appended.
fn tiny(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/train/tiny.toml")).unwrap();
    let text = text.replace("steps = 200", "steps = 40") + extra;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, run: &Path) -> Child {
    gradus()
        .args(["train", "--config"])
        .arg(config)
        .arg("--run-dir")
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Issue 14: a staged run generates through two `gradus serve` processes;
/// one is SIGKILLed while the run goes on and restarted on its port. The
/// run finishes every stage, the survivor served the gap, the restarted
/// server was brought to the current weights and served again, every
/// rollout was learned once (ledger), and every step learned on-policy
/// rollouts (staleness 0).
#[test]
fn a_staged_run_on_two_servers_survives_one_killed_and_learns_each_rollout_once() {
    let tmp = tempfile::tempdir().unwrap();
    // The servers start from a checkpoint of the same shape (the run pushes
    // its own weights to them before its first rollout).
    let seed_cfg = tiny(tmp.path(), "seed.toml", "");
    let text = std::fs::read_to_string(&seed_cfg).unwrap();
    std::fs::write(
        &seed_cfg,
        text.replacen("[run]\n", "[run]\nmax_steps = 1\n", 1),
    )
    .unwrap();
    let seed_run = tmp.path().join("seed");
    let out = gradus()
        .args(["train", "--config"])
        .arg(&seed_cfg)
        .arg("--run-dir")
        .arg(&seed_run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = Serve::start(&seed_run, "127.0.0.1:0", &[], &[]);
    let mut b = Serve::start(&seed_run, "127.0.0.1:0", &[], &[]);
    let cfg = tiny(
        tmp.path(),
        "remote.toml",
        &format!(
            "\n[generator]\nbackend = \"openai\"\nendpoints = [\"http://{}\", \"http://{}/v1\"]\n\
             concurrency = 4\ntimeout_s = 30\nprobe_every_s = 0.1\n",
            a.addr, b.addr
        ),
    );
    let run = tmp.path().join("remote");
    let child = train(&cfg, &run);
    // Kill b once RL rollouts exist (the math stage is generating).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no RL step ran");
        let rl = read_jsonl(&run.join("metrics.jsonl"))
            .iter()
            .filter(|m| m["kind"] == "grpo")
            .count();
        if rl >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let served_before = counter(
        &b.metrics(),
        "gradus_serve_requests_total",
        "/v1/completions",
    );
    b.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let b2 = Serve::start(&seed_run, &b.addr, &[], &[]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(served_before > 0.0, "b served nothing before it was killed");
    assert!(
        counter(
            &a.metrics(),
            "gradus_serve_requests_total",
            "/v1/completions"
        ) > 0.0,
        "a served nothing"
    );
    assert!(
        stderr.contains(&format!("inference endpoint http://{}/v1 is down", b.addr)),
        "the kill was not noticed: {stderr}"
    );
    let m2 = b2.metrics();
    assert!(
        counter(&m2, "gradus_serve_weight_reloads_total", "ok") >= 1.0,
        "the restarted server was not synced: {m2}"
    );
    assert!(
        counter(&m2, "gradus_serve_requests_total", "/v1/completions") > 0.0,
        "the restarted server was not probed back in: {stderr}"
    );
    // Every stage ran, in order, each advanced by its own rule (the last
    // advance, to no stage, finishes the run).
    let advanced: Vec<String> = read_jsonl(&run.join("events.jsonl"))
        .iter()
        .filter(|e| e["event"] == "stage_advanced")
        .map(|e| e["to"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(advanced, vec!["math", "code", ""], "{stderr}");
    let steps = read_jsonl(&run.join("metrics.jsonl"));
    assert!(
        steps
            .iter()
            .any(|m| m["stage"] == "code" && m["kind"] == "grpo")
    );
    for m in &steps {
        assert_eq!(
            m["staleness_max"], 0,
            "step {}: off-policy rollouts",
            m["step"]
        );
        assert_eq!(m["stale_dropped"], 0);
    }
    crate::train::assert_run_ledger_clean(&run);
    // The synced weights: the newest version and the one before, no more.
    let kept = std::fs::read_dir(run.join("weights")).unwrap().count();
    assert!(kept <= 2, "{kept} weight versions kept");
}

/// Issue 14: the official `openai` client calls `gradus serve` (with an API
/// key from the environment): models, completions with log-probs (equal to
/// `gradus generate`'s own scoring of the same greedy tokens within 1e-4),
/// echo, chat completions through the checkpoint's template, and the
/// client's own error types for an unknown model and a wrong key.
#[test]
fn the_openai_client_gets_completions_and_chat_with_gradus_logprobs() {
    let py = crate::util::python_with("openai", "the official OpenAI client");
    let key = ("GRADUS_TEST_SERVE_KEY", "k-serve-0123456789");
    let s = Serve::start(&qwen2(), "127.0.0.1:0", &["--api-key-env", key.0], &[key]);
    let out = Command::new(&py)
        .arg(repo_root().join("tests/fixtures/serve/openai_client.py"))
        .args([format!("http://{}", s.addr), "policy".into(), key.1.into()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["models"], json!(["policy"]));
    let c = &got["completion"];
    assert_eq!(c["weight_version"], "0");
    let tokens: Vec<u32> = c["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.as_str()
                .unwrap()
                .strip_prefix("token_id:")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(!tokens.is_empty() && tokens.len() <= 12);
    assert_eq!(c["usage"]["completion_tokens"], tokens.len());
    // Top log-probs: the greedy token is the most likely of its two.
    for (i, top) in c["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{top:?}");
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let lp = c["token_logprobs"][i].as_f64().unwrap();
        assert!((best - lp).abs() < 1e-6, "token {i}: {lp} vs best {best}");
    }
    // The same greedy tokens and log-probs as gradus's own sampler.
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"id\": 0, \"prompt\": \"Compute 2+3.\"}\n").unwrap();
    let generated = gradus()
        .args(["generate", "--model"])
        .arg(qwen2())
        .arg("--prompts")
        .arg(&prompts)
        .args([
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--no-chat-template",
        ])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let row: Value = serde_json::from_slice(&generated.stdout).unwrap();
    let want: Vec<u32> = serde_json::from_value(row["tokens"].clone()).unwrap();
    assert_eq!(tokens, want);
    for (i, (a, b)) in c["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(row["logprobs"].as_array().unwrap())
        .enumerate()
    {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() < 1e-4, "token {i}: served {a}, gradus {b}");
    }
    assert_eq!(
        c["finish_reason"],
        if row["finish_reason"] == "stop" {
            "stop"
        } else {
            "length"
        }
    );
    // Echo: the prompt's tokens first, the first one without a log-prob.
    let e = &got["echo"];
    assert_eq!(e["tokens"].as_array().unwrap().len(), 3 + 2);
    assert!(e["token_logprobs"][0].is_null());
    assert!(e["token_logprobs"][1].as_f64().unwrap() < 0.0);
    // Chat: two seeded choices, log-probs and two alternatives per token.
    let chat = got["chat"].as_array().unwrap();
    assert_eq!(chat.len(), 2);
    for x in chat {
        assert_eq!(x["role"], "assistant");
        let n = x["logprobs"].as_array().unwrap().len();
        assert!((1..=8).contains(&n));
        assert!(x["top"].as_array().unwrap().iter().all(|t| t == 2));
    }
    assert_eq!(
        got["unknown_model"],
        json!({"status": 400, "param": "model"})
    );
    assert_eq!(got["wrong_key"], 401);
}

/// Issue 14: a weight reload while 24 requests are in flight drops none;
/// the answers after it tell the new version, and a bad reload (a missing
/// directory) is refused with the old weights still served.
#[test]
fn a_weight_reload_under_load_drops_no_request() {
    let s = Serve::start(&qwen2(), "127.0.0.1:0", &["--max-batch", "8"], &[]);
    let addr = s.addr.clone();
    let body = json!({"model": "policy", "prompt": "Hello", "max_tokens": 24,
                      "temperature": 1.0, "ignore_eos": true})
    .to_string();
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || http(&addr, "POST", "/v1/completions", &body, None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let reload = json!({"model_path": qwen2(), "weight_version": "7"}).to_string();
    let (code, answer) = http(&addr, "POST", "/update_weights_from_disk", &reload, None);
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["weight_version"], "7");
    let mut versions = Vec::new();
    for c in clients {
        let (code, body) = c.join().unwrap();
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["choices"][0]["text"].as_str().is_some());
        versions.push(v["weight_version"].as_str().unwrap().to_string());
    }
    assert!(
        versions.iter().all(|v| v == "0" || v == "7"),
        "{versions:?}"
    );
    let (_, after) = http(&addr, "POST", "/v1/completions", &body, None);
    assert_eq!(
        serde_json::from_str::<Value>(&after).unwrap()["weight_version"],
        "7"
    );
    let bad = json!({"model_path": "/nonexistent/weights"}).to_string();
    let (code, answer) = http(&addr, "POST", "/update_weights_from_disk", &bad, None);
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("model_path"), "{answer}");
    let (_, v) = http(&addr, "GET", "/weight_version", "", None);
    assert!(v.contains("\"7\""), "{v}");
    let m = s.metrics();
    assert_eq!(
        counter(&m, "gradus_serve_weight_reloads_total", "\"ok\""),
        1.0,
        "{m}"
    );
    assert_eq!(
        counter(&m, "gradus_serve_weight_reloads_total", "failed"),
        1.0
    );
}

/// Issue 14: invalid requests get a 400 naming the field (and never reach
/// the compute thread), a full queue a 429 with Retry-After.
#[test]
fn invalid_requests_are_named_and_a_full_queue_answers_429() {
    let s = Serve::start(
        &qwen2(),
        "127.0.0.1:0",
        &["--max-queue", "2", "--max-batch", "1"],
        &[],
    );
    for (body, field) in [
        (r#"{"model":"x","prompt":"a","max_tokens":1}"#, "model"),
        (r#"{"prompt":"a"}"#, "max_tokens"),
        (r#"{"prompt":"a","max_tokens":-3}"#, "max_tokens"),
        (r#"{"prompt":"a","max_tokens":1000}"#, "prompt"),
        (r#"{"prompt":[999999],"max_tokens":1}"#, "prompt"),
        (
            r#"{"prompt":"a","max_tokens":1,"temperature":"hot"}"#,
            "temperature",
        ),
    ] {
        let (code, answer) = http(&s.addr, "POST", "/v1/completions", body, None);
        assert_eq!(code, 400, "{body}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["error"]["param"], field, "{body}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (code, _) = http(&s.addr, "POST", "/v1/completions", "{not json", None);
    assert_eq!(code, 400);
    // Two long requests fill the queue (one decodes, one waits: one
    // sequence per batch); once /metrics counts both, the next is turned away.
    let long = json!({"prompt": "a", "max_tokens": 250, "n": 32, "ignore_eos": true}).to_string();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (addr, long) = (s.addr.clone(), long.clone());
            std::thread::spawn(move || http(&addr, "POST", "/v1/completions", &long, None))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&s.metrics(), "gradus_serve_outstanding_requests", "") < 2.0 {
        assert!(Instant::now() < deadline, "the two requests never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut st = std::net::TcpStream::connect(&s.addr).unwrap();
    let body = r#"{"prompt":"b","max_tokens":1}"#;
    write!(
        st,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    st.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 429"), "not turned away: {out}");
    assert!(out.to_ascii_lowercase().contains("retry-after: 1"), "{out}");
    for h in holders {
        assert_eq!(h.join().unwrap().0, 200);
    }
}

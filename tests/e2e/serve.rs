//! End-to-end tests of `gradus sandbox serve`: real server processes on
//! loopback, a training run whose code stage runs on two of them (one killed
//! with SIGKILL mid-stage and restarted), and SandboxFusion's `/run_code`
//! from a Python client using `requests`, as verl's does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::train::{http_get_with_key, read_jsonl, untimed};
use crate::util::{gradus, repo_root};

/// A running `gradus sandbox serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts one on `listen` and waits for its `listening on` line.
    fn start(listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = gradus();
        cmd.args(["sandbox", "serve", "--listen", listen])
            .args(extra)
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, addr) = crate::util::spawn_listening(&mut cmd);
        Server { child, addr }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `/metrics`, with the key the servers of these tests are started with.
    fn metrics(&self, key: &str) -> String {
        http_get_with_key(&self.addr, "/metrics", Some(key))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn jobs_run(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gradus_sandbox_service_jobs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a rollout row says about its program, keyed by its place in the log.
fn verdicts(dir: &Path) -> Vec<Value> {
    untimed(&dir.join("rollouts.jsonl"))
}

fn tiny(dir: &Path, sandbox: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/train/tiny.toml")).unwrap();
    let text = text.replace("steps = 200", "steps = 100").replace(
        "[sandbox]\nworkers = 2\n",
        &format!("[sandbox]\nworkers = 2\n{sandbox}\n"),
    );
    assert!(text.contains(sandbox));
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, run: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = gradus();
    cmd.args(["train", "--config"])
        .arg(config)
        .arg("--run-dir")
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Issue 15: the code stage's jobs go to two `gradus sandbox serve`
/// processes; one is SIGKILLed while the stage runs and restarted on its
/// port. The run finishes with the same rollouts (verdicts included) as a
/// local-sandbox run with the same seed, nothing learned twice, and the
/// restarted host was probed back in and took jobs again.
#[test]
fn a_code_stage_on_two_services_survives_one_killed_and_matches_a_local_run() {
    let tmp = tempfile::tempdir().unwrap();
    let key = [("GRADUS_TEST_SANDBOX_KEY", "k-e2e-0123456789")];
    let args = ["--workers", "1", "--api-key-env", "GRADUS_TEST_SANDBOX_KEY"];
    let a = Server::start("127.0.0.1:0", &args, &key);
    let mut b = Server::start("127.0.0.1:0", &args, &key);
    let remote = tiny(
        tmp.path(),
        &format!(
            "endpoints = [\"http://{}\", \"http://{}\"]\napi_key_env = \"GRADUS_TEST_SANDBOX_KEY\"",
            a.addr, b.addr
        ),
    );
    let run = tmp.path().join("remote");
    let child = train(&remote, &run, &key);
    // Kill b once code rollouts appear (the stage is running).
    // Kill b once the code stage has logged rollouts (its jobs are in flight).
    let code_step = || {
        read_jsonl(&run.join("events.jsonl"))
            .iter()
            .find(|e| e["event"] == "stage_advanced" && e["to"] == "code")
            .and_then(|e| e["step"].as_u64())
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the code stage never ran");
        if let Some(at) = code_step()
            && read_jsonl(&run.join("rollouts.jsonl"))
                .iter()
                .any(|r| r["bucket"] == "lin" && r["step"].as_u64() >= Some(at))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran_before_kill = jobs_run(&b.metrics(key[0].1));
    b.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let b2 = Server::start(&b.addr, &args, &key);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(ran_before_kill > 0.0, "b ran no job before it was killed");
    assert!(jobs_run(&a.metrics(key[0].1)) > 0.0, "a ran no job");
    assert!(
        stderr.contains(&format!("sandbox host {} is out", b.addr)),
        "the kill was not noticed: {stderr}"
    );
    assert!(
        jobs_run(&b2.metrics(key[0].1)) > 0.0,
        "the restarted host was not probed back in: {stderr}"
    );

    std::fs::create_dir_all(tmp.path().join("l")).unwrap();
    let local_cfg = tiny(&tmp.path().join("l"), "");
    let local = tmp.path().join("local");
    let out = train(&local_cfg, &local, &[]).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (r, l) = (verdicts(&run), verdicts(&local));
    assert!(r.iter().any(|x| x["bucket"] == "lin"));
    assert_eq!(r.len(), l.len(), "rollouts: remote vs local");
    for (i, (x, y)) in r.iter().zip(&l).enumerate() {
        assert_eq!(x, y, "rollout {i}: remote vs local");
    }
    crate::train::assert_run_ledger_clean(&run);
}

/// Issue 15: SandboxFusion's documented `/run_code` examples, sent by a
/// Python client with `requests` as verl sends them, checked field by field
/// (tests/fixtures/sandbox/fusion_client.py); with auth.
#[test]
fn run_code_answers_a_requests_client_as_sandboxfusion_does() {
    let py = crate::util::python_with("requests", "verl's client library");
    let key = [("GRADUS_TEST_FUSION_KEY", "fusion-key-42")];
    let server = Server::start(
        "127.0.0.1:0",
        &["--workers", "2", "--api-key-env", "GRADUS_TEST_FUSION_KEY"],
        &key,
    );
    let out = Command::new(py)
        .arg(repo_root().join("tests/fixtures/sandbox/fusion_client.py"))
        .arg(format!("http://{}", server.addr))
        .arg("fusion-key-42")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all /run_code checks passed"), "{text}");
}

/// Without a key the server will not listen beyond loopback, and says why.
#[test]
fn serve_refuses_a_public_address_without_a_key() {
    let out = gradus()
        .args(["sandbox", "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-key-env"), "{err}");
}

/// Issue 15: a program the sandbox cannot judge is never scored against the
/// policy. The run's only sandbox host is down for the whole run (nothing
/// listens on its port): past `give_up_s` every code job ends as
/// `sandbox_error` (after its one redo). Those rollouts say so; their groups
/// are not learned (`groups_unscorable`) and never enter the code bucket's
/// pass-rate window, while the math groups are learned as usual.
#[test]
fn jobs_no_host_can_judge_are_never_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tiny(
        tmp.path(),
        &format!("endpoints = [\"http://127.0.0.1:{port}\"]\ngive_up_s = 0.2"),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("steps = 100", "steps = 3");
    std::fs::write(&config, text).unwrap();
    let run = tmp.path().join("run");
    let out = train(&config, &run, &[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rollouts = read_jsonl(&run.join("rollouts.jsonl"));
    let code: Vec<&Value> = rollouts.iter().filter(|r| r["bucket"] == "lin").collect();
    assert!(!code.is_empty());
    for r in &code {
        assert_eq!(r["verdict"], "sandbox_error", "{r}");
        assert_eq!(r["reward"], 0.0);
    }
    let metrics = read_jsonl(&run.join("metrics.jsonl"));
    let unscorable: u64 = metrics
        .iter()
        .filter_map(|m| m["groups_unscorable"].as_u64())
        .sum();
    assert!(unscorable > 0, "no group was set aside");
    let last = metrics.last().unwrap();
    assert!(
        last["pass_rates"]["code/lin"]["n"].as_u64().unwrap_or(0) == 0,
        "unjudged programs entered the pass rates: {}",
        last["pass_rates"]
    );
    assert!(last["pass_rates"]["math/add1"]["n"].as_u64() > Some(0));
    let learned: u64 = metrics
        .iter()
        .filter_map(|m| m["groups_kept"].as_u64())
        .sum();
    assert!(learned > 0, "the math groups were learned");
    crate::train::assert_run_ledger_clean(&run);
}

/// SIGTERM drains a real `serve` process: the running job finishes and is
/// answered, a new one is refused with 503, and it exits 0.
#[test]
fn sigterm_drains_a_serve_process() {
    let mut server = Server::start("127.0.0.1:0", &["--workers", "1"], &[]);
    let addr = server.addr.clone();
    let post = |addr: String, body: String| {
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    };
    let slow = serde_json::json!({"id": "slow", "source": "import time\ntime.sleep(1.5)\nprint(7)",
        "tests": {"kind": "stdio", "cases": [{"input": "", "output": "7"}]}});
    let running = post(addr.clone(), slow.to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get_with_key(&addr, "/health", None).contains("\"admitted\":1") {
        assert!(Instant::now() < deadline, "the slow job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let late = post(addr.clone(), slow.to_string().replace("slow", "late"))
        .join()
        .unwrap();
    assert!(late.starts_with("HTTP/1.1 503"), "{late}");
    let answer = running.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"verdict\":\"accepted\""), "{answer}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The environment a process was started with (`/proc/PID/environ`).
fn start_env(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Every gradus process runs with its glibc malloc tunables (huge pages, kept
/// blocks): the binary executes itself once with them in `GLIBC_TUNABLES`; a
/// user's own malloc tunables are left as they are.
#[test]
fn gradus_runs_with_its_malloc_tunables_unless_the_user_sets_them() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        eprintln!("skipped: glibc malloc tunables exist only on Linux with glibc");
        return;
    }
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc.")) {
        eprintln!("skipped: this test's own environment sets glibc malloc tunables");
        return;
    }
    let mut ours = Server::start("127.0.0.1:0", &[], &[]);
    let env = start_env(ours.child.id());
    // glibc cuts the variable at each `:` in place as it parses it, so the start
    // environment holds the first tunable under the name and the rest after it.
    let at = env
        .iter()
        .position(|v| v.starts_with("GLIBC_TUNABLES="))
        .unwrap_or_else(|| panic!("no GLIBC_TUNABLES: {env:?}"));
    let seen = env[at..].join(":");
    for t in ["glibc.malloc.hugetlb=1", "glibc.malloc.top_pad=67108864"] {
        assert!(seen.contains(t), "{t} not in {seen}");
    }
    assert!(
        env.iter().any(|v| v == "GRADUS_GLIBC_TUNABLES_BEFORE="),
        "the re-exec keeps what was there before: {env:?}"
    );
    // It still serves after the exec.
    assert!(http_get_with_key(&ours.addr, "/health", None).starts_with("HTTP/1.1 200"));
    ours.kill9();

    let mut theirs = Server::start(
        "127.0.0.1:0",
        &[],
        &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")],
    );
    let env = start_env(theirs.child.id());
    assert!(
        env.iter()
            .any(|v| v == "GLIBC_TUNABLES=glibc.malloc.arena_max=2"),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|v| v.starts_with("GRADUS_GLIBC_TUNABLES_BEFORE="))
    );
    theirs.kill9();
}

//! The sandbox service over real HTTP on loopback: `/v1/jobs` (one job, a
//! batch, JSONL; idempotent by id), SandboxFusion's `/run_code`, auth, the
//! body limit, the bounded queue's 429, drain; and the fleet's failover.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gradus_sandbox::service::{
    Endpoint, Fleet, FleetConfig, HostEvent, Service, ServiceConfig, server,
};
use gradus_sandbox::{Outcome, Verdict};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(f: impl FnOnce(&mut ServiceConfig)) -> (SocketAddr, Arc<Service>) {
    let mut cfg = ServiceConfig::for_workers(2);
    f(&mut cfg);
    let service = Service::new(sandbox().clone(), cfg);
    let (addr, _task) = server::bind(service.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (addr, service)
}

/// A reply: status, headers (lower-cased names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status: status.parse().unwrap(),
        headers,
        body: body.to_string(),
    }
}

fn job(id: &str, source: &str, input: &str, output: &str) -> Value {
    json!({"id": id, "source": source,
           "tests": {"kind": "stdio", "cases": [{"input": input, "output": output}]}})
}

/// Posts a job `id` that prints 1 and expects 1.
async fn post_job(addr: SocketAddr, id: &str) -> Reply {
    let body = job(id, "print(1)", "", "1").to_string();
    http(addr, "POST", "/v1/jobs", None, &body).await
}

/// Waits (5 s at most) until `/health` counts `n` jobs admitted.
async fn until_admitted(addr: SocketAddr, n: u64) {
    let t0 = Instant::now();
    while http(addr, "GET", "/health", None, "").await.json()["admitted"] != n {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "never {n} jobs admitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of one sample of a metric in Prometheus text.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_one_a_batch_and_jsonl_each_in_order() {
    let (addr, _) = start(|_| {}).await;
    let r = http(
        addr,
        "POST",
        "/v1/jobs",
        None,
        &job("one", "print(int(input())*2)", "21", "42").to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out: Outcome = serde_json::from_str(&r.body).unwrap();
    assert_eq!((out.id.as_str(), out.verdict), ("one", Verdict::Accepted));

    // A batch with a malformed row in the middle: that row is an invalid
    // job naming its place, the others run, in order.
    let batch = json!([
        job("b1", "print(1)", "", "1"),
        {"id": "b2", "source": "print(1)"},
        job("b3", "print(2)", "", "3"),
    ]);
    let r = http(addr, "POST", "/v1/jobs", None, &batch.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outs: Vec<Outcome> = serde_json::from_str(&r.body).unwrap();
    let got: Vec<(&str, Verdict)> = outs.iter().map(|o| (o.id.as_str(), o.verdict)).collect();
    assert_eq!(
        got,
        [
            ("b1", Verdict::Accepted),
            ("row 2", Verdict::InvalidJob),
            ("b3", Verdict::WrongAnswer)
        ]
    );
    assert!(outs[1].detail.as_deref().unwrap().contains("row 2"));

    // JSONL in, JSONL out.
    let lines = format!(
        "{}\n{}\n",
        job("l1", "print(input())", "x", "x"),
        job("l2", "raise SystemExit(3)", "", "")
    );
    let r = http(addr, "POST", "/v1/jobs", None, &lines).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let outs: Vec<Outcome> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outs[0].verdict, Verdict::Accepted);
    assert_eq!(outs[1].verdict, Verdict::RuntimeError);

    // Bad requests are named.
    let r = http(addr, "POST", "/v1/jobs", None, "{not json").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not JSON"), "{}", r.body);
    let r = http(addr, "GET", "/v1/jobs", None, "").await;
    assert_eq!(r.status, 405);
    let r = http(addr, "GET", "/nope", None, "").await;
    assert_eq!(r.status, 404);
}

/// A retried job id returns the first result and never runs twice: neither
/// after it finished nor while it still runs; the same id for another job
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_id_runs_once_however_often_it_is_sent() {
    let (addr, _) = start(|_| {}).await;
    // A program whose output differs each run: a second run would show.
    let src = "import time, random\ntime.sleep(0.3)\nprint(random.random())";
    let body = job("once", src, "", "").to_string();
    let (a, b) = tokio::join!(
        http(addr, "POST", "/v1/jobs", None, &body),
        http(addr, "POST", "/v1/jobs", None, &body)
    );
    let c = http(addr, "POST", "/v1/jobs", None, &body).await;
    let got = |r: &Reply| {
        let o: Outcome = serde_json::from_str(&r.body).unwrap();
        o.cases[0]
            .got
            .clone()
            .expect("a wrong answer shows its output")
    };
    assert_eq!(got(&a), got(&b));
    assert_eq!(got(&a), got(&c));
    let m = http(addr, "GET", "/metrics", None, "").await.body;
    assert_eq!(
        metric(
            &m,
            "gradus_sandbox_service_jobs_total{verdict=\"wrong_answer\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "gradus_sandbox_service_idempotent_total{from=\"running\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "gradus_sandbox_service_idempotent_total{from=\"stored\"}"
        ),
        1.0
    );
    let other = job("once", "print(1)", "", "1").to_string();
    let r = http(addr, "POST", "/v1/jobs", None, &other).await;
    let o: Outcome = serde_json::from_str(&r.body).unwrap();
    assert_eq!(o.verdict, Verdict::InvalidJob);
    assert!(
        o.detail
            .unwrap()
            .contains("already used for a different job")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_no_key_a_wrong_key_and_the_right_key() {
    let (addr, _) = start(|c| c.api_key = Some("s3cret-key".into())).await;
    let body = job("auth", "print(1)", "", "1").to_string();
    for (key, want) in [
        (None, 401),
        (Some("wrong-key!"), 401),
        (Some("s3cret"), 401),
    ] {
        let r = http(addr, "POST", "/v1/jobs", key, &body).await;
        assert_eq!(r.status, want, "key {key:?}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(http(addr, "GET", "/metrics", key, "").await.status, 401);
    }
    let r = http(addr, "POST", "/v1/jobs", Some("s3cret-key"), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        http(addr, "GET", "/metrics", Some("s3cret-key"), "")
            .await
            .status,
        200
    );
    // Health stays open, for load balancers and the fleet's probes.
    let h = http(addr, "GET", "/health", None, "").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["workers"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after_and_big_bodies_413() {
    let (addr, _) = start(|c| {
        c.queue_limit = 1;
        c.max_request_bytes = 4096;
    })
    .await;
    let slow = job("slow", "import time\ntime.sleep(1.0)\nprint(1)", "", "1").to_string();
    let first = tokio::spawn(async move { http(addr, "POST", "/v1/jobs", None, &slow).await });
    until_admitted(addr, 1).await;
    let r = post_job(addr, "next").await;
    assert_eq!(r.status, 429, "{}", r.body);
    let after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(after >= 1);
    let r = http(addr, "POST", "/run_code", None, r#"{"code": "print(1)"}"#).await;
    assert_eq!(r.status, 429);
    // A batch that can never fit is told so, not told to retry.
    let two = json!([
        job("x1", "print(1)", "", "1"),
        job("x2", "print(1)", "", "1")
    ]);
    let r = http(addr, "POST", "/v1/jobs", None, &two.to_string()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("split it"));
    let big = job("big", &format!("print({:?})", "x".repeat(5000)), "", "").to_string();
    let r = http(addr, "POST", "/v1/jobs", None, &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("4096 bytes"));
    assert_eq!(first.await.unwrap().status, 200);
    // Room again once the slow job is done.
    let r = post_job(addr, "next").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_running_jobs_and_refuses_new_ones() {
    let (addr, service) = start(|_| {}).await;
    let slow = job(
        "draining",
        "import time\ntime.sleep(0.8)\nprint(1)",
        "",
        "1",
    )
    .to_string();
    let running = tokio::spawn(async move { http(addr, "POST", "/v1/jobs", None, &slow).await });
    until_admitted(addr, 1).await;
    let svc = service.clone();
    let drained = tokio::spawn(async move { svc.drain(Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = post_job(addr, "late").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(http(addr, "GET", "/health", None, "").await.status, 503);
    assert_eq!(drained.await.unwrap(), 0, "drain waits for the running job");
    let r = running.await.unwrap();
    let o: Outcome = serde_json::from_str(&r.body).unwrap();
    assert_eq!(o.verdict, Verdict::Accepted);
}

/// A client that hangs up mid-job loses its answer, not the server's room:
/// the job finishes and its admission is given back (for both endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_gives_its_room_back() {
    let (addr, _) = start(|c| c.queue_limit = 2).await;
    let slow = "import time\ntime.sleep(0.5)\nprint(1)";
    for (path, body) in [
        ("/run_code", json!({"code": slow}).to_string()),
        ("/v1/jobs", job("gone", slow, "", "1").to_string()),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        until_admitted(addr, 1).await;
        drop(s);
        until_admitted(addr, 0).await;
    }
    assert_eq!(post_job(addr, "after").await.status, 200);
}

/// `/run_code` answers as SandboxFusion documents it, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_code_answers_in_sandboxfusions_fields() {
    let (addr, _) = start(|_| {}).await;
    let call =
        |body: Value| async move { http(addr, "POST", "/run_code", None, &body.to_string()).await };
    // SandboxFusion's README example.
    let r = call(json!({"code": "print('Hello, world!')", "language": "python"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "Success");
    assert_eq!(v["message"], "");
    assert_eq!(v["compile_result"], Value::Null);
    assert_eq!(v["run_result"]["status"], "Finished");
    assert_eq!(v["run_result"]["return_code"], 0);
    assert_eq!(v["run_result"]["stdout"], "Hello, world!\n");
    assert_eq!(v["run_result"]["stderr"], "");
    assert!(v["run_result"]["execution_time"].as_f64().unwrap() > 0.0);
    assert_eq!(v["files"], json!({}));

    // verl's request: stdin, timeouts, empty files.
    let r = call(json!({"compile_timeout": 5, "run_timeout": 5, "code": "a,b=map(int,input().split())\nprint(a+b)",
                        "stdin": "2 3\n", "language": "python", "files": {}, "fetch_files": []}))
    .await;
    assert_eq!(r.json()["run_result"]["stdout"], "5\n");

    let r = call(json!({"code": "import sys\nprint('x', file=sys.stderr)\nsys.exit(3)"})).await;
    let v = r.json();
    assert_eq!(v["status"], "Failed");
    assert_eq!(v["run_result"]["status"], "Finished");
    assert_eq!(v["run_result"]["return_code"], 3);
    assert_eq!(v["run_result"]["stderr"], "x\n");

    let r = call(json!({"code": "while True: pass", "run_timeout": 1})).await;
    let v = r.json();
    assert_eq!(v["status"], "Failed");
    assert_eq!(v["run_result"]["status"], "TimeLimitExceeded");
    assert_eq!(v["run_result"]["return_code"], Value::Null);

    let r = call(json!({"code": "def f(:\n  pass"})).await;
    let v = r.json();
    assert_eq!(v["status"], "Failed");
    assert_eq!(v["compile_result"]["return_code"], 1);
    assert!(
        v["compile_result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{v}"
    );

    for (body, named) in [
        (json!({"code": "int main(){}", "language": "cpp"}), "`cpp`"),
        (
            json!({"code": "print(1)", "files": {"in.txt": "aGk="}}),
            "`files`",
        ),
        (
            json!({"code": "print(1)", "fetch_files": ["out.txt"]}),
            "`fetch_files`",
        ),
    ] {
        let r = call(body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let v = r.json();
        assert_eq!(v["status"], "SandboxError");
        assert!(v["message"].as_str().unwrap().contains(named), "{v}");
    }
}

/// A host that accepts and then fails every job is taken out, and its jobs
/// are re-sent to the healthy one: every outcome arrives once, with its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_takes_a_failing_host_out_and_resends_its_jobs() {
    let (good, _) = start(|_| {}).await;
    // A host whose /health and /metrics look fine but that hangs up on jobs.
    let bad = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad_addr = bad.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = bad.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if head.starts_with("GET /health") || head.starts_with("GET /metrics") {
                    let body = r#"{"status":"ok","workers":8}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                }
                // A job: hang up without an answer.
            });
        }
    });
    let fleet = Fleet::new(
        None,
        vec![
            Endpoint::parse(&format!("http://{bad_addr}")).unwrap(),
            Endpoint::parse(&format!("http://{good}")).unwrap(),
        ],
        FleetConfig {
            probe_every: Duration::from_secs(3600),
            ..FleetConfig::default()
        },
    );
    // Both hosts up first (the bad one offers the most room).
    let t0 = Instant::now();
    while fleet.remotes_up().0 < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "hosts never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let jobs: Vec<_> = (0..12)
        .map(|i| {
            serde_json::from_value(job(
                &format!("j{i}"),
                "print(int(input())+1)",
                &i.to_string(),
                &(i + 1).to_string(),
            ))
            .unwrap()
        })
        .collect();
    let outs = fleet.run_batch(jobs).await;
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(
            (o.id.clone(), o.verdict),
            (format!("j{i}"), Verdict::Accepted),
            "{o:?}"
        );
    }
    assert!(
        fleet.resent() >= 1,
        "the bad host got jobs and they were re-sent"
    );
    assert_eq!(fleet.remotes_up(), (1, 2));
    let events = fleet.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HostEvent::Down { host, .. } if *host == bad_addr.to_string())),
        "{events:?}"
    );
    let m = http(good, "GET", "/metrics", None, "").await.body;
    assert_eq!(
        metric(
            &m,
            "gradus_sandbox_service_jobs_total{verdict=\"accepted\"}"
        ),
        12.0,
        "each job ran once on the good host"
    );
}

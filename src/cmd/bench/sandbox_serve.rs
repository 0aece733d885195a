//! `gradus bench sandbox-serve`: the sandbox through HTTP against the local
//! pool, on the same jobs.
//!
//! A `gradus sandbox serve` child process with `--workers W` is sent a fixed
//! set of jobs by 64 concurrent clients (each its own kept-alive connection,
//! one job per `POST /v1/jobs`): HumanEval-style function jobs, stdio jobs and
//! a few hostile ones (fork bombs, memory hogs, infinite loops). The same
//! jobs then run on an in-process pool of W workers with 64 concurrent
//! callers. Printed per way: jobs/s, p50/p99 latency (from a job's send to its
//! outcome, queueing included: both ways queue the same 64 callers on W
//! workers), and for HTTP the jobs lost (no outcome) or duplicated (an id
//! answered twice, or the server counting more jobs run than were sent),
//! and the verdicts that differ from the local pool's.

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use super::percentile;
use gradus_sandbox::job::{Compare, Job, JobLimits, Language, StdioCase, Tests};
use gradus_sandbox::{Outcome, Sandbox, SandboxConfig, Verdict};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[derive(clap::Args)]
pub struct Args {
    /// Jobs per way.
    #[arg(short = 'n', long, default_value_t = 600)]
    jobs: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Sandbox workers (server and local pool alike); default: the cores.
    #[arg(long)]
    workers: Option<usize>,
    /// One hostile job in this many.
    #[arg(long, default_value_t = 25)]
    hostile_every: usize,
}

const HOSTILE: [(&str, &str); 3] = [
    (
        "fork bomb",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    ),
    (
        "memory hog",
        "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n",
    ),
    ("infinite loop", "while True:\n    pass\n"),
];

/// Whether job `i` of the mix is a hostile one.
fn is_hostile(i: usize, hostile_every: usize) -> bool {
    hostile_every > 0 && i % hostile_every == hostile_every - 1
}

/// Job `i` of the mix.
fn job(i: usize, hostile_every: usize) -> Job {
    let id = format!("bench-serve-{i}");
    let quick = JobLimits {
        cpu_s: Some(0.5),
        wall_s: Some(1.0),
        memory_mb: Some(128),
        ..JobLimits::default()
    };
    if is_hostile(i, hostile_every) {
        let (_, src) = HOSTILE[(i / hostile_every) % HOSTILE.len()];
        return Job {
            id,
            language: Language::Python,
            source: src.into(),
            tests: Tests::Stdio {
                cases: vec![StdioCase {
                    input: String::new(),
                    output: String::new(),
                }],
                compare: Compare::Exact,
            },
            limits: quick,
        };
    }
    let n = 10 + i % 50;
    if i.is_multiple_of(2) {
        // HumanEval-style: a function and a check over a few asserts.
        Job {
            id,
            language: Language::Python,
            source: "def tri(n):\n    return n * (n + 1) // 2\n".into(),
            tests: Tests::Function {
                entry_point: "tri".into(),
                test: format!(
                    "def check(f):\n    assert f({n}) == {}\n    assert f(0) == 0\n    assert f(1) == 1\n",
                    n * (n + 1) / 2
                ),
                prelude: String::new(),
            },
            limits: JobLimits::default(),
        }
    } else {
        let sum: usize = (0..n).map(|x| x * x).sum();
        Job {
            id,
            language: Language::Python,
            source: "n = int(input())\nprint(sum(x * x for x in range(n)))\n".into(),
            tests: Tests::Stdio {
                cases: vec![
                    StdioCase {
                        input: format!("{n}\n"),
                        output: format!("{sum}\n"),
                    },
                    StdioCase {
                        input: "3\n".into(),
                        output: "5\n".into(),
                    },
                ],
                compare: Compare::Exact,
            },
            limits: JobLimits::default(),
        }
    }
}

struct Way {
    seconds: f64,
    latencies_ms: Vec<f64>,
    outcomes: BTreeMap<String, Vec<Outcome>>,
    failed: usize,
}

impl Way {
    fn line(&self, name: &str, n: usize) -> serde_json::Value {
        let mut l = self.latencies_ms.clone();
        l.sort_by(f64::total_cmp);
        serde_json::json!({
            "way": name,
            "jobs": n,
            "seconds": self.seconds,
            "jobs_per_s": n as f64 / self.seconds,
            "p50_ms": percentile(&l, 0.5),
            "p99_ms": percentile(&l, 0.99),
        })
    }
}

/// Runs `jobs` with `clients` concurrent callers of `run`.
async fn drive<F, Fut>(jobs: &[Job], clients: usize, run: F) -> Way
where
    F: Fn(usize, Job) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>> + Send,
{
    let run = Arc::new(run);
    let queue = Arc::new(std::sync::Mutex::new(
        jobs.iter()
            .cloned()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (run, queue) = (run.clone(), queue.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let Some(job) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let t = Instant::now();
                    let r = run(c, job.clone()).await;
                    mine.push((job.id, t.elapsed().as_secs_f64() * 1000.0, r));
                }
                mine
            })
        })
        .collect();
    let mut way = Way {
        seconds: 0.0,
        latencies_ms: Vec::new(),
        outcomes: BTreeMap::new(),
        failed: 0,
    };
    for t in tasks {
        for (id, ms, r) in t.await.expect("a client task") {
            way.latencies_ms.push(ms);
            match r {
                Ok(o) => way.outcomes.entry(id).or_default().push(o),
                Err(e) => {
                    way.failed += 1;
                    eprintln!("  {id}: {e:#}");
                }
            }
        }
    }
    way.seconds = started.elapsed().as_secs_f64();
    way
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> anyhow::Result<Conn> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn post(conn: &mut Conn, addr: &str, job: &Job) -> anyhow::Result<Outcome> {
    conn.ready().await?;
    let req = hyper::Request::post("/v1/jobs")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(job)?)))?;
    let resp = conn.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == hyper::StatusCode::OK,
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.jobs >= 1 && a.clients >= 1,
        "-n and --clients must be at least 1"
    );
    let workers = a.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let jobs: Vec<Job> = (0..a.jobs).map(|i| job(i, a.hostile_every)).collect();
    let hostile = (0..a.jobs)
        .filter(|&i| is_hostile(i, a.hostile_every))
        .count();
    println!(
        "bench sandbox-serve: {} jobs ({hostile} hostile), {} clients, {workers} workers",
        a.jobs, a.clients
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // HTTP: a server process, as users run it.
    let workers_arg = workers.to_string();
    let queue_arg = (a.clients * 2).to_string();
    let (mut child, addr) = super::spawn_server(
        &[
            "sandbox",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            &workers_arg,
            "--queue",
            &queue_arg,
        ],
        Stdio::inherit(),
    )?;
    let http = rt.block_on(async {
        let conns: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..a.clients {
                v.push(tokio::sync::Mutex::new(connect(&addr).await?));
            }
            v
        };
        let conns = Arc::new(conns);
        let addr2 = addr.clone();
        anyhow::Ok(
            drive(&jobs, a.clients, move |c, job| {
                let (conns, addr) = (conns.clone(), addr2.clone());
                async move {
                    let mut conn = conns[c].lock().await;
                    post(&mut conn, &addr, &job).await
                }
            })
            .await,
        )
    })?;
    let metrics = rt.block_on(async {
        let mut c = connect(&addr).await?;
        c.ready().await?;
        let req = hyper::Request::get("/metrics")
            .header(hyper::header::HOST, &addr)
            .body(Full::new(Bytes::new()))?;
        let body = c.send_request(req).await?.into_body().collect().await?;
        anyhow::Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    })?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    // The local pool, in this process, the same callers.
    let sandbox = Sandbox::new(SandboxConfig {
        workers,
        ..SandboxConfig::default()
    })?;
    sandbox.warm_up()?;
    let local = rt.block_on(async {
        let sb = sandbox.clone();
        drive(&jobs, a.clients, move |_, job| {
            let sb = sb.clone();
            async move { Ok(sb.run(job).await) }
        })
        .await
    });

    let ran_on_server = metric_sum(&metrics, "gradus_sandbox_service_jobs_total{");
    let lost = jobs
        .iter()
        .filter(|j| !http.outcomes.contains_key(&j.id))
        .count();
    let duplicated = http.outcomes.values().filter(|v| v.len() > 1).count()
        + (ran_on_server as usize).saturating_sub(a.jobs);
    let mut differ = Vec::new();
    let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &jobs {
        let h = http.outcomes.get(&j.id).and_then(|v| v.first());
        let l = local.outcomes.get(&j.id).and_then(|v| v.first());
        if let Some(h) = h {
            *verdicts.entry(h.verdict.as_str()).or_default() += 1;
        }
        match (h, l) {
            (Some(h), Some(l)) if h.verdict == l.verdict => {}
            _ => differ.push(format!(
                "{}: http {:?} local {:?}",
                j.id,
                h.map(|o| o.verdict),
                l.map(|o| o.verdict)
            )),
        }
    }
    for d in differ.iter().take(10) {
        println!("verdicts differ: {d}");
    }
    let (hl, ll) = (http.line("http", a.jobs), local.line("local", a.jobs));
    println!("{hl}");
    println!("{ll}");
    let throughput =
        hl["jobs_per_s"].as_f64().unwrap_or(0.0) / ll["jobs_per_s"].as_f64().unwrap_or(1.0);
    let p99 = hl["p99_ms"].as_f64().unwrap_or(f64::NAN) / ll["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let sandbox_errors = verdicts
        .get(Verdict::SandboxError.as_str())
        .copied()
        .unwrap_or(0);
    let summary = serde_json::json!({
        "throughput_http_over_local": throughput,
        "p99_http_over_local": p99,
        "lost": lost + http.failed,
        "duplicated": duplicated,
        "server_jobs_run": ran_on_server,
        "verdicts_differ": differ.len(),
        "http_verdicts": verdicts,
        "sandbox_errors": sandbox_errors,
        "targets": {"throughput": ">= 0.9", "p99": "< 2.0", "lost": 0, "duplicated": 0},
    });
    println!("{summary}");
    let met = throughput >= 0.9 && p99 < 2.0 && lost + http.failed == 0 && duplicated == 0;
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

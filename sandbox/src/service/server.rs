//! The HTTP server of `gradus sandbox serve`: gradus's `/v1/jobs`,
//! SandboxFusion's `/run_code`, `/health` and `/metrics`, over one
//! [`Sandbox`] pool.
//!
//! - Admission is bounded: at most `queue_limit` jobs are admitted (running
//!   or waiting for a worker) at once; a request that would pass it is
//!   answered 429 with `Retry-After`, so a client backs off instead of the
//!   server queueing without end.
//! - `/v1/jobs` is idempotent by job id: a job id seen before returns the
//!   first result (and one still running is waited for, never run twice)
//!   while the result is stored (`store_entries`, `store_ttl`). A sandbox
//!   error is not stored: it is the sandbox's failure, and a retry runs again.
//! - With an API key every endpoint but `/health` needs
//!   `Authorization: Bearer KEY`.
//! - [`Service::drain`] (SIGTERM in `gradus sandbox serve`) refuses new work
//!   with 503 and returns once the admitted jobs are done.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::fusion;
use crate::Sandbox;
use crate::job::{Job, parse_value};
use crate::outcome::{Outcome, Verdict};

/// How the service admits and remembers work.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `Authorization: Bearer` key every endpoint but `/health` requires.
    pub api_key: Option<String>,
    /// Largest request body, bytes (413 past it).
    pub max_request_bytes: usize,
    /// Jobs admitted at once (running or waiting for a worker); 429 past it.
    pub queue_limit: usize,
    /// Results kept for idempotent retries, and for how long.
    pub store_entries: usize,
    pub store_ttl: Duration,
    /// Connections served at once; one past it is closed at accept.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
}

impl ServiceConfig {
    /// Defaults for a pool of `workers`: a queue of 16 jobs per worker.
    pub fn for_workers(workers: usize) -> Self {
        ServiceConfig {
            api_key: None,
            max_request_bytes: 16 << 20,
            queue_limit: workers.max(1) * 16,
            store_entries: 100_000,
            store_ttl: Duration::from_secs(3600),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

struct Metrics {
    registry: Registry,
    jobs: IntCounterVec,
    requests: IntCounterVec,
    replayed: IntCounterVec,
    queue_depth: IntGauge,
    busy: IntGauge,
    workers: IntGauge,
    job_seconds: Histogram,
}

impl Metrics {
    fn new(workers: usize) -> Self {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new("gradus_sandbox_service_jobs_total", "Jobs run, by verdict"),
            &["verdict"],
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new(
                "gradus_sandbox_service_requests_total",
                "HTTP requests, by endpoint and status code",
            ),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let replayed = IntCounterVec::new(
            Opts::new(
                "gradus_sandbox_service_idempotent_total",
                "Jobs answered from an earlier request with their id (stored or still running)",
            ),
            &["from"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "gradus_sandbox_service_queue_depth",
            "Admitted jobs waiting for a worker",
        )
        .expect("valid metric");
        let busy = IntGauge::new(
            "gradus_sandbox_service_busy_workers",
            "Workers running a job",
        )
        .expect("valid metric");
        let workers_g = IntGauge::new("gradus_sandbox_service_workers", "Workers in the pool")
            .expect("valid metric");
        workers_g.set(workers as i64);
        let job_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gradus_sandbox_service_job_seconds",
                "Wall time of a job in the sandbox",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("valid metric");
        for c in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(replayed.clone()),
            Box::new(queue_depth.clone()),
            Box::new(busy.clone()),
            Box::new(workers_g.clone()),
            Box::new(job_seconds.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            jobs,
            requests,
            replayed,
            queue_depth,
            busy,
            workers: workers_g,
            job_seconds,
        }
    }
}

enum Entry {
    Running {
        hash: u64,
        done: watch::Receiver<Option<Outcome>>,
    },
    Done {
        hash: u64,
        outcome: Outcome,
    },
}

#[derive(Default)]
struct Store {
    entries: HashMap<String, Entry>,
    /// Done entries, oldest first, for eviction.
    order: VecDeque<(String, Instant)>,
}

/// The service: shared by every connection.
pub struct Service {
    sandbox: Sandbox,
    cfg: ServiceConfig,
    admitted: AtomicUsize,
    store: Mutex<Store>,
    draining: AtomicBool,
    idle: tokio::sync::Notify,
    metrics: Metrics,
    /// Mean job seconds (exponentially weighted), microseconds: the
    /// `Retry-After` estimate.
    mean_job_us: AtomicUsize,
    /// Every connection served, so that a drain lets each answer its
    /// request in flight before the process goes.
    connections: Mutex<Option<hyper_util::server::graceful::GracefulShutdown>>,
}

/// A job's content hash: a retried id must carry the same job.
fn job_hash(job: &Job) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(job)
        .expect("a job serialises")
        .hash(&mut h);
    h.finish()
}

type Sender = watch::Sender<Option<Outcome>>;

/// What one job of a request comes to.
enum Slot {
    Ready(Outcome),
    Wait(watch::Receiver<Option<Outcome>>),
}

impl Service {
    pub fn new(sandbox: Sandbox, cfg: ServiceConfig) -> Arc<Self> {
        let workers = sandbox.config().workers;
        Arc::new(Service {
            sandbox,
            cfg,
            admitted: AtomicUsize::new(0),
            store: Mutex::default(),
            draining: AtomicBool::new(false),
            idle: tokio::sync::Notify::new(),
            metrics: Metrics::new(workers),
            mean_job_us: AtomicUsize::new(50_000),
            connections: Mutex::new(Some(hyper_util::server::graceful::GracefulShutdown::new())),
        })
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_connections));
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let this = self.clone();
            let header_timeout = self.cfg.header_read_timeout;
            let watcher = self
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|g| g.watcher());
            tokio::spawn(async move {
                let _slot = slot;
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = b.serve_connection(TokioIo::new(stream), svc);
                let _ = match watcher {
                    Some(w) => w.watch(conn).await,
                    None => conn.await,
                };
            });
        }
    }

    /// Refuses new work (503) from now on and returns when every admitted
    /// job has finished and its answer is sent (each connection finishes
    /// its request in flight, then closes), or after `limit`. Returns the
    /// jobs still running.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.admitted.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.admitted.load(Ordering::SeqCst);
            }
        }
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(g) = connections {
            let _ = tokio::time::timeout_at(deadline, g.shutdown()).await;
        }
        0
    }

    /// The `/health` body.
    pub fn health(&self) -> Value {
        let admitted = self.admitted.load(Ordering::SeqCst);
        let workers = self.sandbox.config().workers;
        serde_json::json!({
            "status": if self.draining.load(Ordering::SeqCst) { "draining" } else { "ok" },
            "workers": workers,
            "busy": self.sandbox.busy(),
            "admitted": admitted,
            "queue_limit": self.cfg.queue_limit,
            "free": self.cfg.queue_limit.saturating_sub(admitted),
        })
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let endpoint = match path.as_str() {
            "/v1/jobs" | "/run_code" | "/health" | "/metrics" => path.clone(),
            _ => "other".into(),
        };
        let resp = self.route(req, &path).await;
        self.metrics
            .requests
            .with_label_values(&[endpoint.as_str(), resp.status().as_str()])
            .inc();
        resp
    }

    fn authorised(&self, req: &Request<Incoming>) -> bool {
        let Some(key) = &self.cfg.api_key else {
            return true;
        };
        let got = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Constant time in the key's length: no early exit on a mismatch.
        got.len() == key.len()
            && got
                .bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
        if path == "/health" {
            let code = if self.draining.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            return json(code, &self.health());
        }
        if !self.authorised(&req) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key: send `Authorization: Bearer KEY`",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        match (req.method(), path) {
            (&Method::GET, "/metrics") => {
                self.refresh_gauges();
                let mut buf = Vec::new();
                let _ = TextEncoder::new().encode(&self.metrics.registry.gather(), &mut buf);
                Response::builder()
                    .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                    .body(Full::new(Bytes::from(buf)))
                    .expect("valid response")
            }
            (&Method::POST, "/v1/jobs") | (&Method::POST, "/run_code") => {
                if self.draining.load(Ordering::SeqCst) {
                    let mut r = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "draining: this server is shutting down and takes no new jobs",
                    );
                    r.headers_mut()
                        .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
                    return r;
                }
                let body = match self.read_body(req).await {
                    Ok(b) => b,
                    Err(r) => return *r,
                };
                if path == "/v1/jobs" {
                    self.jobs(&body).await
                } else {
                    self.run_code(&body).await
                }
            }
            (_, "/v1/jobs" | "/run_code") => error(StatusCode::METHOD_NOT_ALLOWED, "only POST"),
            (_, "/metrics") => error(StatusCode::METHOD_NOT_ALLOWED, "only GET"),
            _ => error(
                StatusCode::NOT_FOUND,
                "not found: POST /v1/jobs or /run_code, GET /health or /metrics",
            ),
        }
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Box<Response<Full<Bytes>>>> {
        let max = self.cfg.max_request_bytes;
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over the limit of {max} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(Box::new(too_large()));
        }
        match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(Box::new(too_large()))
            }
            Err(e) => Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            ))),
        }
    }

    fn refresh_gauges(&self) {
        let busy = self.sandbox.busy();
        let admitted = self.admitted.load(Ordering::SeqCst);
        self.metrics.busy.set(busy as i64);
        self.metrics
            .queue_depth
            .set(admitted.saturating_sub(busy) as i64);
        self.metrics
            .workers
            .set(self.sandbox.config().workers as i64);
    }

    /// 429 with a `Retry-After` of the time the queue ahead needs (at least 1 s).
    fn busy_response(&self, wanted: usize) -> Response<Full<Bytes>> {
        let admitted = self.admitted.load(Ordering::SeqCst);
        let workers = self.sandbox.config().workers.max(1);
        let mean = self.mean_job_us.load(Ordering::Relaxed) as f64 / 1e6;
        let secs = ((admitted as f64 / workers as f64) * mean).ceil().max(1.0) as u64;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "queue full: {admitted} of {} jobs admitted, {wanted} more asked; retry after {secs} s",
                self.cfg.queue_limit
            ),
        );
        r.headers_mut().insert(
            RETRY_AFTER,
            hyper::header::HeaderValue::from_str(&secs.to_string()).expect("digits"),
        );
        r
    }

    /// Admits `n` more jobs, or says no. Called with the store locked, so
    /// that a request's admission and its store entries are one step.
    fn admit(&self, n: usize) -> bool {
        let now = self.admitted.load(Ordering::SeqCst);
        if now + n > self.cfg.queue_limit {
            return false;
        }
        self.admitted.fetch_add(n, Ordering::SeqCst);
        true
    }

    fn finished(&self, out: &Outcome) {
        self.metrics
            .jobs
            .with_label_values(&[out.verdict.as_str()])
            .inc();
        let secs = out.wall_ms / 1000.0;
        self.metrics.job_seconds.observe(secs);
        let old = self.mean_job_us.load(Ordering::Relaxed) as f64;
        let new = 0.9 * old + 0.1 * secs * 1e6;
        self.mean_job_us.store(new as usize, Ordering::Relaxed);
        if self.admitted.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Starts `job` (already admitted) and returns what will carry its
    /// outcome; `store` (its content hash and sender) when its id is kept
    /// for retries.
    fn start(self: &Arc<Self>, job: Job, store: Option<(u64, Sender)>) -> Slot {
        let (hash, tx) = match store {
            Some((hash, tx)) => (Some(hash), tx),
            None => (None, watch::channel(None).0),
        };
        let rx = tx.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            let out = this.sandbox.run(job).await;
            this.finished(&out);
            if let Some(hash) = hash {
                this.store_result(id, hash, &out);
            }
            // The requests waiting for it may have gone: the result is stored.
            let _ = tx.send(Some(out));
        });
        Slot::Wait(rx)
    }

    fn store_result(&self, id: String, hash: u64, out: &Outcome) {
        let mut st = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if out.verdict == Verdict::SandboxError {
            st.entries.remove(&id);
            return;
        }
        st.entries.insert(
            id.clone(),
            Entry::Done {
                hash,
                outcome: out.clone(),
            },
        );
        let now = Instant::now();
        st.order.push_back((id, now));
        while let Some((old, at)) = st.order.front().cloned() {
            let over = st.order.len() > self.cfg.store_entries;
            if !over && now.duration_since(at) < self.cfg.store_ttl {
                break;
            }
            st.order.pop_front();
            if matches!(st.entries.get(&old), Some(Entry::Done { .. })) {
                st.entries.remove(&old);
            }
        }
    }

    /// Parses, admits and runs a request's jobs; `Err` is the response that
    /// refuses the request.
    fn submit(
        self: &Arc<Self>,
        rows: Vec<Result<Job, String>>,
    ) -> Result<Vec<Slot>, Box<Response<Full<Bytes>>>> {
        let mut st = self.store.lock().unwrap_or_else(|p| p.into_inner());
        // What each row comes to: an answer at hand or awaited (an invalid
        // row, an id seen before), or a new job to start.
        enum Plan {
            Have(Slot),
            New(Job, Option<(u64, Sender)>),
        }
        let mut plans = Vec::with_capacity(rows.len());
        let mut fresh = 0usize;
        // Ids new in this request: entered in the store once admitted.
        let mut seen: HashMap<String, (u64, watch::Receiver<Option<Outcome>>)> = HashMap::new();
        for (i, row) in rows.into_iter().enumerate() {
            let job = match row {
                Ok(j) => j,
                Err(why) => {
                    plans.push(Plan::Have(Slot::Ready(Outcome::failure(
                        &format!("row {}", i + 1),
                        Verdict::InvalidJob,
                        0,
                        format!("row {}: {why}", i + 1),
                    ))));
                    continue;
                }
            };
            if job.id.is_empty() {
                fresh += 1;
                plans.push(Plan::New(job, None));
                continue;
            }
            let hash = job_hash(&job);
            // The answer for an id seen before, if it names the same job.
            let known = |h: u64, slot: Slot, from: Option<&str>| {
                if h != hash {
                    return Plan::Have(Slot::Ready(Outcome::failure(
                        &job.id,
                        Verdict::InvalidJob,
                        job.tests.total(),
                        format!("job id `{}` was already used for a different job", job.id),
                    )));
                }
                if let Some(from) = from {
                    self.metrics.replayed.with_label_values(&[from]).inc();
                }
                Plan::Have(slot)
            };
            let plan = if let Some((h, rx)) = seen.get(&job.id) {
                known(*h, Slot::Wait(rx.clone()), None)
            } else {
                match st.entries.get(&job.id) {
                    Some(Entry::Done { hash: h, outcome }) => {
                        known(*h, Slot::Ready(outcome.clone()), Some("stored"))
                    }
                    Some(Entry::Running { hash: h, done }) => {
                        known(*h, Slot::Wait(done.clone()), Some("running"))
                    }
                    None => {
                        let (tx, rx) = watch::channel(None);
                        seen.insert(job.id.clone(), (hash, rx));
                        fresh += 1;
                        Plan::New(job, Some((hash, tx)))
                    }
                }
            };
            plans.push(plan);
        }
        if fresh > self.cfg.queue_limit {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "a batch of {fresh} new jobs can never fit the queue of {}: split it",
                    self.cfg.queue_limit
                ),
            )));
        }
        if fresh > 0 && !self.admit(fresh) {
            return Err(Box::new(self.busy_response(fresh)));
        }
        // Admitted: the new ids are running from here on.
        for (id, (hash, rx)) in seen {
            st.entries.insert(id, Entry::Running { hash, done: rx });
        }
        drop(st);
        Ok(plans
            .into_iter()
            .map(|p| match p {
                Plan::Have(s) => s,
                Plan::New(job, store) => self.start(job, store),
            })
            .collect())
    }

    async fn jobs(self: &Arc<Self>, body: &[u8]) -> Response<Full<Bytes>> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                // Not one JSON value: JSONL, one job per line.
                let text = match std::str::from_utf8(body) {
                    Ok(t) => t,
                    Err(_) => return error(StatusCode::BAD_REQUEST, &format!("not JSON: {e}")),
                };
                let rows: Vec<Result<Job, String>> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(crate::job::parse_line)
                    .collect();
                if rows.iter().all(Result::is_err) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("not JSON (nor JSONL of jobs): {e}"),
                    );
                }
                return match self.run_rows(rows).await {
                    Ok(outs) => {
                        let mut buf = Vec::new();
                        for o in outs {
                            serde_json::to_writer(&mut buf, &o).expect("an outcome serialises");
                            buf.push(b'\n');
                        }
                        Response::builder()
                            .header(CONTENT_TYPE, "application/x-ndjson")
                            .body(Full::new(Bytes::from(buf)))
                            .expect("valid response")
                    }
                    Err(r) => *r,
                };
            }
        };
        match value {
            Value::Array(items) => {
                let rows = items.into_iter().map(parse_value).collect();
                match self.run_rows(rows).await {
                    Ok(outs) => json(StatusCode::OK, &outs),
                    Err(r) => *r,
                }
            }
            Value::Object(_) => match parse_value(value) {
                Ok(job) => match self.run_rows(vec![Ok(job)]).await {
                    Ok(mut outs) => json(StatusCode::OK, &outs.remove(0)),
                    Err(r) => *r,
                },
                Err(why) => error(StatusCode::BAD_REQUEST, &why),
            },
            _ => error(
                StatusCode::BAD_REQUEST,
                "a request is one job (a JSON object), a JSON array of jobs, or JSONL",
            ),
        }
    }

    async fn run_rows(
        self: &Arc<Self>,
        rows: Vec<Result<Job, String>>,
    ) -> Result<Vec<Outcome>, Box<Response<Full<Bytes>>>> {
        let slots = self.submit(rows)?;
        let mut outs = Vec::with_capacity(slots.len());
        for s in slots {
            outs.push(match s {
                Slot::Ready(o) => o,
                Slot::Wait(mut rx) => match rx.wait_for(Option::is_some).await {
                    Ok(v) => v.clone().expect("waited for Some"),
                    Err(_) => Outcome::failure(
                        "",
                        Verdict::SandboxError,
                        0,
                        "the job's task ended without a result".into(),
                    ),
                },
            });
        }
        Ok(outs)
    }

    async fn run_code(self: &Arc<Self>, body: &[u8]) -> Response<Full<Bytes>> {
        let req: fusion::RunCodeRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &fusion::RunCodeResponse::sandbox_error(format!("bad /run_code request: {e}")),
                );
            }
        };
        let job = match fusion::to_job(req) {
            Ok(j) => j,
            Err(why) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &fusion::RunCodeResponse::sandbox_error(why),
                );
            }
        };
        if !self.admit(1) {
            return self.busy_response(1);
        }
        // In a task of its own: a client that hangs up drops this handler,
        // and the run must still finish and give its admission back.
        let this = self.clone();
        let run = tokio::spawn(async move {
            let r = this.sandbox.run_capturing(job).await;
            this.finished(&r.0);
            r
        });
        match run.await {
            Ok((out, procs)) => json(StatusCode::OK, &fusion::from_outcome(&out, &procs)),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &fusion::RunCodeResponse::sandbox_error(format!("the run's task failed: {e}")),
            ),
        }
    }
}

fn json<T: serde::Serialize>(code: StatusCode, body: &T) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("serialises"),
        )))
        .expect("valid response")
}

fn error(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(code, &serde_json::json!({ "error": message }))
}

/// Binds `addr` and serves `service` on it in a task; returns the bound
/// address (the real port when 0 was asked for) and the task.
pub async fn bind(
    service: Arc<Service>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(service.serve(listener))))
}

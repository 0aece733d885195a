//! The runtime's side: a [`Fleet`] of sandbox hosts (the local pool and/or
//! `gradus sandbox serve` services) that jobs are spread over by free
//! capacity.
//!
//! - Each service is asked its worker count (`/health`) and is sent at most
//!   twice that many jobs at once, one job per request on kept-alive
//!   connections; a job goes to the host with the most free room.
//! - A host that fails (connection refused or reset, a timeout, a 5xx) is
//!   taken out and the jobs it held are sent again elsewhere; a prober asks
//!   its `/health` every second and puts it back when it answers. Job ids
//!   are stable across re-sends, so a host that did finish the job answers
//!   the re-send from its store instead of running it again.
//! - A 429 leaves the host in, with no new job for its `Retry-After`.
//! - Only a `sandbox_error` outcome after every host is gone for longer than
//!   `give_up` is reported, never scored against the program by the caller.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::body::Bytes;

use super::http::Pool;
use crate::Sandbox;
use crate::job::Job;
use crate::outcome::{Outcome, Verdict};

/// A service's address: `http://HOST:PORT` (no TLS: put a TLS proxy in front
/// of a service on another network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `HOST:PORT`.
    pub authority: String,
}

impl Endpoint {
    /// `http://HOST:PORT`, or why not.
    pub fn parse(url: &str) -> Result<Self, String> {
        crate::config::parse_endpoint(url).map(|authority| Endpoint { authority })
    }
}

/// How a [`Fleet`] treats its hosts.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Bearer key for every service.
    pub api_key: Option<String>,
    /// Jobs in flight per service worker.
    pub per_worker: usize,
    /// A request with no answer after this much more than the job's own
    /// wall limit counts as the host failing.
    pub request_slack: Duration,
    /// With every host out for this long, a job is given up as a sandbox error.
    pub give_up: Duration,
    /// How often an out host is probed.
    pub probe_every: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            api_key: None,
            per_worker: 2,
            request_slack: Duration::from_secs(30),
            give_up: Duration::from_secs(600),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// What happened to a host, for the caller's logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// Taken out, with why; `resent` jobs it held went elsewhere.
    Down { host: String, why: String },
    /// Answered a probe and takes jobs again.
    Up { host: String },
}

struct Remote {
    endpoint: Endpoint,
    up: AtomicBool,
    /// Jobs it may hold at once (`workers × per_worker`, from `/health`).
    capacity: AtomicUsize,
    inflight: AtomicUsize,
    /// No new job before this (a 429's `Retry-After`).
    paused_until: Mutex<Option<Instant>>,
    pool: Pool,
    probing: AtomicBool,
}

struct Local {
    sandbox: Arc<Sandbox>,
    inflight: AtomicUsize,
}

enum Host {
    Local(Local),
    Remote(Remote),
}

struct Inner {
    hosts: Vec<Host>,
    /// Put before every job id sent to a service: the ids of one run never
    /// meet another client's ids in a shared service's store.
    prefix: String,
    cfg: FleetConfig,
    /// Rung when a host frees room or comes back.
    changed: tokio::sync::Notify,
    events: Mutex<Vec<HostEvent>>,
    resent: AtomicUsize,
}

/// The sandbox hosts a run sends code to.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

/// Why one attempt on a host did not give an outcome.
enum Failure {
    /// The host is unhealthy: take it out and send the job elsewhere.
    Host(String),
    /// The host is full (429): wait and send elsewhere.
    Busy(Duration),
}

impl Fleet {
    /// A fleet of `local` (the daemon's own pool, if any) and `endpoints`.
    /// Services start out untested: each is probed (and its capacity learned)
    /// before its first job.
    pub fn new(local: Option<Arc<Sandbox>>, endpoints: Vec<Endpoint>, cfg: FleetConfig) -> Self {
        let mut hosts: Vec<Host> = local
            .into_iter()
            .map(|sandbox| {
                Host::Local(Local {
                    sandbox,
                    inflight: AtomicUsize::new(0),
                })
            })
            .collect();
        hosts.extend(endpoints.into_iter().map(|endpoint| {
            Host::Remote(Remote {
                pool: Pool::new(&endpoint.authority, cfg.api_key.clone()),
                endpoint,
                up: AtomicBool::new(false),
                capacity: AtomicUsize::new(0),
                inflight: AtomicUsize::new(0),
                paused_until: Mutex::new(None),
                probing: AtomicBool::new(false),
            })
        }));
        let fleet = Fleet {
            inner: Arc::new(Inner {
                hosts,
                prefix: {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    format!("{:x}-{nanos:x}/", std::process::id())
                },
                cfg,
                changed: tokio::sync::Notify::new(),
                events: Mutex::default(),
                resent: AtomicUsize::new(0),
            }),
        };
        for i in 0..fleet.inner.hosts.len() {
            fleet.spawn_probe(i, false);
        }
        fleet
    }

    /// The local pool, if the fleet has one.
    pub fn local(&self) -> Option<&Arc<Sandbox>> {
        self.inner.hosts.iter().find_map(|h| match h {
            Host::Local(l) => Some(&l.sandbox),
            Host::Remote(_) => None,
        })
    }

    /// Services that take jobs now, of all services.
    pub fn remotes_up(&self) -> (usize, usize) {
        let remotes = self.inner.hosts.iter().filter_map(|h| match h {
            Host::Remote(r) => Some(r),
            Host::Local(_) => None,
        });
        let (mut up, mut all) = (0, 0);
        for r in remotes {
            all += 1;
            up += usize::from(r.up.load(Ordering::SeqCst));
        }
        (up, all)
    }

    /// Host events since the last call.
    pub fn take_events(&self) -> Vec<HostEvent> {
        std::mem::take(&mut *self.inner.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Jobs sent again after their host failed, so far.
    pub fn resent(&self) -> usize {
        self.inner.resent.load(Ordering::Relaxed)
    }

    /// Runs many jobs at once; outcomes in input order.
    pub async fn run_batch(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let this = self.clone();
        crate::run_each(jobs, move |j| {
            let this = this.clone();
            async move { this.run(j).await }
        })
        .await
    }

    /// Runs one job on the host with the most free room, re-sending it when
    /// a host fails under it.
    pub async fn run(&self, job: Job) -> Outcome {
        let mut all_down_since: Option<Instant> = None;
        let mut last_failure: Option<String> = None;
        loop {
            let notified = self.inner.changed.notified();
            match self.pick() {
                Some(i) => {
                    all_down_since = None;
                    match self.attempt(i, &job).await {
                        Ok(out) => return out,
                        Err(Failure::Host(why)) => {
                            self.inner.resent.fetch_add(1, Ordering::Relaxed);
                            last_failure = Some(why.clone());
                            self.take_out(i, why);
                        }
                        Err(Failure::Busy(wait)) => {
                            if let Host::Remote(r) = &self.inner.hosts[i] {
                                *r.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(Instant::now() + wait);
                            }
                        }
                    }
                }
                None => {
                    let since = *all_down_since.get_or_insert_with(Instant::now);
                    if !self.any_up() && since.elapsed() > self.inner.cfg.give_up {
                        return Outcome::failure(
                            &job.id,
                            Verdict::SandboxError,
                            job.tests.total(),
                            format!(
                                "no sandbox host took the job for {:?}: {}",
                                self.inner.cfg.give_up,
                                last_failure.as_deref().unwrap_or("every host is down")
                            ),
                        );
                    }
                    // Room frees up, a host comes back, or a pause ends.
                    let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                }
            }
        }
    }

    fn any_up(&self) -> bool {
        self.inner.hosts.iter().any(|h| match h {
            Host::Local(_) => true,
            Host::Remote(r) => r.up.load(Ordering::SeqCst),
        })
    }

    /// The host with the most free room, reserving one place on it.
    fn pick(&self) -> Option<usize> {
        let now = Instant::now();
        let mut best: Option<(usize, usize)> = None;
        for (i, h) in self.inner.hosts.iter().enumerate() {
            let free = match h {
                Host::Local(l) => {
                    // The local pool queues its own; its room is a window of
                    // the same size as a service's.
                    let cap = l.sandbox.config().workers * self.inner.cfg.per_worker;
                    cap.saturating_sub(l.inflight.load(Ordering::SeqCst))
                }
                Host::Remote(r) => {
                    let paused = r
                        .paused_until
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some_and(|t| t > now);
                    if !r.up.load(Ordering::SeqCst) || paused {
                        continue;
                    }
                    r.capacity
                        .load(Ordering::SeqCst)
                        .saturating_sub(r.inflight.load(Ordering::SeqCst))
                }
            };
            if free > 0 && best.is_none_or(|(_, f)| free > f) {
                best = Some((i, free));
            }
        }
        let (i, _) = best?;
        match &self.inner.hosts[i] {
            Host::Local(l) => l.inflight.fetch_add(1, Ordering::SeqCst),
            Host::Remote(r) => r.inflight.fetch_add(1, Ordering::SeqCst),
        };
        Some(i)
    }

    async fn attempt(&self, i: usize, job: &Job) -> Result<Outcome, Failure> {
        let result = match &self.inner.hosts[i] {
            Host::Local(l) => Ok(l.sandbox.run(job.clone()).await),
            Host::Remote(r) => self.send(r, job).await,
        };
        match &self.inner.hosts[i] {
            Host::Local(l) => l.inflight.fetch_sub(1, Ordering::SeqCst),
            Host::Remote(r) => r.inflight.fetch_sub(1, Ordering::SeqCst),
        };
        self.inner.changed.notify_waiters();
        result
    }

    async fn send(&self, r: &Remote, job: &Job) -> Result<Outcome, Failure> {
        let mut sent = job.clone();
        if !sent.id.is_empty() {
            sent.id = format!("{}{}", self.inner.prefix, job.id);
        }
        let body = Bytes::from(serde_json::to_vec(&sent).expect("a job serialises"));
        let lim = &job.limits;
        let own = lim
            .job_wall_s
            .unwrap_or(lim.wall_s.unwrap_or(10.0) * job.tests.total().max(1) as f64 + 5.0);
        let timeout = Duration::from_secs_f64(own.min(3600.0)) + self.inner.cfg.request_slack;
        let (status, headers, bytes) = r
            .pool
            .call("POST", "/v1/jobs", body, timeout)
            .await
            .map_err(Failure::Host)?;
        match status {
            StatusCode::OK => match serde_json::from_slice::<Outcome>(&bytes) {
                Ok(mut out) => {
                    out.id = job.id.clone();
                    Ok(out)
                }
                Err(e) => Err(Failure::Host(format!(
                    "{}: an answer that is not an outcome: {e}",
                    r.endpoint.authority
                ))),
            },
            StatusCode::TOO_MANY_REQUESTS => {
                let secs = super::http::retry_after(&headers).unwrap_or(1.0);
                Err(Failure::Busy(Duration::from_secs_f64(
                    secs.clamp(1.0, 60.0),
                )))
            }
            StatusCode::UNAUTHORIZED => Err(Failure::Host(format!(
                "{}: refused the API key (401)",
                r.endpoint.authority
            ))),
            s if s.is_client_error() => {
                // The service refused the job itself: that is the job's fault.
                Ok(Outcome::failure(
                    &job.id,
                    Verdict::InvalidJob,
                    job.tests.total(),
                    format!(
                        "{} refused the job ({s}): {}",
                        r.endpoint.authority,
                        String::from_utf8_lossy(&bytes)
                    ),
                ))
            }
            s => Err(Failure::Host(format!(
                "{}: {s}: {}",
                r.endpoint.authority,
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    fn event(&self, e: HostEvent) {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    fn take_out(&self, i: usize, why: String) {
        if let Host::Remote(r) = &self.inner.hosts[i]
            && r.up.swap(false, Ordering::SeqCst)
        {
            r.pool.clear();
            self.event(HostEvent::Down {
                host: r.endpoint.authority.clone(),
                why,
            });
            self.spawn_probe(i, true);
        }
    }

    /// Probes host `i` until it answers `/health`, then puts it in; after a
    /// failure (`wait_first`) not before one probe interval has passed, so a
    /// host that answers probes but fails jobs is not put back at once.
    fn spawn_probe(&self, i: usize, wait_first: bool) {
        let Host::Remote(r) = &self.inner.hosts[i] else {
            return;
        };
        if r.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let Host::Remote(r) = &this.inner.hosts[i] else {
                return;
            };
            if wait_first {
                tokio::time::sleep(this.inner.cfg.probe_every).await;
            }
            loop {
                match this.probe(r).await {
                    Ok(workers) => {
                        r.capacity
                            .store(workers * this.inner.cfg.per_worker, Ordering::SeqCst);
                        r.up.store(true, Ordering::SeqCst);
                        r.probing.store(false, Ordering::SeqCst);
                        this.event(HostEvent::Up {
                            host: r.endpoint.authority.clone(),
                        });
                        this.inner.changed.notify_waiters();
                        return;
                    }
                    Err(_) => tokio::time::sleep(this.inner.cfg.probe_every).await,
                }
            }
        });
    }

    /// Asks `/health`; the worker count of a healthy host.
    async fn probe(&self, r: &Remote) -> Result<usize, String> {
        let (status, _, body) = r
            .pool
            .call("GET", "/health", Bytes::new(), Duration::from_secs(5))
            .await?;
        if status != StatusCode::OK {
            return Err(format!(
                "{}: /health answered {status}",
                r.endpoint.authority
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{}: /health: {e}", r.endpoint.authority))?;
        let workers = v["workers"].as_u64().unwrap_or(0) as usize;
        if workers == 0 {
            return Err(format!(
                "{}: /health reports no workers",
                r.endpoint.authority
            ));
        }
        // The key is checked here too, so a wrong key is found before a job.
        let (status, _, _) = r
            .pool
            .call("GET", "/metrics", Bytes::new(), Duration::from_secs(5))
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(format!("{}: refused the API key", r.endpoint.authority));
        }
        Ok(workers)
    }
}

//! The `openai` generator backend: rollouts sampled by OpenAI-compatible
//! inference servers (`gradus serve`, vLLM, SGLang) instead of the local
//! compute thread, and new weights pushed to them after each update.
//!
//! Wire format (vLLM's extensions of `/v1/completions`, which `gradus serve`
//! speaks too): one request per response, the prompt as token ids,
//! `logprobs: 0` with `return_tokens_as_token_ids` (each sampled token comes
//! back as `token_id:N` with its log-prob: the behaviour log-probs of the
//! importance ratio), `stop_token_ids` with `ignore_eos` (the run's own stop
//! ids, kept as the last token), and a `seed` drawn from the generator's
//! checkpointed RNG, so a resumed run asks for what the uninterrupted one
//! asked. vLLM must run with `--logprobs-mode processed_logprobs` for its
//! log-probs to be those of the temperature-scaled distribution.
//!
//! Load: each endpoint holds at most `concurrency` requests; a request goes
//! to the endpoint with the fewest outstanding. An endpoint that fails
//! (connection refused or reset, a timeout, a 5xx) is marked down and the
//! requests it held are sent again elsewhere; every response slot is filled
//! exactly once, so each rollout is learned once (the trainer's ledger
//! checks it). A prober asks a down endpoint's `/health`, brings it to the
//! current weights, and puts it back.
//!
//! Weight sync: [`Remote::load`] writes the snapshot to `sync_dir/v{N}` (a
//! Hugging Face directory for HF runs, `gradus-weights.bin` for the built-in
//! model) and calls every endpoint's reload route; a response is tagged with
//! the `weight_version` its server reports, else the version last synced to
//! that server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gradus_policy::hf::HfConfig;
use gradus_policy::{Response, SamplingConfig, WeightsSnapshot};
use gradus_sandbox::service::http::Pool;
use hyper::body::Bytes;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Generated;

/// `[generator]` of the run config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// `local` (the run's own compute thread) or `openai` (the endpoints).
    pub backend: Backend,
    /// `http://HOST:PORT` of each server (a trailing `/v1` is accepted).
    pub endpoints: Vec<String>,
    /// Model name sent in requests (default: the first one `/v1/models` lists).
    pub model: Option<String>,
    /// Environment variable holding the servers' API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Longest wait for one completion before its endpoint counts as failed.
    pub timeout_s: f64,
    /// Requests in flight per endpoint.
    pub concurrency: usize,
    /// How new weights reach the servers.
    pub reload: Reload,
    /// Where synced weights are written (default `RUN_DIR/weights`); the
    /// servers must read it at the same path (a shared filesystem).
    pub sync_dir: Option<PathBuf>,
    /// Push weights every this many versions (1: after every update).
    pub sync_every: u64,
    /// How often a down endpoint is probed.
    pub probe_every_s: f64,
    /// With every endpoint down this long, generation fails.
    pub give_up_s: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            endpoints: Vec::new(),
            model: None,
            api_key_env: None,
            timeout_s: 300.0,
            concurrency: 16,
            reload: Reload::Gradus,
            sync_dir: None,
            sync_every: 1,
            probe_every_s: 0.5,
            give_up_s: 600.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Local,
    Openai,
}

/// The reload route each server kind offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    /// `gradus serve`: `POST /update_weights_from_disk {model_path, weight_version}`.
    Gradus,
    /// SGLang's `POST /update_weights_from_disk` (the same shape).
    Sglang,
    /// vLLM with a weight-reload worker extension serving
    /// `POST /update_weights {"weight_dir"}` (prime-rl's route).
    Vllm,
    /// Never push weights (the servers keep what they serve: curation or
    /// evaluation of a fixed model).
    None,
}

impl GeneratorConfig {
    /// Checks every field; problems are joined into one message.
    pub fn validate(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        match self.backend {
            Backend::Local if !self.endpoints.is_empty() => {
                bad.push("endpoints are only used with backend = \"openai\"".to_string())
            }
            Backend::Openai if self.endpoints.is_empty() => {
                bad.push("backend = \"openai\" needs at least one endpoint".to_string())
            }
            _ => {}
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if let Err(why) = authority(e) {
                bad.push(format!("endpoints[{i}]: {why}"));
            }
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            bad.push(format!("timeout_s must be > 0, got {}", self.timeout_s));
        }
        if self.concurrency == 0 {
            bad.push("concurrency must be ≥ 1".into());
        }
        if self.sync_every == 0 {
            bad.push("sync_every must be ≥ 1".into());
        }
        if !(self.probe_every_s > 0.0 && self.probe_every_s.is_finite()) {
            bad.push(format!(
                "probe_every_s must be > 0, got {}",
                self.probe_every_s
            ));
        }
        if !(self.give_up_s > 0.0 && self.give_up_s.is_finite()) {
            bad.push(format!("give_up_s must be > 0, got {}", self.give_up_s));
        }
        if let Some(name) = &self.api_key_env
            && name.is_empty()
        {
            bad.push("api_key_env names an environment variable; it is empty".into());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }
}

/// `HOST:PORT` of an endpoint URL (`http://HOST:PORT`, optionally `/v1`).
pub fn authority(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    gradus_sandbox::config::parse_endpoint(trimmed)
}

/// What a weight sync writes.
#[derive(Debug, Clone)]
pub enum SyncFormat {
    /// A Hugging Face directory (config and tokenizer files copied from `source`).
    Hf { config: HfConfig, source: PathBuf },
    /// The built-in model: `gradus-weights.bin`, a [`WeightsSnapshot`].
    Snapshot,
}

/// The file a built-in model's weight sync writes.
pub const WEIGHTS_FILE: &str = "gradus-weights.bin";

/// What happened to an endpoint, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEvent {
    Down { endpoint: String, why: String },
    Up { endpoint: String },
}

struct Endpoint {
    url: String,
    pool: Pool,
    up: AtomicBool,
    inflight: AtomicUsize,
    /// Weight version it serves (as synced or reported); `u64::MAX`: unknown.
    version: AtomicU64,
    probing: AtomicBool,
}

struct Synced {
    version: u64,
    dir: Option<PathBuf>,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    cfg: GeneratorConfig,
    model: Mutex<Option<String>>,
    sync_dir: PathBuf,
    format: SyncFormat,
    /// The last sync (`dir` is `None` before the first, which always happens).
    synced: Mutex<Synced>,
    changed: tokio::sync::Notify,
    events: Mutex<Vec<EndpointEvent>>,
    resent: AtomicUsize,
}

/// The generator's side of the inference servers.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

/// Why one attempt failed.
enum Failure {
    /// The endpoint failed: mark it down and send the request elsewhere.
    Endpoint(String),
    /// The server refused the request (a 4xx): sending it elsewhere would not help.
    Request(String),
    /// 429: wait and send it again.
    Busy(Duration),
}

impl Remote {
    /// A client of `cfg.endpoints`; `run_dir` is where weights are synced
    /// unless `sync_dir` says otherwise. The endpoints start down and are
    /// probed at once.
    pub fn new(
        cfg: GeneratorConfig,
        run_dir: &Path,
        format: SyncFormat,
        rng: ChaCha8Rng,
    ) -> Result<Self, String> {
        cfg.validate()?;
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(name) => Some(
                std::env::var(name)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        format!("generator.api_key_env: the environment variable {name} is not set")
                    })?,
            ),
        };
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|url| {
                Ok(Endpoint {
                    url: url.clone(),
                    pool: Pool::new(&authority(url)?, api_key.clone()),
                    up: AtomicBool::new(false),
                    inflight: AtomicUsize::new(0),
                    version: AtomicU64::new(u64::MAX),
                    probing: AtomicBool::new(false),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Servers are told absolute paths.
        let sync_dir = cfg
            .sync_dir
            .clone()
            .unwrap_or_else(|| run_dir.join("weights"));
        let sync_dir = if sync_dir.is_absolute() {
            sync_dir
        } else {
            std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(sync_dir)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                model: Mutex::new(cfg.model.clone()),
                cfg,
                sync_dir,
                format,
                synced: Mutex::new(Synced {
                    version: 0,
                    dir: None,
                }),
                changed: tokio::sync::Notify::new(),
                events: Mutex::new(Vec::new()),
                resent: AtomicUsize::new(0),
            }),
            rng: Arc::new(Mutex::new(rng)),
        })
    }

    /// The RNG the request seeds come from, for checkpoints.
    pub fn rng(&self) -> ChaCha8Rng {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Endpoints up, of all.
    pub fn endpoints_up(&self) -> (usize, usize) {
        let up = self
            .inner
            .endpoints
            .iter()
            .filter(|e| e.up.load(Ordering::SeqCst))
            .count();
        (up, self.inner.endpoints.len())
    }

    /// Endpoint events since the last call.
    pub fn take_events(&self) -> Vec<EndpointEvent> {
        std::mem::take(&mut *self.inner.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Requests sent again after their endpoint failed, since start.
    pub fn resent(&self) -> usize {
        self.inner.resent.load(Ordering::SeqCst)
    }

    /// The weight version the servers were last brought to.
    pub fn version(&self) -> u64 {
        self.inner
            .synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version
    }

    /// Samples one response per prompt through the endpoints.
    pub async fn generate(
        &self,
        prompts: Vec<Vec<u32>>,
        config: SamplingConfig,
    ) -> Result<Generated, String> {
        config.validate().map_err(|e| e.to_string())?;
        let seeds: Vec<u64> = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            prompts.iter().map(|_| rng.next_u64() >> 1).collect()
        };
        let config = Arc::new(config);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (prompt, seed)) in prompts.into_iter().zip(seeds).enumerate() {
            let me = self.clone();
            let config = config.clone();
            tasks.spawn(async move { (i, me.one(prompt, &config, seed).await) });
        }
        let mut out: Vec<Option<(Response, u64)>> = (0..tasks.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (i, r) = joined.map_err(|e| format!("a generation task failed: {e}"))?;
            match r {
                Ok(x) => out[i] = Some(x),
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        let mut version = u64::MAX;
        let responses = out
            .into_iter()
            .map(|x| {
                let (r, v) = x.expect("every task answered");
                version = version.min(v);
                r
            })
            .collect();
        Ok(Generated {
            responses,
            policy_version: if version == u64::MAX {
                self.version()
            } else {
                version
            },
        })
    }

    /// One response: sent to the least loaded endpoint, and again elsewhere
    /// when that endpoint fails.
    async fn one(
        &self,
        prompt: Vec<u32>,
        config: &SamplingConfig,
        seed: u64,
    ) -> Result<(Response, u64), String> {
        let body = self.body(&prompt, config, seed).await?;
        let timeout = Duration::from_secs_f64(self.inner.cfg.timeout_s);
        let mut resends = 0usize;
        loop {
            let i = self.pick().await?;
            let e = &self.inner.endpoints[i];
            let result = self.attempt(e, body.clone(), timeout, config).await;
            e.inflight.fetch_sub(1, Ordering::SeqCst);
            self.inner.changed.notify_waiters();
            match result {
                Ok(x) => return Ok(x),
                Err(Failure::Request(why)) => return Err(why),
                Err(Failure::Busy(wait)) => tokio::time::sleep(wait).await,
                Err(Failure::Endpoint(why)) => {
                    self.mark_down(i, why);
                    resends += 1;
                    self.inner.resent.fetch_add(1, Ordering::SeqCst);
                    if resends > 100 * self.inner.endpoints.len() {
                        return Err(format!(
                            "a completion failed {resends} times on every endpoint"
                        ));
                    }
                }
            }
        }
    }

    async fn body(
        &self,
        prompt: &[u32],
        config: &SamplingConfig,
        seed: u64,
    ) -> Result<Bytes, String> {
        let model = self.model_name().await?;
        Ok(Bytes::from(
            json!({
                "model": model,
                "prompt": prompt,
                "max_tokens": config.max_new_tokens,
                "temperature": config.temperature,
                "top_p": config.top_p,
                "seed": seed,
                "n": 1,
                "logprobs": 0,
                "return_tokens_as_token_ids": true,
                "stop_token_ids": config.stop_tokens,
                "ignore_eos": true,
                "skip_special_tokens": false,
            })
            .to_string(),
        ))
    }

    /// The model name: configured, or the first one an endpoint lists.
    async fn model_name(&self) -> Result<String, String> {
        if let Some(m) = self
            .inner
            .model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(m);
        }
        let mut why = String::from("no endpoint answered /v1/models");
        for e in &self.inner.endpoints {
            match e
                .pool
                .call("GET", "/v1/models", Bytes::new(), Duration::from_secs(10))
                .await
            {
                Ok((s, _, body)) if s.is_success() => {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let Some(id) = v["data"][0]["id"].as_str() {
                        *self.inner.model.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(id.to_string());
                        return Ok(id.to_string());
                    }
                    why = format!("{}: /v1/models lists no model", e.url);
                }
                Ok((s, _, _)) => why = format!("{}: /v1/models answered {s}", e.url),
                Err(err) => why = err,
            }
        }
        Err(why)
    }

    /// The up endpoint with the fewest requests in flight (waiting while all
    /// are full); counts the request against it.
    async fn pick(&self) -> Result<usize, String> {
        let give_up = Duration::from_secs_f64(self.inner.cfg.give_up_s);
        let mut all_down_since: Option<Instant> = None;
        loop {
            let changed = self.inner.changed.notified();
            let current = self.version();
            let mut best: Option<(usize, usize)> = None;
            let mut any_up = false;
            for (i, e) in self.inner.endpoints.iter().enumerate() {
                if !e.up.load(Ordering::SeqCst) {
                    self.probe(i);
                    continue;
                }
                // An endpoint that came up on older weights (its probe raced
                // a sync) goes back to its prober, which brings it to these.
                let v = e.version.load(Ordering::SeqCst);
                if self.inner.cfg.reload != Reload::None && v != current {
                    self.mark_down(i, format!("serves weight version {v}, not {current}"));
                    continue;
                }
                any_up = true;
                let n = e.inflight.load(Ordering::SeqCst);
                if n < self.inner.cfg.concurrency && best.is_none_or(|(_, m)| n < m) {
                    best = Some((i, n));
                }
            }
            if let Some((i, _)) = best {
                self.inner.endpoints[i]
                    .inflight
                    .fetch_add(1, Ordering::SeqCst);
                return Ok(i);
            }
            if any_up {
                all_down_since = None;
            } else {
                let since = *all_down_since.get_or_insert_with(Instant::now);
                if since.elapsed() > give_up {
                    return Err(format!(
                        "every inference endpoint has been down for {give_up:?}: {}",
                        self.inner
                            .endpoints
                            .iter()
                            .map(|e| e.url.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            // Woken when a request ends or an endpoint comes back; the
            // timeout covers a wake-up sent before we waited.
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    async fn attempt(
        &self,
        e: &Endpoint,
        body: Bytes,
        timeout: Duration,
        config: &SamplingConfig,
    ) -> Result<(Response, u64), Failure> {
        let (status, headers, bytes) = e
            .pool
            .call("POST", "/v1/completions", body, timeout)
            .await
            .map_err(Failure::Endpoint)?;
        if status.as_u16() == 429 {
            let secs = gradus_sandbox::service::http::retry_after(&headers).unwrap_or(1.0);
            return Err(Failure::Busy(Duration::from_secs_f64(
                secs.clamp(0.05, 30.0),
            )));
        }
        if status.is_server_error() {
            return Err(Failure::Endpoint(format!(
                "{}: /v1/completions answered {status}: {}",
                e.url,
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )));
        }
        if !status.is_success() {
            return Err(Failure::Request(format!(
                "{} refused a completion request ({status}): {}",
                e.url,
                String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
            )));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|err| Failure::Endpoint(format!("{}: not JSON: {err}", e.url)))?;
        let response = parse_completion(&v, config)
            .map_err(|why| Failure::Request(format!("{}: {why}", e.url)))?;
        let version = reported_version(&v).unwrap_or_else(|| e.version.load(Ordering::SeqCst));
        Ok((response, version))
    }

    fn mark_down(&self, i: usize, why: String) {
        let e = &self.inner.endpoints[i];
        if e.up.swap(false, Ordering::SeqCst) {
            e.pool.clear();
            self.inner
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(EndpointEvent::Down {
                    endpoint: e.url.clone(),
                    why,
                });
        }
        self.probe(i);
    }

    /// Starts probing endpoint `i` (once at a time) until it answers
    /// `/health` and serves the current weights; then marks it up.
    fn probe(&self, i: usize) {
        let e = &self.inner.endpoints[i];
        if e.up.load(Ordering::SeqCst) || e.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs_f64(me.inner.cfg.probe_every_s);
            loop {
                let e = &me.inner.endpoints[i];
                if me.bring_up(e).await.is_ok() {
                    e.up.store(true, Ordering::SeqCst);
                    e.probing.store(false, Ordering::SeqCst);
                    me.inner
                        .events
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(EndpointEvent::Up {
                            endpoint: e.url.clone(),
                        });
                    me.inner.changed.notify_waiters();
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Healthy and on the current weights (reloading it when not).
    async fn bring_up(&self, e: &Endpoint) -> Result<(), String> {
        let (status, _, _) = e
            .pool
            .call("GET", "/health", Bytes::new(), Duration::from_secs(5))
            .await?;
        if !status.is_success() {
            return Err(format!("/health answered {status}"));
        }
        if self.inner.cfg.reload == Reload::None {
            return Ok(());
        }
        let (version, dir) = {
            let s = self.inner.synced.lock().unwrap_or_else(|p| p.into_inner());
            (s.version, s.dir.clone())
        };
        let Some(dir) = dir else {
            // Nothing synced yet: the first sync will bring it to the weights.
            return Ok(());
        };
        self.reload(e, &dir, version).await
    }

    /// Calls `e`'s reload route for `dir` (version `version`).
    async fn reload(&self, e: &Endpoint, dir: &Path, version: u64) -> Result<(), String> {
        let path = dir.to_string_lossy();
        let (route, body) = match self.inner.cfg.reload {
            Reload::Gradus | Reload::Sglang => (
                "/update_weights_from_disk",
                json!({"model_path": path, "weight_version": version.to_string()}),
            ),
            Reload::Vllm => ("/update_weights", json!({"weight_dir": path})),
            Reload::None => return Ok(()),
        };
        let timeout = Duration::from_secs_f64(self.inner.cfg.timeout_s);
        let (status, _, bytes) = e
            .pool
            .call("POST", route, Bytes::from(body.to_string()), timeout)
            .await?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() || answer.get("success") == Some(&Value::Bool(false)) {
            return Err(format!(
                "{}{route} answered {status}: {}",
                e.url,
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        e.version.store(version, Ordering::SeqCst);
        Ok(())
    }

    /// Writes `snapshot` for the servers and reloads every endpoint that is
    /// up (a down one is brought to it when it comes back). Skipped, keeping
    /// the servers' version, between `sync_every` versions. Returns the
    /// version the servers now serve.
    pub async fn load(&self, snapshot: Arc<WeightsSnapshot>) -> Result<u64, String> {
        if self.inner.cfg.reload == Reload::None {
            return Ok(self.version());
        }
        let first = self
            .inner
            .synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dir
            .is_none();
        if !first && !snapshot.version.is_multiple_of(self.inner.cfg.sync_every) {
            return Ok(self.version());
        }
        let version = snapshot.version;
        let dir = self.inner.sync_dir.join(format!("v{version}"));
        let (format, write_dir) = (self.inner.format.clone(), dir.clone());
        tokio::task::spawn_blocking(move || write_weights(&write_dir, &snapshot, &format))
            .await
            .map_err(|e| format!("writing weights: {e}"))??;
        let previous = {
            let mut s = self.inner.synced.lock().unwrap_or_else(|p| p.into_inner());
            s.version = version;
            s.dir.replace(dir.clone())
        };
        // Reload every endpoint that is up; wait until at least one serves
        // the new weights (a down one is synced by its prober).
        let started = Instant::now();
        let give_up = Duration::from_secs_f64(self.inner.cfg.give_up_s);
        loop {
            let mut reloads = Vec::new();
            for (i, e) in self.inner.endpoints.iter().enumerate() {
                if e.up.load(Ordering::SeqCst) && e.version.load(Ordering::SeqCst) != version {
                    let me = self.clone();
                    let dir = dir.clone();
                    reloads.push(async move {
                        let e = &me.inner.endpoints[i];
                        if let Err(why) = me.reload(e, &dir, version).await {
                            me.mark_down(i, format!("weight reload failed: {why}"));
                        }
                    });
                } else if !e.up.load(Ordering::SeqCst) {
                    self.probe(i);
                }
            }
            futures_join_all(reloads).await;
            let serving = self
                .inner
                .endpoints
                .iter()
                .filter(|e| {
                    e.up.load(Ordering::SeqCst) && e.version.load(Ordering::SeqCst) == version
                })
                .count();
            if serving > 0 {
                break;
            }
            if started.elapsed() > give_up {
                return Err(format!(
                    "no inference endpoint took weight version {version} within {give_up:?}"
                ));
            }
            tokio::time::sleep(Duration::from_secs_f64(self.inner.cfg.probe_every_s)).await;
        }
        self.inner.changed.notify_waiters();
        // The version before last stays (a server may still be loading it).
        if let Some(prev) = previous {
            prune(&self.inner.sync_dir, &[dir.as_path(), prev.as_path()]);
        }
        Ok(version)
    }
}

/// Awaits every future (they run concurrently).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(fs: Vec<F>) {
    let mut set = tokio::task::JoinSet::new();
    for f in fs {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

/// Removes the version directories of `dir` other than `keep`.
fn prune(dir: &Path, keep: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let is_version = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('v') && n[1..].parse::<u64>().is_ok());
        if is_version && !keep.contains(&p.as_path()) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

/// Writes `snapshot` to `dir` in `format`, whole or not at all (into a
/// temporary sibling first, renamed in).
pub fn write_weights(
    dir: &Path,
    snapshot: &WeightsSnapshot,
    format: &SyncFormat,
) -> Result<(), String> {
    let parent = dir.parent().ok_or("a weights directory needs a parent")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    if dir.exists() {
        return Ok(()); // this version was written before (a redo)
    }
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .map_err(|e| format!("creating a directory in {}: {e}", parent.display()))?;
    match format {
        SyncFormat::Hf { config, source } => {
            gradus_policy::hf::export::write_dir(
                tmp.path(),
                snapshot.weights.clone(),
                config,
                source,
            )
            .map_err(|e| e.to_string())?;
        }
        SyncFormat::Snapshot => {
            let bytes = snapshot.to_bytes().map_err(|e| e.to_string())?;
            std::fs::write(tmp.path().join(WEIGHTS_FILE), bytes)
                .map_err(|e| format!("writing {}: {e}", tmp.path().display()))?;
        }
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| format!("renaming into {}: {e}", dir.display()))
}

/// The server's `weight_version` (a string or number), if it says one.
fn reported_version(v: &Value) -> Option<u64> {
    match v.get("weight_version")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A response from a `/v1/completions` answer of `logprobs: 0` with
/// `return_tokens_as_token_ids`.
pub fn parse_completion(v: &Value, config: &SamplingConfig) -> Result<Response, String> {
    let choice = &v["choices"][0];
    if choice.is_null() {
        return Err("the answer has no choices".into());
    }
    let lp = &choice["logprobs"];
    let tokens = lp["tokens"]
        .as_array()
        .ok_or("the answer has no logprobs.tokens (does the server return log-probs?)")?;
    let logprobs = lp["token_logprobs"]
        .as_array()
        .ok_or("the answer has no logprobs.token_logprobs")?;
    if tokens.len() != logprobs.len() {
        return Err(format!(
            "{} tokens but {} log-probs",
            tokens.len(),
            logprobs.len()
        ));
    }
    let ids = tokens
        .iter()
        .map(|t| {
            t.as_str()
                .and_then(|s| s.strip_prefix("token_id:"))
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| {
                    format!(
                        "token {t} is not `token_id:N` (return_tokens_as_token_ids unsupported?)"
                    )
                })
        })
        .collect::<Result<Vec<u32>, String>>()?;
    let lps = logprobs
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|x| x as f32)
                .ok_or(format!("log-prob {x} is not a number"))
        })
        .collect::<Result<Vec<f32>, String>>()?;
    if ids.is_empty() {
        return Err("the server generated no token".into());
    }
    if ids.len() > config.max_new_tokens {
        return Err(format!(
            "{} tokens, more than max_tokens {}",
            ids.len(),
            config.max_new_tokens
        ));
    }
    let last_stops = config.stop_tokens.contains(ids.last().expect("non-empty"));
    let truncated = match choice["finish_reason"].as_str() {
        Some("length") => true,
        Some("stop") => false,
        other => {
            return Err(format!(
                "finish_reason {other:?} is neither stop nor length"
            ));
        }
    };
    if !truncated && !last_stops {
        return Err("finish_reason is stop but the last token is not a stop id".into());
    }
    Ok(Response {
        tokens: ids,
        logprobs: lps,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SamplingConfig {
        SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 4,
            stop_tokens: vec![2],
        }
    }

    #[test]
    fn completions_with_token_ids_parse_into_responses() {
        let v = json!({"choices": [{"logprobs": {"tokens": ["token_id:5", "token_id:2"],
            "token_logprobs": [-0.5, -1.0]}, "finish_reason": "stop"}], "weight_version": "7"});
        let r = parse_completion(&v, &cfg()).unwrap();
        assert_eq!(r.tokens, vec![5, 2]);
        assert_eq!(r.logprobs, vec![-0.5, -1.0]);
        assert!(!r.truncated);
        assert_eq!(reported_version(&v), Some(7));
        let v = json!({"choices": [{"logprobs": {"tokens": ["token_id:5"],
            "token_logprobs": [-0.5]}, "finish_reason": "length"}]});
        assert!(parse_completion(&v, &cfg()).unwrap().truncated);
        for bad in [
            json!({"choices": []}),
            json!({"choices": [{"logprobs": null, "finish_reason": "stop"}]}),
            json!({"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [-1.0]},
                "finish_reason": "stop"}]}),
            json!({"choices": [{"logprobs": {"tokens": ["token_id:5"], "token_logprobs": []},
                "finish_reason": "length"}]}),
            json!({"choices": [{"logprobs": {"tokens": ["token_id:5"], "token_logprobs": [-1.0]},
                "finish_reason": "stop"}]}),
            json!({"choices": [{"logprobs": {"tokens": ["token_id:1","token_id:1","token_id:1",
                "token_id:1","token_id:1"], "token_logprobs": [-1.0,-1.0,-1.0,-1.0,-1.0]},
                "finish_reason": "length"}]}),
        ] {
            assert!(parse_completion(&bad, &cfg()).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_urls_and_fields_are_checked() {
        assert_eq!(
            authority("http://127.0.0.1:8000/v1/").unwrap(),
            "127.0.0.1:8000"
        );
        assert_eq!(authority("http://h:1").unwrap(), "h:1");
        assert!(authority("https://h:1").is_err());
        assert!(authority("http://h").is_err());
        let c = GeneratorConfig {
            backend: Backend::Openai,
            ..GeneratorConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("at least one endpoint"));
        let c = GeneratorConfig {
            backend: Backend::Openai,
            endpoints: vec!["http://h".into()],
            concurrency: 0,
            sync_every: 0,
            ..GeneratorConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("endpoints[0]") && e.contains("concurrency") && e.contains("sync_every"),
            "{e}"
        );
    }

    #[test]
    fn weights_are_written_whole_and_old_versions_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let snap = WeightsSnapshot {
            version: 3,
            config: gradus_policy::ModelConfig::new(12),
            weights: vec![],
        };
        for v in 1..=3 {
            write_weights(
                &dir.path().join(format!("v{v}")),
                &snap,
                &SyncFormat::Snapshot,
            )
            .unwrap();
        }
        let bytes = std::fs::read(dir.path().join("v3").join(WEIGHTS_FILE)).unwrap();
        assert_eq!(WeightsSnapshot::from_bytes(&bytes).unwrap(), snap);
        prune(
            dir.path(),
            &[&dir.path().join("v3"), &dir.path().join("v2")],
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["v2", "v3"]);
    }
}

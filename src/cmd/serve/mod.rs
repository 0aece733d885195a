//! `gradus serve --model PATH --listen ADDR`: an OpenAI-compatible HTTP
//! server over a gradus policy (a Hugging Face directory or model id, a run
//! directory's latest checkpoint, one checkpoint, or an export), so that a
//! training run's generation, `gradus curate`, or any OpenAI client can
//! sample from it.
//!
//! Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (the
//! checkpoint's chat template), `GET /v1/models`, `GET /health`, `GET
//! /metrics` (Prometheus), and the weight update `POST
//! /update_weights_from_disk {"model_path", "weight_version"}` → `{"success",
//! "message", "weight_version"}`, shaped like SGLang's: the new weights are
//! loaded beside the running ones, the running sequences finish on the old
//! weights, new ones start on the new, and no request is dropped. Every
//! answer tells the `weight_version` that produced it (body field and
//! `x-weight-version` header); `GET /weight_version` says the current one.
//!
//! Requests are checked on the async side ([`api`]: a 400 names the bad
//! field) and decoded by one continuous batch on the compute thread
//! ([`engine`]); at most `--max-queue` requests wait or run, the next gets a
//! 429 with `Retry-After`. With `--api-key-env NAME` the `/v1/*` endpoints
//! and the weight update need `Authorization: Bearer $NAME`; the key is
//! read from that environment variable, never from the command line.

pub mod api;
pub mod engine;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use gradus::http::{Limits, serve_connections};
use gradus_policy::decode::{Finish, Finished, Request as SeqRequest};
use gradus_policy::hf::tokenizer::AnyTokenizer;
use gradus_policy::{ComputeConfig, Device, ModelConfig, SamplingConfig, Tokenizer};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use api::{ApiError, Prompt, Sampling};
use engine::{Done, Engine, Job};

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint directory or model id (offline cache), a
    /// gradus run directory (its latest intact checkpoint), or a checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on; port 0 picks a free one. The first line printed
    /// is `listening on http://HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// The model name requests must use (default: --model as given).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Name of an environment variable holding the API key clients must send
    /// as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Most sequences decoded at once (one continuous batch).
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Most requests waiting or running; the next gets 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 16)]
    pub max_body_mb: usize,
    /// Seed of the sampler for requests without a `seed`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// What every handler shares.
struct Server {
    name: String,
    engine: Engine,
    tok: Arc<AnyTokenizer>,
    config: ModelConfig,
    vocab: usize,
    max_len: usize,
    device: Device,
    api_key: Option<String>,
    max_queue: usize,
    max_body: usize,
    rng: Mutex<ChaCha8Rng>,
    reload: tokio::sync::Mutex<()>,
    ids: std::sync::atomic::AtomicU64,
    metrics: ServeMetrics,
}

struct ServeMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    prompt_tokens: IntCounter,
    generated_tokens: IntCounter,
    running: IntGauge,
    waiting: IntGauge,
    outstanding: IntGauge,
    version: IntGauge,
    reloads: IntCounterVec,
}

impl ServeMetrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gradus_serve_requests_total",
                "Requests answered, by endpoint and status",
            ),
            &["endpoint", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gradus_serve_request_seconds",
                "Time to answer a generation request",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets")),
            &["endpoint"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let m = Self {
            requests,
            latency,
            prompt_tokens: counter(
                "gradus_serve_prompt_tokens_total",
                "Prompt tokens prefilled",
            ),
            generated_tokens: counter("gradus_serve_generated_tokens_total", "Tokens generated"),
            running: gauge("gradus_serve_running_sequences", "Sequences decoding now"),
            waiting: gauge(
                "gradus_serve_waiting_sequences",
                "Sequences waiting to be admitted",
            ),
            outstanding: gauge(
                "gradus_serve_outstanding_requests",
                "Requests waiting or running",
            ),
            version: gauge(
                "gradus_serve_weight_version",
                "Weight version served (-1 when not a number)",
            ),
            reloads: IntCounterVec::new(
                Opts::new(
                    "gradus_serve_weight_reloads_total",
                    "Weight updates, by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.latency.clone()),
            Box::new(m.prompt_tokens.clone()),
            Box::new(m.generated_tokens.clone()),
            Box::new(m.running.clone()),
            Box::new(m.waiting.clone()),
            Box::new(m.outstanding.clone()),
            Box::new(m.version.clone()),
            Box::new(m.reloads.clone()),
        ] {
            m.registry.register(c).expect("metric registered once");
        }
        m
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.max_batch == 0 || a.max_queue == 0 {
        anyhow::bail!("--max-batch and --max-queue must be at least 1");
    }
    let api_key = match &a.api_key_env {
        None => None,
        Some(name) => Some(
            std::env::var(name)
                .ok()
                .filter(|k| !k.is_empty())
                .with_context(|| {
                    format!("--api-key-env {name}: the variable is not set or empty")
                })?,
        ),
    };
    let device = gradus_policy::device::device(&ComputeConfig {
        device: a.device.clone(),
        threads: a.threads,
        ..Default::default()
    })
    .context("--device")?;
    let loaded = super::model::load(&a.model, &device, "serve", false, None)?;
    let thread = gradus_policy::device::ComputeThread::spawn("serve", a.threads)?;
    let max_len = loaded.model.max_len();
    let vocab = loaded.model.vocab_size();
    let pad = loaded.tok.pad_id();
    let engine = Engine::start(
        &thread,
        loaded.model,
        pad,
        loaded.version.to_string(),
        a.max_batch,
    );
    let server = Arc::new(Server {
        name: a
            .served_model_name
            .clone()
            .unwrap_or_else(|| a.model.to_string_lossy().into_owned()),
        engine,
        tok: Arc::new(loaded.tok),
        config: loaded.config,
        vocab,
        max_len,
        device,
        api_key,
        max_queue: a.max_queue,
        max_body: a.max_body_mb << 20,
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(a.seed)),
        reload: tokio::sync::Mutex::new(()),
        ids: Default::default(),
        metrics: ServeMetrics::new(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        use std::io::Write;
        std::io::stdout().flush()?;
        eprintln!(
            "gradus serve: `{}` (weight version {}), up to {} sequences per batch, {} requests queued",
            server.name,
            server.engine.version(),
            a.max_batch,
            a.max_queue
        );
        let limits = Limits {
            // Long generations: a connection lives as long as its requests.
            max_connections: 512,
            max_connection_age: std::time::Duration::from_secs(24 * 3600),
            ..Limits::default()
        };
        let server = server.clone();
        let serving = serve_connections(listener, limits, move |req| {
            let server = server.clone();
            async move { handle(&server, req).await }
        });
        tokio::select! {
            _ = serving => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    drop(thread);
    Ok(ExitCode::SUCCESS)
}

type Reply = Response<Full<Bytes>>;

fn json_reply(status: u16, body: &Value, version: Option<&str>) -> Reply {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(v) = version {
        b = b.header("x-weight-version", v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

fn error_reply(e: &ApiError) -> Reply {
    let mut r = json_reply(e.status, &e.body(), None);
    if e.status == 429 {
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    if e.status == 401 {
        r.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

async fn handle(s: &Server, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let endpoint = match path.as_str() {
        "/v1/completions"
        | "/v1/chat/completions"
        | "/v1/models"
        | "/health"
        | "/metrics"
        | "/update_weights_from_disk"
        | "/weight_version" => path.as_str(),
        _ => "other",
    };
    let started = Instant::now();
    let reply = route(s, req, &path).await;
    let code = reply.status().as_u16().to_string();
    s.metrics
        .requests
        .with_label_values(&[endpoint, &code])
        .inc();
    if matches!(endpoint, "/v1/completions" | "/v1/chat/completions") {
        s.metrics
            .latency
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
    }
    reply
}

async fn route(s: &Server, req: Request<Incoming>, path: &str) -> Reply {
    let method = req.method().clone();
    let needs_key = path.starts_with("/v1/") || path == "/update_weights_from_disk";
    if needs_key && let Some(key) = &s.api_key {
        let sent = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if !sent.is_some_and(|k| same(k.as_bytes(), key.as_bytes())) {
            return error_reply(&ApiError::new(
                401,
                "authentication_error",
                "a valid API key is required: send Authorization: Bearer KEY",
            ));
        }
    }
    let version = s.engine.version();
    match (method, path) {
        (Method::GET, "/health") => json_reply(200, &json!({"status": "ok"}), Some(&version)),
        (Method::GET, "/metrics") => {
            s.refresh_metrics();
            let mut out = String::new();
            let _ = TextEncoder::new().encode_utf8(&s.metrics.registry.gather(), &mut out);
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(out)))
                .expect("static response parts are valid")
        }
        (Method::GET, "/weight_version") => {
            json_reply(200, &json!({"weight_version": version}), Some(&version))
        }
        (Method::GET, "/v1/models") => json_reply(
            200,
            &json!({"object": "list", "data": [{
                "id": s.name,
                "object": "model",
                "created": api::now(),
                "owned_by": "gradus",
                "max_model_len": s.max_len,
                "weight_version": version,
            }]}),
            Some(&version),
        ),
        (
            Method::POST,
            "/v1/completions" | "/v1/chat/completions" | "/update_weights_from_disk",
        ) => {
            let body = match read_body(req, s.max_body).await {
                Ok(b) => b,
                Err(e) => return error_reply(&e),
            };
            let answer = match path {
                "/v1/completions" => completions(s, &body).await,
                "/v1/chat/completions" => chat(s, &body).await,
                _ => update_weights(s, &body).await,
            };
            match answer {
                Ok((body, v)) => json_reply(200, &body, Some(&v)),
                Err(e) => error_reply(&e),
            }
        }
        (_, "/v1/completions" | "/v1/chat/completions" | "/update_weights_from_disk") => {
            error_reply(&ApiError::new(405, "invalid_request_error", "use POST"))
        }
        (_, "/v1/models" | "/health" | "/metrics" | "/weight_version") => {
            error_reply(&ApiError::new(405, "invalid_request_error", "use GET"))
        }
        _ => error_reply(&ApiError::new(
            404,
            "not_found_error",
            format!(
                "no endpoint {path}: try /v1/completions, /v1/chat/completions, /v1/models, \
                 /health, /metrics or /update_weights_from_disk"
            ),
        )),
    }
}

/// Constant-time comparison of two keys.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                413,
                "invalid_request_error",
                format!("the body exceeds {max} bytes"),
            ))
        }
        Err(e) => Err(ApiError::new(
            400,
            "invalid_request_error",
            format!("reading the body: {e}"),
        )),
    }
}

impl Server {
    fn refresh_metrics(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let g = &self.engine.gauges;
        let generated = g.generated.load(Relaxed);
        let seen = self.metrics.generated_tokens.get();
        if generated > seen {
            self.metrics.generated_tokens.inc_by(generated - seen);
        }
        self.metrics.running.set(g.running.load(Relaxed) as i64);
        self.metrics.waiting.set(g.waiting.load(Relaxed) as i64);
        self.metrics
            .outstanding
            .set(g.outstanding.load(Relaxed) as i64);
        self.metrics
            .version
            .set(self.engine.version().parse().unwrap_or(-1));
    }

    /// A prompt's ids, checked against the vocabulary.
    fn prompt_ids(&self, p: &Prompt) -> Result<Vec<u32>, ApiError> {
        let ids = match p {
            Prompt::Ids(ids) => ids.clone(),
            Prompt::Text(text) => match self.tok.as_ref() {
                AnyTokenizer::Hf(t) => t.encode_with_specials(text, true),
                t => t.encode_prompt(text),
            }
            .map_err(|e| ApiError::invalid("prompt", format!("tokenizing the prompt: {e}")))?,
        };
        if ids.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "the prompt encodes to no tokens",
            ));
        }
        if let Some(&id) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(ApiError::invalid(
                "prompt",
                format!("token id {id} is outside the vocabulary of {}", self.vocab),
            ));
        }
        Ok(ids)
    }

    /// The sequences of `prompts` × `n`, and the stop strings they watch.
    fn sequences(
        &self,
        prompts: &[Vec<u32>],
        s: &Sampling,
        score_prompts: bool,
    ) -> Result<Vec<SeqRequest>, ApiError> {
        for p in prompts {
            if p.len() + s.max_tokens - 1 > self.max_len {
                return Err(api::too_long(p.len(), s.max_tokens, self.max_len));
            }
        }
        let mut stop_tokens: Vec<u32> = if s.ignore_eos {
            Vec::new()
        } else {
            self.tok.stop_ids()
        };
        for &id in &s.stop_token_ids {
            if id as usize >= self.vocab {
                return Err(ApiError::invalid(
                    "stop_token_ids",
                    format!("token id {id} is outside the vocabulary of {}", self.vocab),
                ));
            }
            if !stop_tokens.contains(&id) {
                stop_tokens.push(id);
            }
        }
        let sampling = SamplingConfig {
            temperature: s.temperature,
            top_p: s.top_p,
            max_new_tokens: s.max_tokens,
            stop_tokens,
        };
        let mut out = Vec::with_capacity(prompts.len() * s.n);
        for p in prompts {
            for j in 0..s.n {
                let rng = match s.seed {
                    Some(seed) => {
                        let mut r = ChaCha8Rng::seed_from_u64(seed);
                        r.set_stream(j as u64);
                        r
                    }
                    None => ChaCha8Rng::seed_from_u64(
                        self.rng
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .next_u64(),
                    ),
                };
                out.push(SeqRequest {
                    id: 0,
                    prompt: p.clone(),
                    sampling: sampling.clone(),
                    rng,
                    top_logprobs: s.logprobs.unwrap_or(0),
                    prompt_logprobs: score_prompts,
                    stop: stop_watch(&self.tok, &s.stop),
                });
            }
        }
        Ok(out)
    }

    /// Runs the sequences through the engine (429 when the queue is full).
    async fn generate(&self, seqs: Vec<SeqRequest>) -> Result<Done, ApiError> {
        use std::sync::atomic::Ordering;
        if self.engine.gauges.outstanding.load(Ordering::SeqCst) >= self.max_queue {
            return Err(ApiError::new(
                429,
                "rate_limit_error",
                format!(
                    "the server holds {} requests, its limit; retry later",
                    self.max_queue
                ),
            ));
        }
        let prompt_tokens: usize = seqs.iter().map(|r| r.prompt.len()).sum();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.engine
            .submit(Job { seqs, reply })
            .map_err(|e| ApiError::new(500, "server_error", e))?;
        let done = rx
            .await
            .map_err(|_| {
                ApiError::new(500, "server_error", "the compute loop dropped the request")
            })?
            .map_err(|e| ApiError::new(500, "server_error", format!("generation failed: {e}")))?;
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        Ok(done)
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{n}")
    }

    /// How a token is spelt in log-probs.
    fn token_text(&self, id: u32, as_ids: bool) -> String {
        if as_ids {
            return format!("token_id:{id}");
        }
        match self.tok.as_ref() {
            AnyTokenizer::Hf(t) => t.decode_with(&[id], false).unwrap_or_default(),
            t => t.decode(&[id]),
        }
    }
}

/// A callback that ends a sequence once its text contains a stop string
/// (looking only at the tail a stop string could still end in).
fn stop_watch(tok: &Arc<AnyTokenizer>, stops: &[String]) -> Option<gradus_policy::decode::StopFn> {
    if stops.is_empty() {
        return None;
    }
    let tok = tok.clone();
    let stops = stops.to_vec();
    let tail = 4 * stops.iter().map(|s| s.chars().count()).max().unwrap_or(1) + 4;
    Some(Box::new(move |toks: &[u32]| {
        let text = tok.decode(&toks[toks.len().saturating_sub(tail)..]);
        stops.iter().any(|s| text.contains(s.as_str()))
    }))
}

/// The response text and finish reason: cut before the first stop string.
fn finished_text(s: &Server, f: &Finished, stops: &[String]) -> (String, &'static str) {
    let text = s.tok.decode(&f.tokens);
    let cut = stops.iter().filter_map(|st| text.find(st.as_str())).min();
    match (cut, f.finish) {
        (Some(at), _) => (text[..at].to_string(), "stop"),
        (None, Finish::Stop) => (text, "stop"),
        (None, Finish::Length) => (text, "length"),
    }
}

async fn completions(s: &Server, body: &[u8]) -> Result<(Value, String), ApiError> {
    let req = api::completion(&api::object(body)?, &s.name)?;
    let ids: Vec<Vec<u32>> = req
        .prompts
        .iter()
        .map(|p| s.prompt_ids(p))
        .collect::<Result<_, _>>()?;
    let score = req.echo && req.sampling.logprobs.is_some();
    let seqs = s.sequences(&ids, &req.sampling, score)?;
    let done = s.generate(seqs).await?;
    let sm = &req.sampling;
    let mut choices = Vec::with_capacity(done.seqs.len());
    let mut completion_tokens = 0;
    for (i, f) in done.seqs.iter().enumerate() {
        let p = i / sm.n;
        completion_tokens += f.tokens.len();
        let (mut text, finish) = finished_text(s, f, &sm.stop);
        if req.echo {
            let prompt_text = match &req.prompts[p] {
                Prompt::Text(t) => t.clone(),
                Prompt::Ids(ids) => s.tok.decode(ids),
            };
            text = prompt_text + &text;
        }
        let logprobs = sm.logprobs.map(|_| {
            let mut tokens = Vec::new();
            let mut token_logprobs: Vec<Value> = Vec::new();
            let mut top: Vec<Value> = Vec::new();
            if req.echo {
                for (j, &id) in ids[p].iter().enumerate() {
                    tokens.push(s.token_text(id, sm.tokens_as_ids));
                    let lp = (j > 0)
                        .then(|| f.prompt_logprobs.as_ref().map(|v| v[j - 1]))
                        .flatten();
                    token_logprobs.push(json!(lp));
                    top.push(Value::Null);
                }
            }
            for (j, (&id, &lp)) in f.tokens.iter().zip(&f.logprobs).enumerate() {
                tokens.push(s.token_text(id, sm.tokens_as_ids));
                token_logprobs.push(json!(lp));
                let mut alts = serde_json::Map::new();
                for &(alt, alp) in f.top.get(j).map_or(&[][..], Vec::as_slice) {
                    alts.insert(s.token_text(alt, sm.tokens_as_ids), json!(alp));
                }
                alts.entry(s.token_text(id, sm.tokens_as_ids))
                    .or_insert(json!(lp));
                top.push(Value::Object(alts));
            }
            let mut at = 0usize;
            let offsets: Vec<usize> = tokens
                .iter()
                .map(|t| {
                    let o = at;
                    at += t.chars().count();
                    o
                })
                .collect();
            json!({"tokens": tokens, "token_logprobs": token_logprobs,
                   "top_logprobs": top, "text_offset": offsets})
        });
        let mut choice = json!({
            "index": i,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": finish,
            "stop_reason": Value::Null,
        });
        if sm.return_token_ids {
            choice["token_ids"] = json!(f.tokens);
            choice["prompt_token_ids"] = json!(ids[p]);
        }
        choices.push(choice);
    }
    let prompt_tokens: usize = ids.iter().map(Vec::len).sum::<usize>() * sm.n;
    Ok((
        json!({
            "id": s.next_id("cmpl"),
            "object": "text_completion",
            "created": api::now(),
            "model": s.name,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
            "weight_version": done.version,
        }),
        done.version,
    ))
}

async fn chat(s: &Server, body: &[u8]) -> Result<(Value, String), ApiError> {
    let req = api::chat(&api::object(body)?, &s.name)?;
    let Some(hf) = s.tok.hf() else {
        return Err(ApiError::invalid(
            "messages",
            "this model has no chat template (the built-in tokenizer); use /v1/completions",
        ));
    };
    let Some(template) = hf.chat_template() else {
        return Err(ApiError::invalid(
            "messages",
            "this checkpoint has no chat template; use /v1/completions",
        ));
    };
    let text = template
        .render(&req.messages, true)
        .map_err(|e| ApiError::invalid("messages", format!("rendering the chat template: {e}")))?;
    let ids = hf
        .encode_with_specials(&text, false)
        .map_err(|e| ApiError::invalid("messages", format!("tokenizing: {e}")))?;
    let ids = s.prompt_ids(&Prompt::Ids(ids))?;
    let sm = &req.sampling;
    let seqs = s.sequences(std::slice::from_ref(&ids), sm, false)?;
    let done = s.generate(seqs).await?;
    let mut completion_tokens = 0;
    let choices: Vec<Value> = done
        .seqs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            completion_tokens += f.tokens.len();
            let (text, finish) = finished_text(s, f, &sm.stop);
            let entry = |id: u32, lp: f32| {
                let t = s.token_text(id, sm.tokens_as_ids);
                json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
            };
            let logprobs = sm.logprobs.map(|_| {
                let content: Vec<Value> = f
                    .tokens
                    .iter()
                    .zip(&f.logprobs)
                    .enumerate()
                    .map(|(j, (&id, &lp))| {
                        let mut e = entry(id, lp);
                        e["top_logprobs"] = f
                            .top
                            .get(j)
                            .map_or(&[][..], Vec::as_slice)
                            .iter()
                            .map(|&(a, alp)| entry(a, alp))
                            .collect();
                        e
                    })
                    .collect();
                json!({"content": content})
            });
            let mut choice = json!({
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            });
            if sm.return_token_ids {
                choice["token_ids"] = json!(f.tokens);
            }
            choice
        })
        .collect();
    let prompt_tokens = ids.len() * sm.n;
    Ok((
        json!({
            "id": s.next_id("chatcmpl"),
            "object": "chat.completion",
            "created": api::now(),
            "model": s.name,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
            "weight_version": done.version,
        }),
        done.version,
    ))
}

/// OpenAI's `usage` object.
fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens})
}

/// `POST /update_weights_from_disk {"model_path", "weight_version"?}`.
async fn update_weights(s: &Server, body: &[u8]) -> Result<(Value, String), ApiError> {
    let m = api::object(body)?;
    let path = match m.get("model_path") {
        Some(Value::String(p)) if !p.is_empty() => PathBuf::from(p),
        _ => {
            return Err(ApiError::invalid(
                "model_path",
                "model_path must be a directory",
            ));
        }
    };
    let asked = match m.get("weight_version") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(Value::Number(v)) => Some(v.to_string()),
        Some(v) => {
            return Err(ApiError::invalid(
                "weight_version",
                format!("weight_version must be a string or a number, got {v}"),
            ));
        }
    };
    if m.get("abort_all_requests").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            "abort_all_requests",
            "abort_all_requests is not supported: running requests finish on the old weights",
        ));
    }
    // One reload at a time; generation goes on while the files load.
    let _one = s.reload.lock().await;
    let (config, device, pad) = (s.config.clone(), s.device.clone(), s.tok.pad_id());
    let load_path = path.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        super::model::load_weights(&load_path, &config, &device, pad)
    })
    .await
    .map_err(|e| ApiError::new(500, "server_error", e.to_string()))?;
    let (model, recorded) = match loaded {
        Ok(x) => x,
        Err(e) => {
            s.metrics.reloads.with_label_values(&["failed"]).inc();
            return Err(ApiError::invalid("model_path", format!("{e:#}")));
        }
    };
    let version = asked.unwrap_or_else(|| recorded.to_string());
    let started = Instant::now();
    s.engine
        .swap(model, version.clone())
        .await
        .map_err(|e| ApiError::new(500, "server_error", e))?;
    s.metrics.reloads.with_label_values(&["ok"]).inc();
    eprintln!(
        "gradus serve: weight version {version} from {} (swapped {:.2} s after loading)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((
        json!({
            "success": true,
            "message": format!("serving weight version {version} from {}", path.display()),
            "weight_version": version,
        }),
        version,
    ))
}

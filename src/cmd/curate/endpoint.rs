//! `gradus curate --endpoint URL --model NAME`: K samples per prompt from any
//! OpenAI-compatible server (vLLM, SGLang, `gradus serve`), as text.
//!
//! A reference model is not gradus's policy: its tokenizer and chat template
//! are the server's, so prompts go as text (a user message to
//! `/v1/chat/completions`, or raw to `/v1/completions`) and the answers come
//! back as text for the graders. One request per prompt asks for all K
//! samples (`n`), up to `concurrency` requests in flight. Each request's seed
//! is derived from `--seed`, the prompt id and the attempts already recorded
//! for the model, so a rerun reproduces its samples where the server honours
//! seeds, and a second run with the same model draws fresh ones instead of
//! counting the same samples twice. A busy or failing server (429, 5xx, a
//! dropped connection, a timeout) is retried with backoff until `give_up`;
//! any other refusal stops curation with the server's message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gradus_actors::data::import::fields::fnv1a64;
use gradus_sandbox::service::http::Pool;
use hyper::body::Bytes;
use serde_json::{Value, json};

/// Which OpenAI route the prompts go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `/v1/chat/completions`, the prompt as one user message (the server
    /// applies the model's chat template).
    Chat,
    /// `/v1/completions`, the prompt text as it is.
    Completions,
}

/// How the server is asked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The served model's name (`model` in every request).
    pub model: String,
    /// Route.
    pub api: Api,
    /// `max_tokens`.
    pub max_tokens: usize,
    /// `temperature`.
    pub temperature: f32,
    /// `top_p`.
    pub top_p: f32,
    /// Base of the per-request seeds.
    pub seed: u64,
    /// Requests in flight.
    pub concurrency: usize,
    /// Per request.
    pub timeout: Duration,
    /// How long a prompt's request is retried before curation stops.
    pub give_up: Duration,
}

/// One sampled response.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// The text.
    pub text: String,
    /// Cut at `max_tokens` (`finish_reason = "length"`).
    pub truncated: bool,
}

/// A server and how to ask it.
pub struct Endpoint {
    url: String,
    pool: Arc<Pool>,
    settings: Settings,
}

impl Endpoint {
    /// `url` is `http://HOST:PORT` (optionally ending in `/v1`).
    pub fn new(url: &str, api_key: Option<String>, settings: Settings) -> anyhow::Result<Self> {
        let authority = gradus_actors::generator::remote::authority(url)
            .map_err(|e| anyhow::anyhow!("--endpoint {url}: {e}"))?;
        anyhow::ensure!(settings.concurrency >= 1, "--concurrency must be ≥ 1");
        Ok(Self {
            url: url.to_string(),
            pool: Arc::new(Pool::new(&authority, api_key)),
            settings,
        })
    }

    /// The served model's name.
    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// `k` samples for each `(id, prompt, attempts already recorded)`, in order.
    pub async fn sample(
        &self,
        prompts: Vec<(String, String, u64)>,
        k: usize,
    ) -> Result<Vec<Vec<Sampled>>, String> {
        let gate = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let n = prompts.len();
        for (i, (id, prompt, attempts)) in prompts.into_iter().enumerate() {
            let seed = fnv1a64(format!("{}\0{id}\0{attempts}", self.settings.seed).as_bytes())
                & 0x7fff_ffff_ffff_ffff;
            let body = self.body(&prompt, k, seed);
            let (pool, gate) = (self.pool.clone(), gate.clone());
            let (settings, url) = (self.settings.clone(), self.url.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                let r = ask(&pool, &settings, body, k)
                    .await
                    .map_err(|e| format!("{url}: prompt {id}: {e}"));
                (i, r)
            });
        }
        let mut out = vec![Vec::new(); n];
        while let Some(joined) = tasks.join_next().await {
            let (i, r) = joined.map_err(|e| format!("a request task failed: {e}"))?;
            out[i] = r?;
        }
        Ok(out)
    }

    fn body(&self, prompt: &str, k: usize, seed: u64) -> Bytes {
        let s = &self.settings;
        let mut v = json!({
            "model": s.model,
            "n": k,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": seed,
        });
        match s.api {
            Api::Chat => v["messages"] = json!([{"role": "user", "content": prompt}]),
            Api::Completions => v["prompt"] = json!(prompt),
        }
        Bytes::from(v.to_string())
    }
}

/// One prompt's request, retried while the server is busy or failing.
async fn ask(pool: &Pool, s: &Settings, body: Bytes, k: usize) -> Result<Vec<Sampled>, String> {
    let path = match s.api {
        Api::Chat => "/v1/chat/completions",
        Api::Completions => "/v1/completions",
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        let why = match pool.call("POST", path, body.clone(), s.timeout).await {
            Ok((status, _, bytes)) if status.is_success() => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{path} answered with invalid JSON: {e}"))?;
                return parse(&v, s.api, k);
            }
            Ok((status, headers, bytes)) if status.as_u16() == 429 || status.is_server_error() => {
                if let Some(secs) = gradus_sandbox::service::http::retry_after(&headers) {
                    backoff = Duration::from_secs_f64(secs.clamp(0.05, 30.0));
                }
                format!("{path} answered {status}: {}", message(&bytes))
            }
            Ok((status, _, bytes)) => {
                return Err(format!("{path} answered {status}: {}", message(&bytes)));
            }
            Err(e) => {
                pool.clear();
                e
            }
        };
        if started.elapsed() + backoff > s.give_up {
            return Err(format!("gave up after {:.0?}: {why}", started.elapsed()));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The error object's message, or the body's start.
fn message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["error"]["message"].as_str().or(v["message"].as_str()) {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// The `k` choices of an answer, by their `index`.
fn parse(v: &Value, api: Api, k: usize) -> Result<Vec<Sampled>, String> {
    let choices = v["choices"]
        .as_array()
        .ok_or("the answer has no `choices` array")?;
    let mut out: Vec<Option<Sampled>> = vec![None; k];
    for (j, c) in choices.iter().enumerate() {
        let index = c["index"].as_u64().map_or(j, |i| i as usize);
        let text = match api {
            Api::Chat => c["message"]["content"].as_str().unwrap_or_default(),
            Api::Completions => c["text"]
                .as_str()
                .ok_or_else(|| format!("choices[{j}] has no `text`"))?,
        };
        let slot = out
            .get_mut(index)
            .ok_or_else(|| format!("choices[{j}] has index {index}, but {k} were asked for"))?;
        if slot.is_some() {
            return Err(format!("choices[{j}]: index {index} answered twice"));
        }
        *slot = Some(Sampled {
            text: text.to_string(),
            truncated: c["finish_reason"].as_str() == Some("length"),
        });
    }
    out.into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| format!("{k} samples asked for (n = {k}), choice {i} missing"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_by_index_and_bad_ones_are_named() {
        let v = json!({"choices": [
            {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"},
            {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"},
        ]});
        let got = parse(&v, Api::Chat, 2).unwrap();
        assert_eq!(
            got[0],
            Sampled {
                text: "a".into(),
                truncated: false
            }
        );
        assert_eq!(
            got[1],
            Sampled {
                text: "b".into(),
                truncated: true
            }
        );
        let e = parse(&v, Api::Chat, 3).unwrap_err();
        assert!(e.contains("choice 2 missing"), "{e}");
        let v = json!({"choices": [{"index": 0, "text": "x"}, {"index": 0, "text": "y"}]});
        assert!(
            parse(&v, Api::Completions, 2)
                .unwrap_err()
                .contains("answered twice")
        );
        assert!(
            parse(&json!({}), Api::Completions, 1)
                .unwrap_err()
                .contains("choices")
        );
        assert_eq!(
            message(br#"{"error": {"message": "bad max_tokens"}}"#),
            "bad max_tokens"
        );
    }
}

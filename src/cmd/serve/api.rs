//! The OpenAI-compatible wire format of `gradus serve`: request bodies
//! checked field by field (an invalid one is a 400 naming its field, and
//! never reaches the compute thread), and the response objects.
//!
//! Accepted beyond OpenAI's own fields, as vLLM does: `stop_token_ids`,
//! `ignore_eos`, `return_tokens_as_token_ids` (tokens in log-probs spelt
//! `token_id:N`) and `return_token_ids` (each choice's `token_ids`, and
//! `prompt_token_ids`). Every response also says `weight_version`, the
//! version of the weights that generated it. Fields gradus does not
//! implement (penalties, `logit_bias`, `best_of`, streaming) are refused by
//! name when set to anything but their neutral value; other unknown fields
//! are ignored, as OpenAI's servers ignore them.

use gradus_actors::data::import::fields::type_name as kind;
use serde_json::{Map, Value, json};

/// Most sequences (prompts × `n`) one request may ask for.
pub const MAX_SEQUENCES: usize = 256;
/// Most alternatives per token in log-probs (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// An error answer: HTTP status and OpenAI's error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.to_string()),
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.status,
        }})
    }
}

/// A prompt as sent: text, or token ids used as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// Sampling fields shared by both endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub n: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// Alternatives per generated token; `None`: no log-probs at all.
    pub logprobs: Option<usize>,
    pub tokens_as_ids: bool,
    pub return_token_ids: bool,
}

/// A checked `/v1/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompts: Vec<Prompt>,
    pub echo: bool,
    pub sampling: Sampling,
}

/// A checked `/v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Value,
    pub sampling: Sampling,
}

/// The body as a JSON object, or a 400.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_request_error",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::new(
            400,
            "invalid_request_error",
            format!("the body must be a JSON object, got {}", kind(&other)),
        )),
    }
}

/// Field `name`, treating JSON null as absent.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).filter(|v| !v.is_null())
}

fn uint(m: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match field(m, name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("{name} must be a non-negative integer, got {v}"),
            )
        }),
    }
}

fn number(m: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match field(m, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("{name} must be a number, got {v}"))),
    }
}

fn boolean(m: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match field(m, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::invalid(
            name,
            format!("{name} must be a boolean, got {v}"),
        )),
    }
}

fn model(m: &Map<String, Value>, served: &str) -> Result<Option<String>, ApiError> {
    match field(m, "model") {
        None => Ok(None),
        Some(Value::String(s)) if s == served => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(ApiError::invalid(
            "model",
            format!("the model `{s}` does not exist; this server serves `{served}`"),
        )),
        Some(v) => Err(ApiError::invalid(
            "model",
            format!("model must be a string, got {v}"),
        )),
    }
}

/// Fields gradus does not implement: refused unless neutral.
fn unsupported(m: &Map<String, Value>) -> Result<(), ApiError> {
    if boolean(m, "stream")? {
        return Err(ApiError::invalid(
            "stream",
            "streaming is not supported; send stream: false",
        ));
    }
    for name in ["presence_penalty", "frequency_penalty"] {
        if number(m, name)?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::invalid(name, format!("{name} is not supported")));
        }
    }
    if number(m, "repetition_penalty")?.is_some_and(|x| x != 1.0) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            "repetition_penalty is not supported",
        ));
    }
    if field(m, "logit_bias").is_some_and(|v| v.as_object().is_none_or(|o| !o.is_empty())) {
        return Err(ApiError::invalid(
            "logit_bias",
            "logit_bias is not supported",
        ));
    }
    if uint(m, "best_of")?.is_some_and(|b| b > 1) {
        return Err(ApiError::invalid("best_of", "best_of is not supported"));
    }
    if number(m, "min_p")?.is_some_and(|x| x != 0.0) {
        return Err(ApiError::invalid("min_p", "min_p is not supported"));
    }
    if let Some(k) = field(m, "top_k")
        && k.as_i64().is_none_or(|k| k > 0)
    {
        return Err(ApiError::invalid(
            "top_k",
            "top_k is not supported (use top_p)",
        ));
    }
    Ok(())
}

/// The sampling fields; `max_tokens_names` lists the accepted spellings of
/// the length limit, the first being the one errors name.
fn sampling(
    m: &Map<String, Value>,
    max_tokens_names: &[&str],
    logprobs: Option<usize>,
) -> Result<Sampling, ApiError> {
    unsupported(m)?;
    let main = max_tokens_names[0];
    let mut max_tokens = None;
    for name in max_tokens_names {
        if let Some(v) = field(m, name) {
            let n = v.as_i64().ok_or_else(|| {
                ApiError::invalid(name, format!("{name} must be an integer, got {v}"))
            })?;
            if n < 1 {
                return Err(ApiError::invalid(
                    name,
                    format!("{name} must be at least 1, got {n}"),
                ));
            }
            max_tokens = Some(n as usize);
        }
    }
    let max_tokens = max_tokens.ok_or_else(|| {
        ApiError::invalid(
            main,
            format!("{main} is required (the response length limit)"),
        )
    })?;
    let n = uint(m, "n")?.unwrap_or(1) as usize;
    if n == 0 || n > MAX_SEQUENCES {
        return Err(ApiError::invalid(
            "n",
            format!("n must be in 1..={MAX_SEQUENCES}, got {n}"),
        ));
    }
    let temperature = number(m, "temperature")?.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be ≥ 0, got {temperature}"),
        ));
    }
    let top_p = number(m, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let seed = match field(m, "seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|s| s as u64))
                .ok_or_else(|| {
                    ApiError::invalid("seed", format!("seed must be an integer, got {v}"))
                })?,
        ),
    };
    let stop = match field(m, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "stop must be a string or a list of strings")
            })?,
        Some(v) => {
            return Err(ApiError::invalid(
                "stop",
                format!("stop must be a string or a list of strings, got {v}"),
            ));
        }
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "a stop string must not be empty"));
    }
    let stop_token_ids = match field(m, "stop_token_ids") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid(
                    "stop_token_ids",
                    "stop_token_ids must be a list of token ids",
                )
            })?,
        Some(v) => {
            return Err(ApiError::invalid(
                "stop_token_ids",
                format!("stop_token_ids must be a list of token ids, got {v}"),
            ));
        }
    };
    Ok(Sampling {
        n,
        max_tokens,
        temperature: temperature as f32,
        top_p: top_p as f32,
        seed,
        stop,
        stop_token_ids,
        ignore_eos: boolean(m, "ignore_eos")?,
        logprobs,
        tokens_as_ids: boolean(m, "return_tokens_as_token_ids")?,
        return_token_ids: boolean(m, "return_token_ids")?,
    })
}

/// Checks a `/v1/completions` body.
pub fn completion(m: &Map<String, Value>, served: &str) -> Result<CompletionRequest, ApiError> {
    let model = model(m, served)?;
    let logprobs = match uint(m, "logprobs")? {
        Some(k) if k as usize > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                "logprobs",
                format!("logprobs must be in 0..={MAX_TOP_LOGPROBS}, got {k}"),
            ));
        }
        k => k.map(|k| k as usize),
    };
    let prompts = prompts(field(m, "prompt"))?;
    let sampling = sampling(m, &["max_tokens"], logprobs)?;
    if prompts.len() * sampling.n > MAX_SEQUENCES {
        return Err(ApiError::invalid(
            "n",
            format!(
                "{} prompts × n = {} asks for more than {MAX_SEQUENCES} sequences",
                prompts.len(),
                sampling.n
            ),
        ));
    }
    Ok(CompletionRequest {
        model,
        prompts,
        echo: boolean(m, "echo")?,
        sampling,
    })
}

fn prompts(v: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    let bad = |why: String| ApiError::invalid("prompt", why);
    let ids = |a: &[Value]| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("a token-id prompt must hold non-negative integers only".into()))
    };
    let out = match v {
        None => return Err(bad("prompt is required".into())),
        Some(Value::String(s)) => vec![Prompt::Text(s.clone())],
        Some(Value::Array(a)) if a.is_empty() => return Err(bad("prompt is empty".into())),
        Some(Value::Array(a)) if a[0].is_number() => vec![Prompt::Ids(ids(a)?)],
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(Prompt::Text(s.clone())),
                Value::Array(x) => Ok(Prompt::Ids(ids(x)?)),
                other => Err(bad(format!(
                    "a prompt in a list must be a string or a list of token ids, got {}",
                    kind(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "prompt must be a string, a list of token ids, or a list of either, got {}",
                kind(other)
            )));
        }
    };
    if out.iter().any(|p| match p {
        Prompt::Text(s) => s.is_empty(),
        Prompt::Ids(i) => i.is_empty(),
    }) {
        return Err(bad("a prompt is empty".into()));
    }
    Ok(out)
}

/// Checks a `/v1/chat/completions` body.
pub fn chat(m: &Map<String, Value>, served: &str) -> Result<ChatRequest, ApiError> {
    let model = model(m, served)?;
    let messages = match field(m, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "messages is empty")),
        None => return Err(ApiError::invalid("messages", "messages is required")),
        Some(v) => {
            return Err(ApiError::invalid(
                "messages",
                format!("messages must be a list, got {}", kind(v)),
            ));
        }
    };
    for (i, msg) in messages.iter().enumerate() {
        let role = msg.get("role").and_then(Value::as_str);
        if role.is_none() {
            return Err(ApiError::invalid(
                &format!("messages[{i}].role"),
                "every message needs a string role",
            ));
        }
        match msg.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("messages[{i}].content"),
                    "content must be a string (content parts are not supported)",
                ));
            }
        }
    }
    let top = uint(m, "top_logprobs")?.unwrap_or(0) as usize;
    if top > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            "top_logprobs",
            format!("top_logprobs must be in 0..={MAX_TOP_LOGPROBS}, got {top}"),
        ));
    }
    let logprobs = boolean(m, "logprobs")?.then_some(top);
    if top > 0 && logprobs.is_none() {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    Ok(ChatRequest {
        model,
        messages: Value::Array(messages.clone()),
        sampling: sampling(m, &["max_tokens", "max_completion_tokens"], logprobs)?,
    })
}

/// The 400 for a prompt too long for the model's context.
pub fn too_long(prompt_len: usize, max_tokens: usize, max_len: usize) -> ApiError {
    ApiError::invalid(
        "prompt",
        format!(
            "this model's context is {max_len} tokens, but {prompt_len} prompt tokens and \
             max_tokens {max_tokens} need {}",
            prompt_len + max_tokens - 1
        ),
    )
}

/// Seconds since the Unix epoch, for `created`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<CompletionRequest, ApiError> {
        completion(&object(body.as_bytes())?, "m")
    }

    fn param(r: Result<CompletionRequest, ApiError>) -> String {
        r.unwrap_err().param.unwrap_or_default()
    }

    #[test]
    fn completion_bodies_parse_with_their_defaults() {
        let r = parse(r#"{"model":"m","prompt":[1,2,3],"max_tokens":4}"#).unwrap();
        assert_eq!(r.prompts, vec![Prompt::Ids(vec![1, 2, 3])]);
        assert_eq!(r.sampling.n, 1);
        assert_eq!(r.sampling.temperature, 1.0);
        assert_eq!(r.sampling.logprobs, None);
        let r = parse(
            r#"{"prompt":["a",[5]],"max_tokens":2,"n":3,"logprobs":0,"seed":-1,
                "stop":"x","temperature":0,"return_tokens_as_token_ids":true,"echo":true,
                "presence_penalty":0,"stream":false,"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(
            r.prompts,
            vec![Prompt::Text("a".into()), Prompt::Ids(vec![5])]
        );
        assert_eq!(r.sampling.logprobs, Some(0));
        assert_eq!(r.sampling.seed, Some(u64::MAX));
        assert_eq!(r.sampling.stop, vec!["x".to_string()]);
        assert!(r.echo && r.sampling.tokens_as_ids);
    }

    #[test]
    fn every_invalid_field_is_named() {
        for (body, field) in [
            (r#"{"prompt":"a"}"#, "max_tokens"),
            (r#"{"prompt":"a","max_tokens":-1}"#, "max_tokens"),
            (r#"{"prompt":"a","max_tokens":0}"#, "max_tokens"),
            (r#"{"prompt":"a","max_tokens":"3"}"#, "max_tokens"),
            (r#"{"model":"other","prompt":"a","max_tokens":1}"#, "model"),
            (r#"{"model":3,"prompt":"a","max_tokens":1}"#, "model"),
            (r#"{"max_tokens":1}"#, "prompt"),
            (r#"{"prompt":[],"max_tokens":1}"#, "prompt"),
            (r#"{"prompt":"","max_tokens":1}"#, "prompt"),
            (r#"{"prompt":[1,-2],"max_tokens":1}"#, "prompt"),
            (r#"{"prompt":{"a":1},"max_tokens":1}"#, "prompt"),
            (r#"{"prompt":"a","max_tokens":1,"n":0}"#, "n"),
            (r#"{"prompt":"a","max_tokens":1,"n":1000}"#, "n"),
            (
                r#"{"prompt":"a","max_tokens":1,"temperature":-1}"#,
                "temperature",
            ),
            (r#"{"prompt":"a","max_tokens":1,"top_p":0}"#, "top_p"),
            (r#"{"prompt":"a","max_tokens":1,"top_p":1.5}"#, "top_p"),
            (r#"{"prompt":"a","max_tokens":1,"logprobs":21}"#, "logprobs"),
            (
                r#"{"prompt":"a","max_tokens":1,"logprobs":true}"#,
                "logprobs",
            ),
            (r#"{"prompt":"a","max_tokens":1,"stop":[1]}"#, "stop"),
            (r#"{"prompt":"a","max_tokens":1,"stop":""}"#, "stop"),
            (
                r#"{"prompt":"a","max_tokens":1,"stop_token_ids":[-1]}"#,
                "stop_token_ids",
            ),
            (r#"{"prompt":"a","max_tokens":1,"stream":true}"#, "stream"),
            (r#"{"prompt":"a","max_tokens":1,"echo":"yes"}"#, "echo"),
            (r#"{"prompt":"a","max_tokens":1,"seed":1.5}"#, "seed"),
            (
                r#"{"prompt":"a","max_tokens":1,"frequency_penalty":1}"#,
                "frequency_penalty",
            ),
            (
                r#"{"prompt":"a","max_tokens":1,"logit_bias":{"1":5}}"#,
                "logit_bias",
            ),
            (r#"{"prompt":"a","max_tokens":1,"best_of":2}"#, "best_of"),
            (r#"{"prompt":"a","max_tokens":1,"top_k":5}"#, "top_k"),
            (r#"{"prompt":["a","b"],"max_tokens":1,"n":200}"#, "n"),
        ] {
            assert_eq!(param(parse(body)), field, "{body}");
        }
        for body in ["", "{", "[1]", "null", "\u{0}"] {
            let e = object(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
        }
    }

    #[test]
    fn chat_bodies_are_checked() {
        let m = |b: &str| chat(&object(b.as_bytes()).unwrap(), "m");
        let ok = m(
            r#"{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":3,
                      "logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap();
        assert_eq!(ok.sampling.max_tokens, 3);
        assert_eq!(ok.sampling.logprobs, Some(2));
        for (body, field) in [
            (r#"{"max_tokens":1}"#, "messages"),
            (r#"{"messages":[],"max_tokens":1}"#, "messages"),
            (
                r#"{"messages":[{"content":"x"}],"max_tokens":1}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"text"}]}],"max_tokens":1}"#,
                "messages[0].content",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":1,"top_logprobs":2}"#,
                "top_logprobs",
            ),
        ] {
            assert_eq!(m(body).unwrap_err().param.as_deref(), Some(field), "{body}");
        }
    }
}

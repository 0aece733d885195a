//! `gradus generate`: sample from a model (a Hugging Face checkpoint
//! directory, a run directory or one of its checkpoints) for a JSONL file of
//! prompts, with the same sampler training uses.
//!
//! Input rows (one JSON object per line; blank lines are skipped):
//! `{"id", "prompt"}`, `"prompt"` being a string (one user turn, after the
//! `--system` turn if given) or a list of `{"role", "content"}` messages as
//! verl's datasets ship them. A Hugging Face model renders them with its own
//! chat template (`--no-chat-template`: a string prompt is encoded as is,
//! with only what the tokenizer's post-processor adds). One output line per
//! row, in input order: `id`, `tokens` (generated ids, the stop token
//! included), `text` (decoded without special tokens), `logprobs` (one per
//! token, under the temperature-scaled softmax) and `finish_reason`
//! (`"stop"` or `"length"`). A malformed row is reported on stderr as
//! `file:line: problem` and set aside; the command then exits with status 2
//! after generating for the rest.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use gradus_policy::{ComputeConfig, SamplingConfig, Tokenizer};
use rand::SeedableRng;
use serde_json::{Value, json};

use super::model::Loaded;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face checkpoint directory (config.json, safetensors,
    /// tokenizer.json), a gradus run directory, or one of its checkpoints.
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL file of {"id", "prompt"} rows.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Where to write one JSON line per prompt (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Most tokens generated per prompt.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Softmax temperature, 0 meaning greedy (default: the checkpoint's
    /// generation_config.json, else 1).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass (default: the checkpoint's generation_config.json, else 1).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Encode string prompts as they are instead of through the chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// A system turn before every string prompt (chat template only).
    #[arg(long)]
    pub system: Option<String>,
    /// Prompts sampled together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Exit status when some rows were malformed (the rest were still generated).
const EXIT_MALFORMED: u8 = 2;

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device = gradus_policy::device::device(&ComputeConfig {
        device: a.device.clone(),
        threads: 0,
        ..Default::default()
    })
    .context("--device")?;
    let loaded = super::model::load(
        &a.model,
        &device,
        "generate",
        a.no_chat_template,
        a.system.clone(),
    )?;
    let defaults = loaded.hf().map(|t| t.generation_defaults().clone());
    let sampling = SamplingConfig {
        temperature: a
            .temperature
            .or_else(|| defaults.as_ref()?.temperature.map(|t| t as f32))
            .unwrap_or(1.0),
        top_p: a
            .top_p
            .or_else(|| defaults.as_ref()?.top_p.map(|t| t as f32))
            .unwrap_or(1.0),
        max_new_tokens: a.max_tokens,
        stop_tokens: loaded.tokenizer().stop_ids(),
    };
    sampling.validate().context("sampling options")?;

    let file =
        File::open(&a.prompts).with_context(|| format!("opening {}", a.prompts.display()))?;
    let mut rows: Vec<(Value, Vec<u32>)> = Vec::new();
    let mut malformed = 0usize;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", a.prompts.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match prompt_ids(&line, &loaded, &a, loaded.model.max_len()) {
            Ok(row) => rows.push(row),
            Err(why) => {
                malformed += 1;
                eprintln!("{}:{}: {why}", a.prompts.display(), i + 1);
            }
        }
    }

    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let pad = loaded.tokenizer().pad_id();
    let mut tokens_out = 0usize;
    let started = std::time::Instant::now();
    for chunk in rows.chunks(a.batch) {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let responses = gradus_policy::sample(&loaded.model, &prompts, &sampling, pad, &mut rng)
            .context("sampling")?;
        for ((id, _), r) in chunk.iter().zip(responses) {
            tokens_out += r.tokens.len();
            let line = json!({
                "id": id,
                "text": loaded.tokenizer().decode(&r.tokens),
                "tokens": r.tokens,
                "logprobs": r.logprobs,
                "finish_reason": if r.truncated { "length" } else { "stop" },
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "gradus generate: {} prompts, {tokens_out} tokens in {secs:.1} s ({:.1} tokens/s){}",
        rows.len(),
        tokens_out as f64 / secs.max(1e-9),
        if malformed > 0 {
            format!("; {malformed} malformed rows set aside")
        } else {
            String::new()
        }
    );
    Ok(if malformed > 0 {
        ExitCode::from(EXIT_MALFORMED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One row's id and prompt ids, or why the row cannot be used.
fn prompt_ids(
    line: &str,
    loaded: &Loaded,
    a: &Args,
    max_len: usize,
) -> Result<(Value, Vec<u32>), String> {
    let row: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = row.as_object() else {
        return Err("not a JSON object".into());
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let ids = match obj.get("prompt") {
        Some(Value::String(text)) => loaded
            .tokenizer()
            .encode_prompt(text)
            .map_err(|e| format!("prompt: {e}"))?,
        Some(Value::Array(messages)) => {
            let Some(hf) = loaded.hf() else {
                return Err("prompt: a message list needs a model with a chat template".into());
            };
            if a.no_chat_template {
                return Err(
                    "prompt: a message list cannot be encoded with --no-chat-template".into(),
                );
            }
            for (i, m) in messages.iter().enumerate() {
                if m.get("role").and_then(Value::as_str).is_none() {
                    return Err(format!("prompt[{i}]: a message needs a string \"role\""));
                }
            }
            let chat = hf
                .chat_template()
                .ok_or("prompt: the model has no chat template")?;
            let text = chat
                .render(&Value::Array(messages.clone()), true)
                .map_err(|e| format!("prompt: {e}"))?;
            hf.encode(&text).map_err(|e| format!("prompt: {e}"))?
        }
        Some(other) => {
            return Err(format!(
                "prompt: {other} is neither a string nor a list of messages"
            ));
        }
        None => return Err("no \"prompt\" field".into()),
    };
    if ids.is_empty() {
        return Err("prompt: encodes to no tokens".into());
    }
    let needed = ids.len() + a.max_tokens - 1;
    if needed > max_len {
        return Err(format!(
            "prompt: {} tokens + --max-tokens {} exceed the model's {max_len} positions",
            ids.len(),
            a.max_tokens
        ));
    }
    Ok((id, ids))
}

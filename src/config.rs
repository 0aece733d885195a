//! The run config: one TOML file, one table per part.
//!
//! ```toml
//! [run]         # seed, batch size, checkpoints, HTTP address       (this module)
//! [data]        # the built-in synthetic curriculum or JSONL files  (this module)
//! [tokenizer]   # the character tokenizer's alphabet                (gradus-policy)
//! [model]       # the transformer's shape                           (gradus-policy)
//! [optimizer]   # AdamW, warmup, clipping                           (gradus-policy)
//! [compute]     # device and threads                                (gradus-policy)
//! [grader]      # math grading                                      (gradus-math)
//! [sandbox]     # code execution                                    (gradus-sandbox)
//! [supervisor]  # restarts                                          (gradus-actors)
//! [generator]   # local sampling or OpenAI-compatible servers       (gradus-actors)
//! [curriculum]  # buckets and stages                                (gradus-actors)
//! ```
//!
//! Two layers, as everywhere in gradus: serde with `deny_unknown_fields` reads
//! what is written (typos fail loudly), then validation checks values. Every
//! problem found is reported, each as `file:line: field: message`, not just the
//! first. The curriculum validates itself (it knows its field paths); the other
//! tables are deserialised here and located through the TOML spans.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gradus_actors::curriculum::config::CurriculumConfig;
use gradus_actors::generator::remote::{Backend, GeneratorConfig, Reload};
use gradus_actors::supervisor::RestartPolicy;
use gradus_math::GradeConfig;
use gradus_policy::{CharTokenizerConfig, ComputeConfig, ModelConfig, OptimizerConfig};
use gradus_sandbox::SandboxConfig;
use serde::Deserialize;

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Seed of the model init, the sampler and the generator. Default 1.
    pub seed: u64,
    /// Prompts per learner step (each sampled `group_size` times). Default 8.
    pub batch_prompts: usize,
    /// Learner steps between checkpoints. Default 25.
    pub checkpoint_every: u64,
    /// Checkpoints kept (older ones are deleted). Default 3.
    pub keep_checkpoints: usize,
    /// Consecutive failed checkpoint writes (a full disk, an I/O error, a
    /// read-only directory) after which the run stops; each failure before
    /// that is logged, counted and retried at the next interval. Default 3.
    pub max_checkpoint_failures: u32,
    /// Rotate a log (`metrics.jsonl` → `metrics.jsonl.N`) once it is larger
    /// than this many MiB, checked at each checkpoint (0: never). Default 0.
    pub rotate_logs_mb: f64,
    /// Rotated files kept per log (the oldest are deleted). Default 5.
    pub rotated_logs_kept: usize,
    /// Address of /metrics, /healthz and /status; port 0 picks a free port. Default 127.0.0.1:9464.
    pub http: SocketAddr,
    /// Reward code by the fraction of tests passed instead of all-or-nothing. Default false.
    pub partial_credit: bool,
    /// Longest wait for one actor call, seconds, before it counts as failed. Default 600.
    pub call_timeout_s: f64,
    /// Responses per bucket behind the displayed pass rates. Default 128.
    pub display_window: u32,
    /// Stop after this many learner steps even if stages remain (0: no limit). Default 0.
    pub max_steps: u64,
    /// Sample budget: stop once this many responses have been generated and
    /// graded (0: no limit). `gradus experiment` gives every arm the same budget. Default 0.
    pub max_samples: u64,
    /// `on_policy` (generate, grade, update, publish, in turn: the papers'
    /// setting) or `async` (the next batch is generated while the learner
    /// updates). Default on_policy.
    pub mode: Mode,
    /// Async mode: generation runs on weights at most this many policy versions
    /// behind the learner; older batches are dropped and counted. Default 1.
    pub max_staleness: u64,
}

/// `[run].mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    OnPolicy,
    Async,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            seed: 1,
            batch_prompts: 8,
            checkpoint_every: 25,
            keep_checkpoints: 3,
            max_checkpoint_failures: 3,
            rotate_logs_mb: 0.0,
            rotated_logs_kept: 5,
            http: SocketAddr::from(([127, 0, 0, 1], 9464)),
            partial_credit: false,
            call_timeout_s: 600.0,
            display_window: 128,
            max_steps: 0,
            max_samples: 0,
            mode: Mode::OnPolicy,
            max_staleness: 1,
        }
    }
}

/// `[eval]`: held-out measurement of every bucket, written to eval.jsonl at
/// the start, every `every` steps, at every stage boundary and at the end. The same problems
/// are used each time (a fixed sample of each bucket), with the same length
/// limit for every stage, so runs with different curricula compare.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Steps between evaluations (0: only at the start, stage boundaries and the end). Default 100.
    pub every: u64,
    /// Problems per bucket (0 turns evaluation off). Default 24.
    pub per_bucket: usize,
    /// Responses per problem. Default 2.
    pub samples: usize,
    /// Sampling temperature (0: greedy). Default 1.0.
    pub temperature: f64,
    /// Response length limit in tokens (0: the largest of the stages'). Default 0.
    pub max_response_tokens: u32,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            every: 100,
            per_bucket: 24,
            samples: 2,
            temperature: 1.0,
            max_response_tokens: 0,
        }
    }
}

/// `[data]`: where problems come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The built-in synthetic curriculum: this many problems per bucket.
    #[serde(default)]
    pub builtin_per_bucket: Option<usize>,
    /// Dataset files, JSONL or parquet (gradus format or a public shape, detected per file).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Refuse to start when more than this fraction of rows is rejected. Default 0.05.
    #[serde(default = "default_reject_fraction")]
    pub max_reject_fraction: f64,
    /// Keep at most this many test cases per code problem, those with the longest
    /// inputs (as rllm does for DeepCoder). None: every test.
    #[serde(default)]
    pub max_tests_per_problem: Option<usize>,
    /// `[data.templates]`: answer-format instructions for rows that carry none.
    #[serde(default)]
    pub templates: gradus_actors::data::Templates,
}

fn default_reject_fraction() -> f64 {
    0.05
}

/// The whole file as written (the curriculum is read by its own loader).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    run: RunSection,
    data: DataSection,
    #[serde(default)]
    eval: EvalSection,
    /// Absent: the demo alphabet (and, with `[model] hf`, the checkpoint's tokenizer).
    tokenizer: Option<CharTokenizerConfig>,
    model: ModelSection,
    #[serde(default)]
    optimizer: OptimizerConfig,
    #[serde(default)]
    compute: ComputeConfig,
    #[serde(default)]
    grader: GradeConfig,
    #[serde(default)]
    sandbox: SandboxConfig,
    #[serde(default)]
    supervisor: RestartPolicy,
    #[serde(default)]
    generator: GeneratorConfig,
    #[expect(
        dead_code,
        reason = "read and validated by CurriculumConfig::from_toml_str"
    )]
    curriculum: toml::Value,
}

/// `[model]` as written: the vocabulary comes from the tokenizer, not the file.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct ModelSection(toml::Table);

/// A validated run config: the only form the runtime sees.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The file it came from, if any.
    pub origin: Option<PathBuf>,
    /// The text it was read from (saved in the run dir, compared on reload).
    pub source: String,
    pub run: RunSection,
    pub data: DataSection,
    pub eval: EvalSection,
    pub tokenizer: CharTokenizerConfig,
    pub model: ModelConfig,
    /// `[model] hf = "DIR or ORG/NAME"`: the checkpoint the run starts from
    /// (then `model` is its config.json's shape).
    pub hf: Option<HfModel>,
    pub optimizer: OptimizerConfig,
    pub compute: ComputeConfig,
    pub grader: GradeConfig,
    pub sandbox: SandboxConfig,
    pub supervisor: RestartPolicy,
    /// `[generator]`: where rollouts are sampled (local or inference servers).
    pub generator: GeneratorConfig,
    pub curriculum: CurriculumConfig,
}

/// A Hugging Face checkpoint as the run's model: `[model] hf`, with
/// `system_prompt` (a system turn before every prompt) and `chat_template`
/// (default true: prompts rendered by the checkpoint's template).
#[derive(Debug, Clone)]
pub struct HfModel {
    /// The checkpoint's directory (a model id resolved in the offline cache).
    pub dir: PathBuf,
    /// Its config.json as the model gradus builds.
    pub config: ModelConfig,
    pub system_prompt: Option<String>,
    pub chat_template: bool,
}

impl HfModel {
    /// The checkpoint's tokenizer, set up as the config says.
    pub fn tokenizer(&self) -> anyhow::Result<gradus_policy::hf::tokenizer::HfTokenizer> {
        let mut t = gradus_policy::hf::tokenizer::HfTokenizer::open(&self.dir)?;
        if !self.chat_template {
            t.use_chat_template(false)?;
        }
        t.set_system_prompt(self.system_prompt.clone());
        Ok(t)
    }
}

impl RunConfig {
    /// The tokenizer the run trains with: the checkpoint's, or the built-in
    /// character tokenizer of `[tokenizer]`.
    pub fn tokenizer(&self) -> anyhow::Result<gradus_policy::hf::tokenizer::AnyTokenizer> {
        use gradus_policy::hf::tokenizer::AnyTokenizer;
        Ok(match &self.hf {
            Some(h) => AnyTokenizer::Hf(Box::new(h.tokenizer()?)),
            None => AnyTokenizer::Char(gradus_policy::CharTokenizer::new(&self.tokenizer)?),
        })
    }
}

/// `[model] hf`: the checkpoint, and the keys that may go with it
/// (`max_len`, `system_prompt`, `chat_template`); any other key of `[model]`
/// is the checkpoint's to say and is refused by name.
fn hf_model(v: &toml::Value, table: &mut toml::Table) -> Result<(HfModel, Option<usize>), String> {
    let Some(name) = v.as_str() else {
        return Err(format!("hf must be a directory or a model id, got {v}"));
    };
    let dir = gradus_policy::hf::resolve(name)
        .map_err(|e| format!("hf names no checkpoint: {}", one_part(&e)))?;
    let hf = gradus_policy::hf::HfConfig::read(&dir)
        .map_err(|e| format!("hf names an unusable checkpoint: {}", one_part(&e)))?;
    let config = hf.model_config();
    let mut bad = Vec::new();
    let max_len = match table.remove("max_len") {
        None => None,
        Some(toml::Value::Integer(n)) if n > 0 && (n as usize) <= config.max_len => {
            Some(n as usize)
        }
        Some(other) => {
            bad.push(format!(
                "max_len must be 1..={} (the checkpoint's max_position_embeddings), got {other}",
                config.max_len
            ));
            None
        }
    };
    let system_prompt = match table.remove("system_prompt") {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(other) => {
            bad.push(format!("system_prompt must be a string, got {other}"));
            None
        }
    };
    let chat_template = match table.remove("chat_template") {
        None => true,
        Some(toml::Value::Boolean(b)) => b,
        Some(other) => {
            bad.push(format!("chat_template must be true or false, got {other}"));
            true
        }
    };
    for k in table.keys() {
        bad.push(format!(
            "{k} is not set with hf (the checkpoint's config.json gives the model's shape)"
        ));
    }
    if !bad.is_empty() {
        return Err(bad.join("; "));
    }
    Ok((
        HfModel {
            dir,
            config,
            system_prompt,
            chat_template,
        },
        max_len,
    ))
}

/// An error as one part of a `; `-joined problem list.
fn one_part(e: &dyn std::fmt::Display) -> String {
    e.to_string().replace("; ", ", ")
}

/// Every problem in a config, each as `file:line: field: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl RunConfig {
    /// Reads and validates the config at `path`.
    pub fn from_path(path: &Path) -> Result<Self, ConfigErrors> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
        Self::from_toml_str(&src, Some(path))
    }

    /// Reads and validates a config from text; `origin` names it in errors.
    pub fn from_toml_str(src: &str, origin: Option<&Path>) -> Result<Self, ConfigErrors> {
        let name = origin.map_or_else(|| "<config>".to_string(), |p| p.display().to_string());
        let mut errors = Vec::new();
        let curriculum = match CurriculumConfig::from_run_toml_str(src, origin) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.extend(e.to_string().lines().map(str::to_string));
                None
            }
        };
        let raw: Option<Raw> = match toml::from_str(src) {
            Ok(r) => Some(r),
            Err(e) => {
                // The curriculum loader already reported errors inside its own table.
                let line = e.span().map(|s| line_of(src, s.start));
                let in_curriculum = e
                    .span()
                    .is_some_and(|s| table_at(src, s.start) == "curriculum");
                if !in_curriculum || curriculum.is_some() {
                    errors.push(located(
                        &name,
                        line,
                        &table_path(src, e.span().map(|s| s.start)),
                        e.message().trim(),
                    ));
                }
                None
            }
        };
        let (Some(raw), Some(curriculum)) = (raw, curriculum) else {
            return Err(ConfigErrors(errors));
        };
        // Each problem at the line of the key it names (`batch_prompts must
        // be ≥ 1`, or serde's "... in `d_model`"), else at the table's header.
        let mut check = |table: &str, r: Result<(), String>| {
            if let Err(msg) = r {
                for part in msg.split("; ") {
                    let (key, text) = key_of(part);
                    match key.and_then(|k| find_key_line(src, table, k).map(|l| (k, l))) {
                        Some((k, line)) => {
                            errors.push(located(&name, Some(line), &format!("{table}.{k}"), &text))
                        }
                        None => {
                            errors.push(located(&name, find_table_line(src, table), table, &text))
                        }
                    }
                }
            }
        };
        let char_tokenizer = raw
            .tokenizer
            .clone()
            .unwrap_or_else(CharTokenizerConfig::demo);
        let mut model_table = raw.model.0.clone();
        let hf = match model_table.remove("hf") {
            None => None,
            Some(v) => {
                let r = hf_model(&v, &mut model_table);
                match r {
                    Ok(h) => Some(h),
                    Err(msg) => {
                        check("model", Err(msg));
                        None
                    }
                }
            }
        };
        let vocab = match &hf {
            Some((h, _)) => {
                // The checkpoint's tokenizer must fit its embedding.
                match h.tokenizer() {
                    Ok(t) => {
                        let v = gradus_policy::Tokenizer::vocab_size(&t);
                        if v > h.config.vocab_size {
                            check(
                                "model",
                                Err(format!(
                                    "hf has a tokenizer of {v} ids but a vocab_size of {}",
                                    h.config.vocab_size
                                )),
                            );
                        }
                    }
                    Err(e) => check(
                        "model",
                        Err(format!(
                            "hf has an unusable tokenizer: {}",
                            one_part(&format!("{e:#}"))
                        )),
                    ),
                }
                if raw.tokenizer.is_some() {
                    check(
                        "tokenizer",
                        Err("not used with model.hf (the checkpoint's tokenizer.json is)".into()),
                    );
                }
                h.config.vocab_size
            }
            None => {
                let tokenizer = gradus_policy::CharTokenizer::new(&char_tokenizer);
                check(
                    "tokenizer",
                    tokenizer.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                );
                tokenizer
                    .as_ref()
                    .map(gradus_policy::Tokenizer::vocab_size)
                    .unwrap_or(0)
            }
        };
        model_table.insert("vocab_size".into(), toml::Value::Integer(vocab as i64));
        let model: Option<ModelConfig> = match &hf {
            Some((h, max_len)) => {
                let mut m = h.config.clone();
                if let Some(n) = max_len {
                    m.max_len = *n;
                }
                Some(m)
            }
            None => match model_table.try_into() {
                Ok(m) => Some(m),
                Err(e) => {
                    check("model", Err(e.to_string().trim().to_string()));
                    None
                }
            },
        };
        if let Some(m) = &model {
            check("model", m.validate().map_err(|e| e.to_string()));
        }
        check(
            "optimizer",
            raw.optimizer.validate().map_err(|e| e.to_string()),
        );
        check("compute", raw.compute.validate().map_err(|e| e.to_string()));
        check("grader", raw.grader.validate().map_err(|e| e.to_string()));
        check("run", validate_run(&raw.run));
        check("data", validate_data(&raw.data));
        check("eval", validate_eval(&raw.eval));
        check("generator", validate_generator(&raw.generator, &raw.run));
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            origin: origin.map(Path::to_path_buf),
            source: src.to_string(),
            run: raw.run,
            data: raw.data,
            eval: raw.eval,
            tokenizer: char_tokenizer,
            model: model.expect("validated above"),
            hf: hf.map(|(h, _)| h),
            optimizer: raw.optimizer,
            compute: raw.compute,
            grader: raw.grader,
            sandbox: raw.sandbox,
            supervisor: raw.supervisor,
            generator: raw.generator,
            curriculum,
        })
    }
}

fn validate_run(r: &RunSection) -> Result<(), String> {
    let mut bad = Vec::new();
    if r.batch_prompts == 0 {
        bad.push("batch_prompts must be ≥ 1".to_string());
    }
    if r.checkpoint_every == 0 {
        bad.push("checkpoint_every must be ≥ 1".into());
    }
    if r.keep_checkpoints == 0 {
        bad.push("keep_checkpoints must be ≥ 1".into());
    }
    if !(r.rotate_logs_mb >= 0.0 && r.rotate_logs_mb.is_finite()) {
        bad.push(format!(
            "rotate_logs_mb must be ≥ 0 (0: never), got {}",
            r.rotate_logs_mb
        ));
    }
    if r.rotate_logs_mb > 0.0 && r.rotated_logs_kept == 0 {
        bad.push("rotated_logs_kept must be ≥ 1 when rotate_logs_mb is set".into());
    }
    if r.max_checkpoint_failures == 0 {
        bad.push("max_checkpoint_failures must be ≥ 1".into());
    }
    if r.call_timeout_s.is_nan() || r.call_timeout_s <= 0.0 {
        bad.push(format!(
            "call_timeout_s must be > 0, got {}",
            r.call_timeout_s
        ));
    }
    if r.display_window == 0 {
        bad.push("display_window must be ≥ 1".into());
    }
    if r.mode == Mode::Async && r.max_staleness == 0 {
        bad.push(
            "max_staleness must be ≥ 1 in async mode (0 is on-policy: mode = \"on_policy\")".into(),
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn validate_generator(g: &GeneratorConfig, run: &RunSection) -> Result<(), String> {
    g.validate()?;
    if g.backend == Backend::Openai && g.reload == Reload::None {
        return Err(
            "reload = \"none\" leaves the servers on their first weights: training needs them \
             to follow the learner (gradus, sglang or vllm)"
                .into(),
        );
    }
    let bound = match run.mode {
        Mode::OnPolicy => 1,
        Mode::Async => run.max_staleness,
    };
    if g.sync_every > bound {
        return Err(format!(
            "sync_every = {} lets rollouts come from weights more than {bound} version(s) old; \
             it must be ≤ {bound} ({})",
            g.sync_every,
            match run.mode {
                Mode::OnPolicy => "on-policy mode syncs after every update",
                Mode::Async => "run.max_staleness",
            }
        ));
    }
    Ok(())
}

fn validate_eval(e: &EvalSection) -> Result<(), String> {
    let mut bad = Vec::new();
    if e.per_bucket > 0 && e.samples == 0 {
        bad.push("samples must be ≥ 1".to_string());
    }
    if !(e.temperature >= 0.0 && e.temperature.is_finite()) {
        bad.push(format!("temperature must be ≥ 0, got {}", e.temperature));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn validate_data(d: &DataSection) -> Result<(), String> {
    match (d.builtin_per_bucket, d.files.is_empty()) {
        (None, true) => Err(
            "set builtin_per_bucket (the synthetic curriculum) or files (JSONL or parquet datasets)".into(),
        ),
        (Some(0), _) => Err("builtin_per_bucket must be ≥ 1".into()),
        _ if !(0.0..=1.0).contains(&d.max_reject_fraction) => Err(format!(
            "max_reject_fraction must lie in [0, 1], got {}",
            d.max_reject_fraction
        )),
        _ if d.templates.validate().is_err() => d.templates.validate(),
        _ if d.max_tests_per_problem == Some(0) => {
            Err("max_tests_per_problem must be ≥ 1 (leave it out to keep every test)".into())
        }
        _ => Ok(()),
    }
}

fn located(name: &str, line: Option<usize>, field: &str, msg: &str) -> String {
    match line {
        Some(l) => format!("{name}:{l}: {field}: {msg}"),
        None => format!("{name}: {field}: {msg}"),
    }
}

/// 1-based line of byte `offset`.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The `[table]` header line in force at `offset`, as a dotted path ("" at top level).
fn table_at(src: &str, offset: usize) -> String {
    let mut current = String::new();
    for line in src[..offset.min(src.len())].lines() {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") || t.starts_with("[[") {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    current.split('.').next().unwrap_or("").to_string()
}

fn table_path(src: &str, offset: Option<usize>) -> String {
    offset
        .map(|o| table_at(src, o))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "(top level)".into())
}

/// The key a validation message names, and the message on one line: serde's
/// "invalid type: ..., expected usize\nin `d_model`", or ours, "d_model must be ≥ 1".
fn key_of(msg: &str) -> (Option<&str>, String) {
    let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((_, rest)) = msg.rsplit_once("in `")
        && let Some(key) = rest.strip_suffix('`')
    {
        let text = one_line
            .rsplit_once(" in `")
            .map_or(one_line.clone(), |(t, _)| t.to_string());
        return (Some(key), text);
    }
    let first = msg.split_whitespace().next().unwrap_or("");
    let is_key = !first.is_empty()
        && first
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (is_key.then_some(first), one_line)
}

/// Line of `key = ...` inside `[table]`, if the file has it there.
fn find_key_line(src: &str, table: &str, key: &str) -> Option<usize> {
    let mut inside = false;
    for (i, l) in src.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = t == format!("[{table}]");
            continue;
        }
        if inside
            && let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    None
}

/// Line of the `[table]` header, if the file has one.
fn find_table_line(src: &str, table: &str) -> Option<usize> {
    src.lines()
        .position(|l| l.trim() == format!("[{table}]"))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../configs/demo.toml");

    #[test]
    fn the_demo_config_is_valid() {
        let c = RunConfig::from_toml_str(DEMO, Some(Path::new("configs/demo.toml"))).unwrap();
        assert!(c.curriculum.stages.len() >= 4);
    }

    /// Issue 18: config errors that misled. A wrong type under `[run]` in a file
    /// without `[curriculum]` was an unknown field `run` with the curriculum's field
    /// list; "at least one [[stages]]" did not say `[[curriculum.stages]]`; a bad value
    /// was reported at its table's header line.
    #[test]
    fn issue_18_config_errors_point_at_what_is_wrong() {
        let e = RunConfig::from_toml_str("[run]\nseed = \"three\"\n", Some(Path::new("c.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:2: run: invalid type"), "{e}");
        assert!(e.contains("missing field `curriculum`"), "{e}");
        assert!(
            !e.contains("unknown field `run`") && !e.contains("retire"),
            "{e}"
        );

        let e = RunConfig::from_toml_str("[curriculum]\nseed = 1\n", Some(Path::new("c.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one [[curriculum.stages]]"), "{e}");
        assert!(e.contains("at least one [[curriculum.buckets]]"), "{e}");

        let bad = DEMO.replacen("[model]\n", "[model]\n\n# the width\n", 1);
        let bad = bad.replacen("d_model = ", "d_model = \"x\" # ", 1);
        let e = RunConfig::from_toml_str(&bad, Some(Path::new("demo.toml")))
            .unwrap_err()
            .to_string();
        let line = bad.lines().position(|l| l.starts_with("d_model")).unwrap() + 1;
        assert!(
            e.contains(&format!("demo.toml:{line}: model.d_model: invalid type")),
            "{e}"
        );
        assert!(
            !e.contains('\n') || e.lines().all(|l| l.starts_with("demo.toml:")),
            "{e}"
        );

        let bad = DEMO.replacen("checkpoint_every = ", "checkpoint_every = 0 # ", 1);
        let e = RunConfig::from_toml_str(&bad, Some(Path::new("demo.toml")))
            .unwrap_err()
            .to_string();
        let line = bad
            .lines()
            .position(|l| l.starts_with("checkpoint_every"))
            .unwrap()
            + 1;
        assert!(
            e.contains(&format!(
                "demo.toml:{line}: run.checkpoint_every: checkpoint_every must be ≥ 1"
            )),
            "{e}"
        );
    }

    #[test]
    fn data_templates_are_read_and_a_missing_placeholder_is_named() {
        let with =
            |t: &str| DEMO.replacen("[data]\n", &format!("[data.templates]\n{t}\n[data]\n"), 1);
        let ok = RunConfig::from_toml_str(&with("math = \"{prompt} Box it.\""), None).unwrap();
        assert_eq!(ok.data.templates.math.as_deref(), Some("{prompt} Box it."));
        let e = RunConfig::from_toml_str(&with("code = \"Write code.\""), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("templates.code must contain {prompt}"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = DEMO.replacen("batch_prompts =", "batch_promts =", 1);
        let e = RunConfig::from_toml_str(&bad, Some(Path::new("demo.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("demo.toml:"), "{e}");
        assert!(e.contains("batch_promts"), "{e}");
        let bad = DEMO.replacen("checkpoint_every = ", "checkpoint_every = 0 #", 1);
        let e = RunConfig::from_toml_str(&bad, Some(Path::new("demo.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run.checkpoint_every: checkpoint_every must be ≥ 1"),
            "{e}"
        );
    }

    /// Issue 14: `[generator]` is read, checked against the run's mode, and
    /// every bad field is named with the file.
    #[test]
    fn the_generator_table_is_checked_against_the_mode() {
        let with = |g: &str| format!("{DEMO}\n[generator]\n{g}\n");
        let ok = RunConfig::from_toml_str(
            &with("backend = \"openai\"\nendpoints = [\"http://127.0.0.1:8000/v1\"]"),
            None,
        )
        .unwrap();
        assert_eq!(ok.generator.backend, Backend::Openai);
        assert_eq!(ok.generator.concurrency, 16);
        for (g, want) in [
            ("backend = \"openai\"", "at least one endpoint"),
            (
                "backend = \"openai\"\nendpoints = [\"https://h:1\"]",
                "endpoints[0]",
            ),
            ("endpoints = [\"http://h:1\"]", "only used with backend"),
            (
                "backend = \"openai\"\nendpoints = [\"http://h:1\"]\nsync_every = 2",
                "sync_every = 2",
            ),
            (
                "backend = \"openai\"\nendpoints = [\"http://h:1\"]\nreload = \"none\"",
                "reload = \"none\"",
            ),
            ("backend = \"remote\"", "unknown variant `remote`"),
            ("concurrency = 0", "concurrency must be ≥ 1"),
        ] {
            let e = RunConfig::from_toml_str(&with(g), Some(Path::new("demo.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("demo.toml:") && e.contains(want), "{g}: {e}");
            assert!(e.contains("generator"), "{g}: {e}");
        }
    }

    const HF_TINY: &str = include_str!("../configs/hf-tiny.toml");

    #[test]
    fn an_hf_model_takes_its_shape_from_config_json_and_refuses_the_rest_by_name() {
        let c = RunConfig::from_toml_str(HF_TINY, Some(Path::new("configs/hf-tiny.toml"))).unwrap();
        let h = c.hf.as_ref().expect("[model] hf");
        assert_eq!(c.model.d_model, 64);
        assert_eq!(c.model.n_kv_heads, Some(2));
        assert!(c.model.qkv_bias && c.model.tie_embeddings);
        assert_eq!(c.model.max_len, 256);
        assert_eq!(
            h.system_prompt.as_deref(),
            Some("Put the final answer in \\boxed{}.")
        );
        let t = c.tokenizer().unwrap();
        assert!(t.hf().is_some());
        assert!(gradus_policy::Tokenizer::vocab_size(&t) <= c.model.vocab_size);

        let bad = HF_TINY.replacen("max_len = 256", "max_len = 256\nd_model = 32", 1);
        let e = RunConfig::from_toml_str(&bad, Some(Path::new("hf.toml")))
            .unwrap_err()
            .to_string();
        let line = bad.lines().position(|l| l.starts_with("d_model")).unwrap() + 1;
        assert!(
            e.contains(&format!(
                "hf.toml:{line}: model.d_model: d_model is not set with hf"
            )),
            "{e}"
        );
        let bad = HF_TINY.replacen("max_len = 256", "max_len = 100000", 1);
        let e = RunConfig::from_toml_str(&bad, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_len must be 1..=256"), "{e}");
        let bad = HF_TINY.replacen("tests/fixtures/hf/qwen2", "no/such-model", 1);
        let e = RunConfig::from_toml_str(&bad, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no/such-model: not in the offline Hugging Face cache"),
            "{e}"
        );
        let bad = format!("{HF_TINY}\n[tokenizer]\nalphabet = \"ab\"\n");
        let e = RunConfig::from_toml_str(&bad, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokenizer: not used with model.hf"), "{e}");
    }
}

//! A checkpoint's own tokenizer: `tokenizer.json` through Hugging Face's
//! `tokenizers` crate, its special tokens from `tokenizer_config.json`, the
//! stop ids and sampling defaults from `generation_config.json`, and its chat
//! template (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`), behind the [`Tokenizer`] trait the sampler and
//! learner use.
//!
//! A prompt is what `apply_chat_template([system?, user],
//! add_generation_prompt=True)` renders, encoded without adding special
//! tokens (the template writes them), as transformers, vLLM and SGLang do;
//! without a template (or with it turned off) the text is encoded with the
//! tokenizer's own post-processor (which adds Llama's BOS, and nothing for
//! Qwen).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::HfError;
use super::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// `generation_config.json`: what the checkpoint's authors sample with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    /// `eos_token_id` (one id or a list).
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

impl GenerationDefaults {
    /// Reads `DIR/generation_config.json`; a checkpoint without one has no
    /// defaults.
    pub fn read(dir: &Path) -> std::result::Result<Self, HfError> {
        let path = dir.join("generation_config.json");
        let Some(v) = read_json(&path, true)? else {
            return Ok(Self::default());
        };
        let mut problems = Vec::new();
        let id = |x: &Value| x.as_u64().and_then(|i| u32::try_from(i).ok());
        let eos_token_ids = match v.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| {
                    let i = id(x);
                    if i.is_none() {
                        problems.push(format!("eos_token_id: {x} is not a token id"));
                    }
                    i
                })
                .collect(),
            Some(x) => match id(x) {
                Some(i) => vec![i],
                None => {
                    problems.push(format!("eos_token_id: {x} is not a token id or a list"));
                    vec![]
                }
            },
        };
        let pad_token_id = match v.get("pad_token_id") {
            None | Some(Value::Null) => None,
            Some(x) => {
                let i = id(x);
                if i.is_none() {
                    problems.push(format!("pad_token_id: {x} is not a token id"));
                }
                i
            }
        };
        let mut float = |name: &str| match v.get(name) {
            None | Some(Value::Null) => None,
            Some(x) => {
                let f = x.as_f64();
                if f.is_none() {
                    problems.push(format!("{name}: {x} is not a number"));
                }
                f
            }
        };
        let temperature = float("temperature");
        let top_p = float("top_p");
        if !problems.is_empty() {
            return Err(HfError::Fields { path, problems });
        }
        Ok(Self {
            eos_token_ids,
            pad_token_id,
            temperature,
            top_p,
        })
    }
}

/// A Hugging Face tokenizer with its special ids and chat template.
#[derive(Debug)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: u32,
    pad: u32,
    stop: Vec<u32>,
    chat: Option<ChatTemplate>,
    use_chat: bool,
    system: Option<String>,
    generation: GenerationDefaults,
}

impl HfTokenizer {
    /// Loads the tokenizer of the checkpoint in `dir`.
    pub fn open(dir: &Path) -> std::result::Result<Self, HfError> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| HfError::Unreadable {
            path: path.clone(),
            reason: format!("not a tokenizers tokenizer.json: {e}"),
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json(&config_path, true)?.unwrap_or(Value::Null);
        let generation = GenerationDefaults::read(dir)?;
        let mut problems = Vec::new();

        // Special tokens by their strings, as the template will print them.
        let mut specials = Vec::new();
        let mut special = |name: &str| -> Option<(String, u32)> {
            let text = match config.get(name) {
                None | Some(Value::Null) => return None,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => match o.get("content").and_then(Value::as_str) {
                    Some(s) => s.to_string(),
                    None => {
                        problems.push(format!("{name}: an added token without `content`"));
                        return None;
                    }
                },
                Some(other) => {
                    problems.push(format!("{name}: {other} is not a token"));
                    return None;
                }
            };
            specials.push((name.to_string(), text.clone()));
            match inner.token_to_id(&text) {
                Some(id) => Some((text, id)),
                None => {
                    problems.push(format!("{name}: {text:?} is not in {}", path.display()));
                    None
                }
            }
        };
        let bos = special("bos_token").map(|(_, id)| id);
        let eos = special("eos_token").map(|(_, id)| id);
        let pad = special("pad_token").map(|(_, id)| id);
        let _unk = special("unk_token");

        // The template: transformers 4.43+ saves it beside the config.
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.exists() {
            Some((
                jinja.clone(),
                std::fs::read_to_string(&jinja).map_err(|e| HfError::Unreadable {
                    path: jinja.clone(),
                    reason: e.to_string(),
                })?,
            ))
        } else {
            match config.get("chat_template") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some((config_path.clone(), s.clone())),
                // Named templates: the default one is the chat template.
                Some(Value::Array(list)) => {
                    let named = |n: &str| {
                        list.iter().find_map(|t| {
                            (t.get("name").and_then(Value::as_str) == Some(n))
                                .then(|| t.get("template").and_then(Value::as_str))
                                .flatten()
                        })
                    };
                    match named("default") {
                        Some(s) => Some((config_path.clone(), s.to_string())),
                        None => {
                            problems.push(
                                "chat_template: a list of named templates without \"default\""
                                    .into(),
                            );
                            None
                        }
                    }
                }
                Some(other) => {
                    problems.push(format!("chat_template: {other} is not a template"));
                    None
                }
            }
        };
        if !problems.is_empty() {
            return Err(HfError::Fields {
                path: config_path,
                problems,
            });
        }
        let chat = match source {
            None => None,
            Some((from, text)) => {
                Some(
                    ChatTemplate::new(&text, specials).map_err(|e| HfError::Unreadable {
                        path: from,
                        reason: e,
                    })?,
                )
            }
        };
        let Some(eos) = eos.or_else(|| generation.eos_token_ids.first().copied()) else {
            return Err(HfError::Fields {
                path: config_path,
                problems: vec![
                    "eos_token: missing (and no eos_token_id in generation_config.json)".into(),
                ],
            });
        };
        let mut stop = vec![eos];
        for &id in &generation.eos_token_ids {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        let vocab = inner.get_vocab_size(true) as u32;
        if let Some(bad) = stop.iter().find(|&&id| id >= vocab) {
            return Err(HfError::Fields {
                path: dir.join("generation_config.json"),
                problems: vec![format!(
                    "eos_token_id: {bad} is outside the tokenizer's {vocab} ids"
                )],
            });
        }
        let pad = pad.or(generation.pad_token_id).unwrap_or(eos);
        Ok(Self {
            inner,
            bos,
            eos,
            pad,
            stop,
            use_chat: chat.is_some(),
            chat,
            system: None,
            generation,
        })
    }

    /// Prompts as the chat template renders them (`true`, the default when
    /// the checkpoint has one) or as plain text (`false`). Asking for the
    /// template when there is none is an error.
    pub fn use_chat_template(&mut self, on: bool) -> Result<()> {
        if on && self.chat.is_none() {
            return Err(Error::Tokenize(
                "the checkpoint has no chat template (chat_template.jinja or \
                 tokenizer_config.json's chat_template)"
                    .into(),
            ));
        }
        self.use_chat = on;
        Ok(())
    }

    /// A system turn before every prompt (chat template only).
    pub fn set_system_prompt(&mut self, system: Option<String>) {
        self.system = system;
    }

    /// The chat template, if the checkpoint has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The checkpoint's sampling defaults.
    pub fn generation_defaults(&self) -> &GenerationDefaults {
        &self.generation
    }

    /// Encodes with the tokenizer's post-processor (`add_special_tokens`).
    pub fn encode_with_specials(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenize(e.to_string()))
    }

    /// Decodes, keeping special tokens when `skip_special_tokens` is false.
    pub fn decode_with(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenize(e.to_string()))
    }

    /// The prompt text the model sees for `user` (rendered, before encoding).
    pub fn prompt_text(&self, user: &str) -> Result<String> {
        match (&self.chat, self.use_chat) {
            (Some(t), true) => t
                .render_prompt(self.system.as_deref(), user)
                .map_err(Error::Tokenize),
            _ => Ok(user.to_string()),
        }
    }
}

impl Tokenizer for HfTokenizer {
    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with_specials(text, false)
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    fn eos_id(&self) -> u32 {
        self.eos
    }

    fn pad_id(&self) -> u32 {
        self.pad
    }

    fn stop_ids(&self) -> Vec<u32> {
        self.stop.clone()
    }

    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        match (&self.chat, self.use_chat) {
            (Some(_), true) => self.encode_with_specials(&self.prompt_text(text)?, false),
            _ => self.encode_with_specials(text, true),
        }
    }
}

/// A JSON file; `None` when it is optional and absent.
fn read_json(path: &PathBuf, optional: bool) -> std::result::Result<Option<Value>, HfError> {
    if optional && !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| HfError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| HfError::Unreadable {
            path: path.clone(),
            reason: format!("not JSON: {e}"),
        })
}

/// The built-in character tokenizer or a checkpoint's own: what a run
/// trains with, chosen by its config.
#[derive(Debug)]
pub enum AnyTokenizer {
    Char(crate::tokenizer::CharTokenizer),
    Hf(Box<HfTokenizer>),
}

impl AnyTokenizer {
    fn get(&self) -> &dyn Tokenizer {
        match self {
            Self::Char(t) => t,
            Self::Hf(t) => t.as_ref(),
        }
    }

    /// The checkpoint's tokenizer, when the run trains one.
    pub fn hf(&self) -> Option<&HfTokenizer> {
        match self {
            Self::Char(_) => None,
            Self::Hf(t) => Some(t),
        }
    }
}

impl Tokenizer for AnyTokenizer {
    fn vocab_size(&self) -> usize {
        self.get().vocab_size()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.get().encode(text)
    }
    fn decode(&self, ids: &[u32]) -> String {
        self.get().decode(ids)
    }
    fn bos_id(&self) -> Option<u32> {
        self.get().bos_id()
    }
    fn eos_id(&self) -> u32 {
        self.get().eos_id()
    }
    fn pad_id(&self) -> u32 {
        self.get().pad_id()
    }
    fn stop_ids(&self) -> Vec<u32> {
        self.get().stop_ids()
    }
    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.get().encode_prompt(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the qwen2 fixture's tokenizer files, to break one by one.
    fn copy() -> tempfile::TempDir {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/qwen2");
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "chat_template.jinja",
        ] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        dir
    }

    fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    }

    #[test]
    fn a_broken_tokenizer_file_config_or_template_is_named_in_its_error() {
        let d = copy();
        let ok = HfTokenizer::open(d.path()).unwrap();
        assert_eq!(ok.stop_ids()[0], ok.eos_id());
        assert!(ok.bos_id().is_none(), "Qwen has no BOS");

        // A special token the vocabulary lacks, and a mistyped one.
        let cfg = d.path().join("tokenizer_config.json");
        edit(&cfg, |v| {
            v["eos_token"] = "<|no_such|>".into();
            v["pad_token"] = 7.into();
        });
        let e = HfTokenizer::open(d.path()).unwrap_err().to_string();
        assert!(e.starts_with(&cfg.display().to_string()), "{e}");
        assert!(e.contains("eos_token: \"<|no_such|>\" is not in"), "{e}");
        assert!(e.contains("pad_token: 7 is not a token"), "{e}");

        // A template that does not compile: its file and line.
        let d = copy();
        let jinja = d.path().join("chat_template.jinja");
        std::fs::write(&jinja, "ok\n{% if messages %}\nunclosed").unwrap();
        let e = HfTokenizer::open(d.path()).unwrap_err().to_string();
        assert!(e.starts_with(&jinja.display().to_string()), "{e}");
        assert!(e.contains("chat template line"), "{e}");

        // A stop id outside the vocabulary; a list of named templates
        // without a default one (template taken from tokenizer_config).
        let d = copy();
        edit(&d.path().join("generation_config.json"), |v| {
            v["eos_token_id"] = serde_json::json!([2, 100000]);
        });
        let e = HfTokenizer::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("eos_token_id: 100000 is outside the tokenizer's"),
            "{e}"
        );
        let d = copy();
        std::fs::remove_file(d.path().join("chat_template.jinja")).unwrap();
        edit(&d.path().join("tokenizer_config.json"), |v| {
            v["chat_template"] = serde_json::json!([{"name": "tool_use", "template": "x"}]);
        });
        let e = HfTokenizer::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("without \"default\""), "{e}");

        // No tokenizer.json, or not one.
        let d = copy();
        let tj = d.path().join("tokenizer.json");
        std::fs::write(&tj, "{\"model\": 3}").unwrap();
        let e = HfTokenizer::open(d.path()).unwrap_err().to_string();
        assert!(
            e.starts_with(&tj.display().to_string())
                && e.contains("not a tokenizers tokenizer.json"),
            "{e}"
        );
        std::fs::remove_file(&tj).unwrap();
        assert!(HfTokenizer::open(d.path()).is_err());

        // Without a template the prompt is plain text; asking for one fails.
        let d = copy();
        std::fs::remove_file(d.path().join("chat_template.jinja")).unwrap();
        let mut t = HfTokenizer::open(d.path()).unwrap();
        assert!(t.chat_template().is_none());
        assert!(t.use_chat_template(true).is_err());
        assert_eq!(
            t.encode_prompt("print(1)").unwrap(),
            t.encode_with_specials("print(1)", true).unwrap()
        );
    }
}

//! Tokenizers: the [`Tokenizer`] trait the sampler and learner see, and the
//! built-in character-level [`CharTokenizer`] for the synthetic curriculum.
//!
//! The trait is also what a checkpoint's own tokenizer implements
//! ([`crate::hf::tokenizer::HfTokenizer`]): text ↔ ids plus the special ids
//! the runtime needs (BOS, where the model has one, starts a plain prompt;
//! EOS ends a response; every stop id ends sampling; PAD fills batches).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::error::{Error, Result};

/// Text ↔ token ids.
pub trait Tokenizer: Send + Sync {
    /// Number of ids, specials included; the model's `vocab_size` must be ≥ this.
    fn vocab_size(&self) -> usize;
    /// Encodes text without adding special tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Decodes ids, dropping special tokens.
    fn decode(&self, ids: &[u32]) -> String;
    /// Beginning-of-sequence id, where the model has one (Qwen has none).
    fn bos_id(&self) -> Option<u32>;
    /// End-of-sequence id.
    fn eos_id(&self) -> u32;
    /// Padding id.
    fn pad_id(&self) -> u32;

    /// The ids that end a response (EOS, and e.g. a chat model's end of turn).
    fn stop_ids(&self) -> Vec<u32> {
        vec![self.eos_id()]
    }

    /// A prompt as the model sees it: BOS (if any) followed by the text.
    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos_id().into_iter().collect();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }
}

/// Config of the character tokenizer (`[tokenizer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharTokenizerConfig {
    /// Every character the tokenizer knows, each once. Ids are assigned in
    /// order after the three specials.
    pub alphabet: String,
}

impl CharTokenizerConfig {
    /// Digits, arithmetic symbols, letters, Python punctuation, space and newline:
    /// the alphabet of the built-in demo curriculum.
    pub fn demo() -> Self {
        let mut alphabet = String::from("0123456789+-*/%=<>()[]{}.,:;'\"!?_#&|^~@\\ \n");
        alphabet.extend('a'..='z');
        alphabet.extend('A'..='Z');
        Self { alphabet }
    }

    /// Checks the alphabet: non-empty, no repeats.
    pub fn validate(&self) -> Result<()> {
        let mut p = Problems::new("tokenizer");
        p.check(!self.alphabet.is_empty(), "alphabet", || {
            "must not be empty".into()
        });
        let mut seen = HashMap::new();
        for (i, ch) in self.alphabet.chars().enumerate() {
            if let Some(first) = seen.insert(ch, i) {
                p.check(false, "alphabet", || {
                    format!("character {ch:?} appears twice (offsets {first} and {i})")
                });
            }
        }
        p.finish()
    }
}

/// One id per character, plus PAD = 0, BOS = 1, EOS = 2.
#[derive(Debug, Clone)]
pub struct CharTokenizer {
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

impl CharTokenizer {
    /// Id of the padding token.
    pub const PAD: u32 = 0;
    /// Id of the beginning-of-sequence token.
    pub const BOS: u32 = 1;
    /// Id of the end-of-sequence token.
    pub const EOS: u32 = 2;
    const SPECIALS: u32 = 3;

    /// Builds the tokenizer after validating the config.
    pub fn new(cfg: &CharTokenizerConfig) -> Result<Self> {
        cfg.validate()?;
        let chars: Vec<char> = cfg.alphabet.chars().collect();
        let ids = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32 + Self::SPECIALS))
            .collect();
        Ok(Self { chars, ids })
    }
}

impl Tokenizer for CharTokenizer {
    fn vocab_size(&self) -> usize {
        self.chars.len() + Self::SPECIALS as usize
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(offset, ch)| {
                self.ids
                    .get(&ch)
                    .copied()
                    .ok_or(Error::UnknownChar { ch, offset })
            })
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter_map(|&id| {
                id.checked_sub(Self::SPECIALS)
                    .and_then(|i| self.chars.get(i as usize))
            })
            .collect()
    }

    fn bos_id(&self) -> Option<u32> {
        Some(Self::BOS)
    }
    fn eos_id(&self) -> u32 {
        Self::EOS
    }
    fn pad_id(&self) -> u32 {
        Self::PAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_demo_text() {
        let t = CharTokenizer::new(&CharTokenizerConfig::demo()).unwrap();
        let text = "def f(x):\n    return x*2 + 3 % 4  # ok";
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids), text);
        assert!(ids.iter().all(|&i| i >= 3 && (i as usize) < t.vocab_size()));
        let p = t.encode_prompt("1+1=").unwrap();
        assert_eq!(p[0], CharTokenizer::BOS);
        assert_eq!(
            t.decode(&[CharTokenizer::BOS, 4, t.eos_id(), t.pad_id()]),
            "1"
        );
    }

    #[test]
    fn unknown_char_names_its_offset() {
        let t = CharTokenizer::new(&CharTokenizerConfig {
            alphabet: "ab".into(),
        })
        .unwrap();
        let err = t.encode("abz").unwrap_err();
        assert!(
            matches!(err, Error::UnknownChar { ch: 'z', offset: 2 }),
            "{err}"
        );
    }

    #[test]
    fn repeated_alphabet_char_is_refused() {
        let err = CharTokenizer::new(&CharTokenizerConfig {
            alphabet: "abca".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tokenizer.alphabet") && err.contains("'a'"),
            "{err}"
        );
    }
}

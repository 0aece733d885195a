//! The crate's error type. Variants carry what a caller needs to act on: the
//! config field at fault, the file that could not be read, the character a
//! tokenizer does not know.

use std::path::PathBuf;

/// One invalid config field: its dotted path (e.g. `model.n_heads`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, starting at the table name (`model.d_model`).
    pub field: String,
    /// What is wrong, with the offending value.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything that can go wrong in gradus-policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config failed validation; every bad field is listed, not just the first.
    #[error("invalid config: {}", join(.0))]
    InvalidConfig(Vec<FieldError>),
    /// Text holds a character outside the tokenizer's alphabet.
    #[error("character {ch:?} at char offset {offset} is not in the tokenizer alphabet")]
    UnknownChar { ch: char, offset: usize },
    /// A token id is outside the model's vocabulary.
    #[error("token id {id} at position {position} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        id: u32,
        position: usize,
        vocab_size: usize,
    },
    /// A batch handed to the sampler or learner cannot be used as is.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A sequence is longer than the model's `max_len`.
    #[error("sequence of {len} tokens exceeds model.max_len = {max_len}")]
    TooLong { len: usize, max_len: usize },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint or manifest could not be decoded.
    #[error("{}: cannot decode checkpoint: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    /// A checkpoint does not fit the model it is loaded into.
    #[error("checkpoint does not match the model: {0}")]
    Mismatch(String),
    /// The compute device could not be set up.
    #[error("device: {0}")]
    Device(String),
    /// A weights snapshot could not be encoded or decoded.
    #[error("snapshot encoding: {0}")]
    Snapshot(String),
    /// A tokenizer or chat template could not encode a text.
    #[error("tokenizer: {0}")]
    Tokenize(String),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

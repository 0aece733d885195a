//! The errors of the report crate. Each names the file (and line, where there
//! is one) and what to do about it; malformed rows are not errors but
//! warnings (see [`crate::jsonl`]), so one bad line never hides a run.

use std::path::PathBuf;

/// Everything that can stop `gradus report` or `gradus experiment`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory holds neither events.jsonl nor metrics.jsonl.
    #[error(
        "{0}: not a gradus run directory (no events.jsonl or metrics.jsonl; \
         `gradus train --run-dir DIR` writes them)"
    )]
    NotARunDir(PathBuf),
    /// A plot could not be drawn or encoded.
    #[error("{path}: drawing the plot failed: {message}")]
    Plot { path: PathBuf, message: String },
    /// A JSON or TOML output could not be serialised.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The experiment's arguments do not make sense; the message names the flag.
    #[error("{0}")]
    BadArgs(String),
    /// The gradus executable could not be started.
    #[error("starting {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some runs of an experiment failed; the table was still written.
    #[error("{failed} of {total} runs failed (listed above and in {table})")]
    RunsFailed {
        failed: usize,
        total: usize,
        table: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! gradus-policy: the policy model, its sampler and its learner.
//!
//! The generator owns a [`Policy`] (the model without autodiff) and samples
//! [`Response`]s: tokens, behaviour log-probs, truncation flags. The learner
//! owns a [`Learner`] (the model on an autodiff device plus AdamW), turns
//! [`Group`]s of prompt, responses and rewards into GRPO updates (or
//! [`SftExample`]s into SFT updates), reports [`StepStats`], and publishes
//! [`WeightsSnapshot`]s back to the generator. Both run burn on a dedicated
//! thread ([`device::ComputeThread`]), never on async workers.
//!
//! # Layout
//! - [`config`]: typed, validated `[model]`, `[optimizer]` and `[compute]` tables.
//! - [`tokenizer`]: the [`Tokenizer`] trait and the built-in character tokenizer.
//! - [`model`]: the decoder-only transformer (one struct per block).
//! - [`fused`]: the transformer's fused CPU ops (a burn backend extension
//!   with hand-written backward passes) and their kernels.
//! - [`cache`]: the KV cache and the padding/position bookkeeping.
//! - [`mod@sample`]: batched KV-cached sampling with behaviour log-probs.
//! - [`decode`]: continuous batching (rows join and leave a running decode).
//! - [`loss`]: GRPO advantages and surrogate, SFT cross-entropy.
//! - [`optim`]: AdamW with warmup and global-norm clipping; weight visitors.
//! - [`learner`]: GRPO and SFT steps and their statistics.
//! - [`policy`]: the inference policy and the weights snapshot.
//! - [`checkpoint`]: exact, atomic checkpoints with a manifest.
//! - [`device`]: device selection, the dedicated compute thread and the
//!   allocator tuning.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod device;
pub mod error;
pub mod fused;
pub mod hf;
pub mod learner;
pub mod loss;
pub mod model;
pub mod optim;
pub mod policy;
pub mod sample;
pub mod tokenizer;

#[cfg(test)]
mod testutil;

/// The device a model runs on (from `[compute]` via [`device::device`]).
pub use burn::tensor::Device;
pub use cache::KvCache;
pub use checkpoint::Manifest;
pub use config::{ComputeConfig, ModelConfig, OptimizerConfig};
pub use error::{Error, FieldError, Result};
pub use learner::{Group, Learner, SftExample, StepKind, StepStats};
pub use loss::{Aggregation, GrpoConfig};
pub use model::{TokenBatch, Transformer};
pub use policy::{Policy, WeightsSnapshot};
pub use sample::{Response, SamplingConfig, sample};
pub use tokenizer::{CharTokenizer, CharTokenizerConfig, Tokenizer};

//! The inference-side policy the generator owns, and the weights snapshot the
//! learner publishes to it.
//!
//! A [`WeightsSnapshot`] is plain host data (config, version, f32 tensors in
//! the model's visiting order): cheap to clone behind an `Arc`, `Send`, and
//! serialisable to bytes for a process boundary. The generator swaps it into
//! its [`Policy`] between batches.

use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::Transformer;
use crate::optim::{HostTensor, load_weights};
use crate::sample::{Response, SamplingConfig, sample};

/// Weights published by the learner, tagged with the policy version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsSnapshot {
    /// Learner updates these weights reflect.
    pub version: u64,
    /// Shape of the model.
    pub config: ModelConfig,
    /// Weights in visiting order.
    pub weights: Vec<HostTensor>,
}

impl WeightsSnapshot {
    /// Encodes the snapshot (bincode).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::Snapshot(e.to_string()))
    }

    /// Decodes a snapshot written by [`WeightsSnapshot::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(s, _)| s)
            .map_err(|e| Error::Snapshot(e.to_string()))
    }
}

/// The sampling copy of the model (no autodiff graph) and its version.
pub struct Policy {
    model: Transformer,
    config: ModelConfig,
    version: u64,
    pad: u32,
}

impl Policy {
    /// A freshly initialised policy (version 0) on `device`.
    pub fn new(config: ModelConfig, device: &Device, pad: u32) -> Result<Self> {
        let device = device.clone().without_autodiff();
        Ok(Self {
            model: Transformer::init(&config, &device)?,
            config,
            version: 0,
            pad,
        })
    }

    /// A policy (version 0) of a loaded model of `config`, e.g. a Hugging
    /// Face checkpoint's; `model` must be on a device without autodiff.
    pub fn from_model(model: Transformer, config: ModelConfig, pad: u32) -> Self {
        Self {
            model,
            config,
            version: 0,
            pad,
        }
    }

    /// A policy holding `snap`'s weights.
    pub fn from_snapshot(snap: &WeightsSnapshot, device: &Device, pad: u32) -> Result<Self> {
        // Zeroed, not initialised: every weight is replaced (random normals
        // for a 1.5B model take longer than the load itself).
        let device = device.clone().without_autodiff();
        let mut p = Self::from_model(
            Transformer::zeroed(&snap.config, &device)?,
            snap.config.clone(),
            pad,
        );
        p.load_snapshot(snap)?;
        Ok(p)
    }

    /// Swaps in newer weights; the model shape must be the same.
    pub fn load_snapshot(&mut self, snap: &WeightsSnapshot) -> Result<()> {
        if snap.config != self.config {
            return Err(Error::Mismatch(format!(
                "snapshot config {:?} differs from the policy's {:?}",
                snap.config, self.config
            )));
        }
        // Cloning a module shares its tensors; on error the old weights stay.
        self.model = load_weights(self.model.clone(), &snap.weights)?;
        self.version = snap.version;
        Ok(())
    }

    /// Version of the weights held.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The model config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The underlying model.
    pub fn model(&self) -> &Transformer {
        &self.model
    }

    /// Samples one response per prompt (see [`crate::sample::sample`]).
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        cfg: &SamplingConfig,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Response>> {
        sample(&self.model, prompts, cfg, self.pad, rng)
    }
}

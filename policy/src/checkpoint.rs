//! Exact, atomic checkpoints of a [`Learner`].
//!
//! A checkpoint directory holds state files `learner-<step>.bin` (bincode:
//! weights, reference weights, AdamW moments and step, learner step, policy
//! version, RNG state) and one `manifest.json` naming the current state file
//! together with the resolved config. Every file is written as temp file →
//! fsync → rename → fsync of the directory, and the manifest is written last,
//! so a crash at any point leaves the previous checkpoint intact and loadable.
//! The two newest state files are kept.
//!
//! Resume is exact: the weights and moments round-trip as f32 bit patterns and
//! the RNG continues its stream, so k steps + save + load + k steps equals 2k
//! uninterrupted steps.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, OptimizerConfig};
use crate::error::{Error, Result};
use crate::learner::Learner;
use crate::model::Transformer;
use crate::optim::{AdamW, AdamWState, HostTensor, load_weights, weights};

/// Bumped when the state file layout changes.
pub const FORMAT: u32 = 2;
/// Name of the manifest inside a checkpoint directory.
pub const MANIFEST: &str = "manifest.json";
/// State files kept (the newest ones).
const KEEP: usize = 2;

/// The small JSON file that says which state file is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// State file layout version.
    pub format: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Policy version of the saved weights.
    pub policy_version: u64,
    /// State file name, relative to the directory.
    pub state_file: String,
    /// Its size in bytes (a cheap truncation check).
    pub state_bytes: u64,
    /// Model config of the saved weights.
    pub model: ModelConfig,
    /// Optimizer config.
    pub optimizer: OptimizerConfig,
    /// The caller's resolved run config (anything serialisable), for humans
    /// and for resume checks.
    pub run_config: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct State {
    format: u32,
    step: u64,
    version: u64,
    model: ModelConfig,
    optimizer: OptimizerConfig,
    weights: Vec<HostTensor>,
    reference: Option<Vec<HostTensor>>,
    adam: AdamWState,
    rng: ChaCha8Rng,
    pad: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `dir/name` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    write_atomic_with(dir, name, |w| w.write_all(bytes)).map(|(p, _)| p)
}

/// [`write_atomic`] with the contents streamed by `write` (so a large state
/// is never held twice in memory); returns the path and the bytes written.
fn write_atomic_with(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(PathBuf, u64)> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let f = File::create(&tmp).map_err(io(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    write(&mut w).map_err(io(&tmp))?;
    let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    let len = f.metadata().map_err(io(&tmp))?.len();
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok((path, len))
}

impl Learner {
    /// Saves a checkpoint into `dir` (created if needed); `run_config` goes
    /// into the manifest. Returns the manifest's path.
    pub fn save_checkpoint(&self, dir: &Path, run_config: serde_json::Value) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let model = self.model.as_ref().expect("model present");
        let state = State {
            format: FORMAT,
            step: self.step,
            version: self.version,
            model: self.model_cfg.clone(),
            optimizer: self.optim.config().clone(),
            weights: weights(model),
            reference: self.reference.as_ref().map(weights),
            adam: self.optim.state(),
            rng: self.rng.clone(),
            pad: self.pad,
        };
        let state_file = format!("learner-{:010}.bin", self.step);
        let (_, state_bytes) = write_atomic_with(dir, &state_file, |w| {
            bincode::serde::encode_into_std_write(&state, w, bincode::config::standard())
                .map(|_| ())
                .map_err(std::io::Error::other)
        })?;
        let manifest = Manifest {
            format: FORMAT,
            step: self.step,
            policy_version: self.version,
            state_file: state_file.clone(),
            state_bytes,
            model: self.model_cfg.clone(),
            optimizer: self.optim.config().clone(),
            run_config,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        let path = write_atomic(dir, MANIFEST, &json)?;
        prune(dir, &state_file)?;
        Ok(path)
    }

    /// Loads the checkpoint in `dir` onto `device`; returns the learner and
    /// its manifest.
    pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<(Self, Manifest)> {
        let mpath = dir.join(MANIFEST);
        let text = fs::read(&mpath).map_err(io(&mpath))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| Error::Decode {
            path: mpath.clone(),
            reason: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(Error::Decode {
                path: mpath,
                reason: format!("format {} (this build reads {FORMAT})", manifest.format),
            });
        }
        let spath = dir.join(&manifest.state_file);
        let file = File::open(&spath).map_err(io(&spath))?;
        let len = file.metadata().map_err(io(&spath))?.len();
        if len != manifest.state_bytes {
            return Err(Error::Decode {
                path: spath,
                reason: format!("{len} bytes, the manifest says {}", manifest.state_bytes),
            });
        }
        // Streamed from the file, so the state is never in memory twice.
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let state: State =
            bincode::serde::decode_from_std_read(&mut reader, bincode::config::standard())
                .map_err(|e| Error::Decode {
                    path: spath.clone(),
                    reason: e.to_string(),
                })?;
        // Zeroed modules, every weight then replaced by the saved one.
        let ad = device.clone().autodiff();
        let mut learner = Learner::fresh(
            state.model.clone(),
            Transformer::zeroed(&state.model, &ad)?,
            state.optimizer.clone(),
            ad,
            0,
            state.pad,
        )?;
        let model = learner.model.take().expect("fresh model");
        learner.model = Some(load_weights(model, &state.weights)?);
        learner.reference = match &state.reference {
            Some(w) => {
                let r = Transformer::zeroed(&state.model, &device.clone().without_autodiff())?;
                Some(load_weights(r, w)?)
            }
            None => None,
        };
        learner.optim = AdamW::from_state(state.optimizer, &state.adam, &learner.device)?;
        learner.step = state.step;
        learner.version = state.version;
        learner.rng = state.rng;
        Ok((learner, manifest))
    }
}

/// Deletes all but the newest `KEEP` state files (`current` always stays).
fn prune(dir: &Path, current: &str) -> Result<()> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("learner-") && n.ends_with(".bin"))
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(KEEP);
    for name in files.into_iter().take(excess).filter(|n| n != current) {
        let p = dir.join(&name);
        fs::remove_file(&p).map_err(io(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

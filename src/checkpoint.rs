//! Run checkpoints: everything a resume needs, written so that a crash at any
//! moment leaves the previous checkpoint intact.
//!
//! ```text
//! checkpoints/
//!   latest                 name of the newest complete checkpoint (written last, atomically)
//!   step-00000050/
//!     runtime.bin          curriculum state, ledger, generator RNG, counters (bincode)
//!     learner/             model, optimizer, step, RNG, version + manifest (gradus-policy)
//! ```
//!
//! A checkpoint is assembled in `.tmp-step-N/`, fsynced, renamed into place,
//! and only then named in `latest`. A `kill -9` mid-write leaves a `.tmp-*`
//! directory that the next write removes; `latest` still names the old one.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gradus_actors::ledger::Ledger;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::run_dir::write_atomic;

/// The runtime's part of a checkpoint (the learner writes its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeState {
    /// Learner steps completed.
    pub step: u64,
    /// Next learner batch id.
    pub next_batch: u64,
    /// The curriculum's own serialised state.
    pub curriculum: Vec<u8>,
    /// The exactly-once ledger.
    pub ledger: Ledger,
    /// The generator's sampling RNG.
    pub generator_rng: ChaCha8Rng,
    /// Responses generated and graded so far (the sample budget's count).
    pub samples: u64,
}

const RUNTIME: &str = "runtime.bin";
const LATEST: &str = "latest";

impl RuntimeState {
    /// Reads the runtime state of checkpoint `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(RUNTIME);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (state, _) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .with_context(|| format!("decoding {}", path.display()))?;
        Ok(state)
    }
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> anyhow::Result<Option<PathBuf>> {
    let path = root.join(LATEST);
    match fs::read_to_string(&path) {
        Ok(name) => {
            let dir = root.join(name.trim());
            anyhow::ensure!(
                dir.is_dir(),
                "{} names {}, which is missing",
                path.display(),
                dir.display()
            );
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes checkpoint `step` under `root`: the runtime state, then whatever
/// `extra` writes into the directory (the learner's files), then `latest`.
/// Keeps the newest `keep` checkpoints.
pub async fn write<F, Fut>(
    root: &Path,
    step: u64,
    keep: usize,
    state: &RuntimeState,
    extra: F,
) -> anyhow::Result<PathBuf>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = format!("step-{step:08}");
    let tmp = root.join(format!(".tmp-{name}"));
    let dest = root.join(&name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let bytes = bincode::serde::encode_to_vec(state, bincode::config::standard())?;
    write_atomic(&tmp.join(RUNTIME), &bytes)?;
    extra(tmp.clone()).await?;
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&tmp, &dest).with_context(|| format!("renaming {} into place", tmp.display()))?;
    fs::File::open(root)?.sync_all()?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(root, keep)?;
    Ok(dest)
}

/// Deletes all but the newest `keep` checkpoints, and stale temp dirs.
fn prune(root: &Path, keep: usize) -> anyhow::Result<()> {
    let mut steps: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with(".tmp-") {
            fs::remove_dir_all(&path)?;
        } else if name.starts_with("step-") {
            steps.push(path);
        }
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        fs::remove_dir_all(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn state(step: u64) -> RuntimeState {
        RuntimeState {
            samples: 0,
            step,
            next_batch: step,
            curriculum: vec![1, 2, 3],
            ledger: Ledger::new(),
            generator_rng: ChaCha8Rng::seed_from_u64(step),
        }
    }

    #[tokio::test]
    async fn latest_names_the_newest_complete_checkpoint_and_old_ones_are_pruned() {
        let root = tempfile::tempdir().unwrap();
        assert!(latest(root.path()).unwrap().is_none());
        for step in [10, 20, 30] {
            write(root.path(), step, 2, &state(step), |dir| async move {
                fs::write(dir.join("learner.bin"), b"w")?;
                Ok(())
            })
            .await
            .unwrap();
        }
        let dir = latest(root.path()).unwrap().unwrap();
        assert!(dir.ends_with("step-00000030"));
        assert_eq!(RuntimeState::read(&dir).unwrap().step, 30);
        assert!(!root.path().join("step-00000010").exists());
        assert!(root.path().join("step-00000020").exists());
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_previous_checkpoint_in_force() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), 1, 3, &state(1), |_| async { Ok(()) })
            .await
            .unwrap();
        let failed = write(root.path(), 2, 3, &state(2), |_| async {
            anyhow::bail!("learner died")
        })
        .await;
        assert!(failed.is_err());
        assert!(
            latest(root.path())
                .unwrap()
                .unwrap()
                .ends_with("step-00000001")
        );
    }
}

//! The checkpointer actor, and the on-disk layout of run checkpoints:
//! everything a resume needs, written so that a crash at any moment leaves the
//! previous checkpoint intact.
//!
//! ```text
//! checkpoints/
//!   latest                 name of the newest complete checkpoint (written last, atomically)
//!   step-00000050/
//!     runtime.bin          curriculum state, ledger, generator RNG, counters (bincode)
//!     learner/             model, optimizer, step, RNG, version + manifest (gradus-policy)
//! ```
//!
//! A checkpoint is assembled in `.tmp-step-N/` ([`begin`]), the learner
//! writes its part there, then [`commit`] fsyncs, renames it into place and
//! only then names it in `latest`. A `kill -9` or a crash of the actor
//! mid-write leaves a `.tmp-*` directory that the next write removes; `latest`
//! still names the old one. A save is idempotent, so the caller redoes a save
//! whose actor crashed exactly once, like any other call ([`crate::call`]).
//!
//! The actor does the file work on blocking threads and asks the learner
//! actor (looked up by name) for the model's part.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::call::{CallError, QueueHook, call_with_retry};
use crate::fault::Fault;
use crate::learner;
use crate::ledger::Ledger;

/// Name the checkpointer registers under.
pub const NAME: &str = "checkpointer";

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

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding {}: {why}", path.display())]
    Decode { path: PathBuf, why: String },
    #[error("encoding the runtime state: {0}")]
    Encode(String),
    #[error("{} names {}, which is missing", latest.display(), dir.display())]
    Missing { latest: PathBuf, dir: PathBuf },
    #[error("the learner could not write its part: {0}")]
    Learner(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { what, path, source }
}

const RUNTIME: &str = "runtime.bin";
const LATEST: &str = "latest";
/// Where the learner writes its part inside a checkpoint.
pub const LEARNER_DIR: &str = "learner";

impl RuntimeState {
    /// Reads the runtime state of checkpoint `dir`.
    pub fn read(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(RUNTIME);
        let bytes = fs::read(&path).map_err(io("reading", &path))?;
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map(|(state, _)| state)
            .map_err(|e| CheckpointError::Decode {
                path,
                why: e.to_string(),
            })
    }
}

/// Writes `path` so that readers see the old content or the new, never a mix:
/// write a sibling temp file, fsync it, rename it over `path`, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an atomic write needs a parent directory",
        )
    })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let path = root.join(LATEST);
    match fs::read_to_string(&path) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if !dir.is_dir() {
                return Err(CheckpointError::Missing { latest: path, dir });
            }
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", &path)(e)),
    }
}

fn name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Starts checkpoint `step` under `root`: a fresh temp dir holding the
/// runtime state. Returns the temp dir, where the learner writes its part
/// (under [`LEARNER_DIR`]).
pub fn begin(root: &Path, step: u64, state: &RuntimeState) -> Result<PathBuf, CheckpointError> {
    let tmp = root.join(format!(".tmp-{}", name(step)));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    let bytes = bincode::serde::encode_to_vec(state, bincode::config::standard())
        .map_err(|e| CheckpointError::Encode(e.to_string()))?;
    let runtime = tmp.join(RUNTIME);
    write_atomic(&runtime, &bytes).map_err(io("writing", &runtime))?;
    Ok(tmp)
}

/// Completes checkpoint `step` begun by [`begin`]: renames it into place,
/// names it in `latest`, and keeps the newest `keep` checkpoints.
pub fn commit(root: &Path, step: u64, keep: usize) -> Result<PathBuf, CheckpointError> {
    let name = name(step);
    let tmp = root.join(format!(".tmp-{name}"));
    let dest = root.join(&name);
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(io("removing", &dest))?;
    }
    fs::rename(&tmp, &dest).map_err(io("renaming into place", &tmp))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", root))?;
    let latest = root.join(LATEST);
    write_atomic(&latest, name.as_bytes()).map_err(io("writing", &latest))?;
    prune(root, keep)?;
    Ok(dest)
}

/// Deletes all but the newest `keep` checkpoints, and stale temp dirs.
fn prune(root: &Path, keep: usize) -> Result<(), CheckpointError> {
    let mut steps: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(root).map_err(io("listing", root))? {
        let path = entry.map_err(io("listing", root))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with(".tmp-") {
            fs::remove_dir_all(&path).map_err(io("removing", &path))?;
        } else if name.starts_with("step-") {
            steps.push(path);
        }
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        fs::remove_dir_all(old).map_err(io("removing", old))?;
    }
    Ok(())
}

/// Settings fixed for the run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The run's `checkpoints/` directory.
    pub root: PathBuf,
    /// Checkpoints kept (the newest).
    pub keep: usize,
    /// Longest wait for the learner's part.
    pub call_timeout: Duration,
}

pub enum Msg {
    /// Write checkpoint `step`: `state`, and the learner's model, optimizer
    /// and RNG with `manifest_extra` (the resolved run config) in its
    /// manifest. Answers the checkpoint's directory.
    Save {
        step: u64,
        state: Box<RuntimeState>,
        manifest_extra: serde_json::Value,
        reply: RpcReplyPort<Result<PathBuf, String>>,
    },
}

pub type CheckpointerRef = ActorRef<Msg>;

pub struct Checkpointer {
    settings: Settings,
    queues: Option<QueueHook>,
    /// Crashes the actor once, in its N-th save, after writing the runtime
    /// state and before the learner's part.
    fault: Arc<Fault>,
}

/// Spawns the checkpointer linked to `supervisor`.
pub async fn spawn(
    settings: Settings,
    queues: Option<QueueHook>,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let actor = Checkpointer {
        settings,
        queues,
        fault,
    };
    let (r, _) = Actor::spawn_linked(Some(NAME.into()), actor, (), supervisor).await?;
    Ok(r.get_cell())
}

impl Checkpointer {
    async fn save(
        &self,
        step: u64,
        state: Box<RuntimeState>,
        manifest_extra: serde_json::Value,
    ) -> Result<Result<PathBuf, CheckpointError>, ActorProcessingErr> {
        let root = self.settings.root.clone();
        let tmp = match tokio::task::spawn_blocking(move || begin(&root, step, &state)).await? {
            Ok(tmp) => tmp,
            Err(e) => return Ok(Err(e)),
        };
        if self.fault.count() {
            return Err(format!("injected checkpointer fault in the save of step {step}").into());
        }
        let dir = tmp.join(LEARNER_DIR);
        let (answer, _) = call_with_retry(
            learner::NAME,
            self.settings.call_timeout,
            self.queues.as_ref(),
            1,
            |reply| learner::Msg::Checkpoint {
                dir: dir.clone(),
                manifest_extra: manifest_extra.clone(),
                reply,
            },
        )
        .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ok(Err(CheckpointError::Learner(e))),
            Err(e) => return Ok(Err(e.into())),
        }
        let (root, keep) = (self.settings.root.clone(), self.settings.keep);
        Ok(tokio::task::spawn_blocking(move || commit(&root, step, keep)).await?)
    }
}

impl Actor for Checkpointer {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: CheckpointerRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: CheckpointerRef,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Save {
                step,
                state,
                manifest_extra,
                reply,
            } => {
                let saved = self.save(step, state, manifest_extra).await?;
                let _ = reply.send(saved.map_err(|e| e.to_string()));
            }
        }
        Ok(())
    }
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

    #[test]
    fn latest_names_the_newest_complete_checkpoint_and_old_ones_are_pruned() {
        let root = tempfile::tempdir().unwrap();
        assert!(latest(root.path()).unwrap().is_none());
        for step in [10, 20, 30] {
            let tmp = begin(root.path(), step, &state(step)).unwrap();
            fs::write(tmp.join("learner.bin"), b"w").unwrap();
            commit(root.path(), step, 2).unwrap();
        }
        let dir = latest(root.path()).unwrap().unwrap();
        assert!(dir.ends_with("step-00000030"));
        assert_eq!(RuntimeState::read(&dir).unwrap().step, 30);
        assert!(dir.join("learner.bin").exists());
        assert!(!root.path().join("step-00000010").exists());
        assert!(root.path().join("step-00000020").exists());
    }

    #[test]
    fn an_unfinished_write_leaves_the_previous_checkpoint_in_force_and_is_cleaned_up() {
        let root = tempfile::tempdir().unwrap();
        begin(root.path(), 1, &state(1)).unwrap();
        commit(root.path(), 1, 3).unwrap();
        // Step 2 is begun and never committed (the learner died, or a kill -9).
        begin(root.path(), 2, &state(2)).unwrap();
        let in_force = latest(root.path()).unwrap().unwrap();
        assert!(
            in_force.ends_with("step-00000001"),
            "{}",
            in_force.display()
        );
        // The next save redoes it from scratch and removes the leftovers.
        begin(root.path(), 2, &state(2)).unwrap();
        commit(root.path(), 2, 3).unwrap();
        assert!(!root.path().join(".tmp-step-00000002").exists());
        let names: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-") || n.starts_with(".tmp"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_or_corrupt_checkpoint_is_named_in_the_error() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join(LATEST), "step-00000009").unwrap();
        let err = latest(root.path()).unwrap_err().to_string();
        assert!(
            err.contains("step-00000009") && err.contains("missing"),
            "{err}"
        );
        let dir = root.path().join("step-00000009");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(RUNTIME), b"\xff\xff").unwrap();
        let err = RuntimeState::read(&dir).unwrap_err().to_string();
        assert!(err.contains("runtime.bin"), "{err}");
    }
}

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
//!     checksums.json       size and CRC-32 of every file above (written last)
//! ```
//!
//! A checkpoint is assembled in `.tmp-step-N/` ([`begin`]), the learner
//! writes its part there, then [`commit`] records every file's checksum,
//! fsyncs the files and every directory, moves it into place and only then
//! names it in `latest`. A `kill -9` or a crash of the actor mid-write leaves
//! a `.tmp-*` directory that the next write removes; `latest` still names the
//! old one. Re-saving a step that exists swaps the two directories in one
//! `renameat2(RENAME_EXCHANGE)`, so what `latest` names is never missing.
//!
//! [`latest_intact`] is what a resume reads: the checkpoint `latest` names if
//! its checksums hold, else the newest one that does, with every checkpoint
//! it skipped and why (a flipped byte, a truncated file, a missing manifest). A save is idempotent, so the caller redoes a save
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
    /// The windows behind the displayed pass rates (metrics.jsonl's
    /// `pass_rates` and their gauges), by `domain/bucket`.
    pub display: std::collections::BTreeMap<String, crate::curriculum::stats::Window>,
    /// Bytes of each run log (`metrics.jsonl`, ...) when the checkpoint was
    /// taken: a resume cuts each log back to them, so no line is repeated.
    pub logs: std::collections::BTreeMap<String, u64>,
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
    #[error("no intact checkpoint to resume from; each was skipped:{0}")]
    NoneIntact(String),
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
/// The checkpoint's own manifest: every file's size and CRC-32.
pub const CHECKSUMS: &str = "checksums.json";

/// One file of a checkpoint as [`CHECKSUMS`] records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileSum {
    bytes: u64,
    crc32: u32,
}

/// The content of [`CHECKSUMS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checksums {
    step: u64,
    /// Path relative to the checkpoint directory → size and checksum.
    files: std::collections::BTreeMap<String, FileSum>,
}

/// A checkpoint that [`latest_intact`] passed over, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub dir: PathBuf,
    pub why: String,
}

fn sum_file(path: &Path) -> std::io::Result<FileSum> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileSum {
        bytes,
        crc32: h.finalize(),
    })
}

/// Every regular file under `dir`, relative to it, sorted; and every
/// directory (`dir` itself first), for fsync.
fn walk(dir: &Path) -> std::io::Result<(Vec<String>, Vec<PathBuf>)> {
    let (mut files, mut dirs) = (Vec::new(), vec![dir.to_path_buf()]);
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        for e in fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(dir).expect("under dir").to_path_buf();
                files.push(rel.to_string_lossy().into_owned());
            }
        }
        i += 1;
    }
    files.sort();
    Ok((files, dirs))
}

/// Checks checkpoint `dir` against its [`CHECKSUMS`]: every listed file present
/// with its size and CRC-32, nothing else present, the runtime state and the
/// learner's manifest among them. The reason it fails, if it does.
pub fn verify(dir: &Path) -> Result<(), String> {
    let path = dir.join(CHECKSUMS);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{CHECKSUMS} is missing"));
        }
        Err(e) => return Err(format!("reading {CHECKSUMS}: {e}")),
    };
    let sums: Checksums =
        serde_json::from_slice(&text).map_err(|e| format!("{CHECKSUMS} is unreadable: {e}"))?;
    for needed in [RUNTIME.to_string(), format!("{LEARNER_DIR}/manifest.json")] {
        if !sums.files.contains_key(&needed) {
            return Err(format!("{CHECKSUMS} does not list {needed}"));
        }
    }
    let (present, _) = walk(dir).map_err(|e| format!("listing: {e}"))?;
    for rel in &present {
        if rel != CHECKSUMS && !sums.files.contains_key(rel) {
            return Err(format!("{rel} is not in {CHECKSUMS}"));
        }
    }
    for (rel, want) in &sums.files {
        let got = sum_file(&dir.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        if got.bytes != want.bytes {
            return Err(format!(
                "{rel} has {} bytes, {CHECKSUMS} says {} (truncated or torn)",
                got.bytes, want.bytes
            ));
        }
        if got.crc32 != want.crc32 {
            return Err(format!(
                "{rel}: CRC-32 {:08x}, {CHECKSUMS} says {:08x} (corrupted)",
                got.crc32, want.crc32
            ));
        }
    }
    Ok(())
}

/// The checkpoint a resume should use: the one `latest` names if it is intact,
/// else the newest intact `step-*` directory; with every checkpoint passed over
/// and why, newest first. `Ok((None, []))` when there is no checkpoint at all;
/// an error naming each one and its fault when none is intact.
pub fn latest_intact(root: &Path) -> Result<(Option<PathBuf>, Vec<Skipped>), CheckpointError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let mut skipped = Vec::new();
    match fs::read_to_string(root.join(LATEST)) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if dir.is_dir() {
                candidates.push(dir);
            } else {
                skipped.push(Skipped {
                    why: format!("{LATEST} names it, but it is missing"),
                    dir,
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", &root.join(LATEST))(e)),
    }
    let mut steps = Vec::new();
    match fs::read_dir(root) {
        Ok(rd) => {
            for e in rd {
                let path = e.map_err(io("listing", root))?.path();
                let is_step = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"));
                if is_step && path.is_dir() && !candidates.contains(&path) {
                    steps.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("listing", root)(e)),
    }
    steps.sort();
    candidates.extend(steps.into_iter().rev());
    for dir in candidates {
        match verify(&dir) {
            Ok(()) => return Ok((Some(dir), skipped)),
            Err(why) => skipped.push(Skipped { dir, why }),
        }
    }
    if skipped.is_empty() {
        Ok((None, skipped))
    } else {
        Err(CheckpointError::NoneIntact(
            skipped
                .iter()
                .map(|s| format!("\n  {}: {}", s.dir.display(), s.why))
                .collect(),
        ))
    }
}
/// Moves each skipped `step-*` directory out of the checkpoint rotation, to
/// `skipped-step-*` beside it (kept for inspection, never pruned or resumed
/// from), so that a run resumed from an older checkpoint does not keep a newer
/// broken one as its newest and prune the checkpoints it writes itself.
/// Returns where each one went.
pub fn set_aside(root: &Path, skipped: &[Skipped]) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut moved = Vec::new();
    for s in skipped {
        let Some(name) = s.dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("step-") || !s.dir.is_dir() || s.dir.parent() != Some(root) {
            continue;
        }
        let mut dest = root.join(format!("skipped-{name}"));
        let mut n = 1;
        while dest.exists() {
            dest = root.join(format!("skipped-{name}.{n}"));
            n += 1;
        }
        fs::rename(&s.dir, &dest).map_err(io("setting aside", &s.dir))?;
        moved.push(dest);
    }
    if !moved.is_empty() {
        File::open(root)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", root))?;
    }
    Ok(moved)
}

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
    let tmp_name = format!(".tmp-{name}");
    let tmp = root.join(&tmp_name);
    let dest = root.join(&name);
    // Checksums of everything written, then every file and directory synced
    // (the learner's subdirectory and the checkpoint's own included), so that
    // what is renamed into place is on disk whole.
    let (files, dirs) = walk(&tmp).map_err(io("listing", &tmp))?;
    let mut sums = Checksums {
        step,
        files: Default::default(),
    };
    for rel in files.iter().filter(|r| *r != CHECKSUMS) {
        let path = tmp.join(rel);
        let sum = sum_file(&path).map_err(io("reading", &path))?;
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing", &path))?;
        sums.files.insert(rel.clone(), sum);
    }
    let manifest = tmp.join(CHECKSUMS);
    let json = serde_json::to_vec_pretty(&sums).expect("checksums serialise");
    write_atomic(&manifest, &json).map_err(io("writing", &manifest))?;
    for d in dirs.iter().rev() {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing", d))?;
    }
    let root_dir = File::open(root).map_err(io("opening", root))?;
    if dest.exists() {
        // A step saved again (the final save after a periodic one, a redone
        // save): swap the two in one step, so `latest` never names a missing
        // directory; the old one is then at the temp name, and removed.
        exchange(&root_dir, &tmp_name, &name).map_err(io("swapping into place", &tmp))?;
        fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
    } else {
        fs::rename(&tmp, &dest).map_err(io("renaming into place", &tmp))?;
    }
    root_dir.sync_all().map_err(io("syncing", root))?;
    let latest = root.join(LATEST);
    write_atomic(&latest, name.as_bytes()).map_err(io("writing", &latest))?;
    prune(root, keep, &name)?;
    Ok(dest)
}

/// Atomically exchanges `a` and `b` under `dir` (both must exist).
fn exchange(dir: &File, a: &str, b: &str) -> std::io::Result<()> {
    use nix::fcntl::{RenameFlags, renameat2};
    renameat2(dir, a, dir, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

/// Deletes all but the newest `keep` checkpoints, and stale temp dirs; never
/// `current`, the one just committed (a newer `step-*` left behind by an
/// earlier life of the run must not push it out).
fn prune(root: &Path, keep: usize, current: &str) -> Result<(), CheckpointError> {
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
        } else if name.starts_with("step-") && name != current {
            steps.push(path);
        }
    }
    steps.sort();
    let keep = keep.saturating_sub(1);
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
    /// Fails saves with ENOSPC when it fires (a full disk), after the whole
    /// checkpoint was written to its temp dir and before it is committed.
    disk_full: Arc<Fault>,
}

/// Spawns the checkpointer linked to `supervisor`.
pub async fn spawn(
    settings: Settings,
    queues: Option<QueueHook>,
    fault: Arc<Fault>,
    disk_full: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let actor = Checkpointer {
        settings,
        queues,
        fault,
        disk_full,
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
        if self.disk_full.count() {
            // As a full disk fails the manifest's write: the temp dir stays
            // behind, never taken as a checkpoint, and is removed next time.
            return Ok(Err(CheckpointError::Io {
                what: "writing",
                path: tmp.join(CHECKSUMS),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC (injected)
            }));
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
            display: Default::default(),
            logs: Default::default(),
        }
    }

    /// A whole checkpoint of `step`: runtime state and a stand-in learner part.
    fn save(root: &Path, step: u64, keep: usize) -> PathBuf {
        let tmp = begin(root, step, &state(step)).unwrap();
        fs::create_dir(tmp.join(LEARNER_DIR)).unwrap();
        fs::write(tmp.join(LEARNER_DIR).join("manifest.json"), b"{}").unwrap();
        fs::write(
            tmp.join(LEARNER_DIR).join("state-1.bin"),
            vec![step as u8; 4096],
        )
        .unwrap();
        commit(root, step, keep).unwrap()
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

    fn skipped_after(root: &Path, why: &str) -> PathBuf {
        let (dir, skipped) = latest_intact(root).unwrap();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].dir.ends_with("step-00000003"), "{skipped:?}");
        assert!(skipped[0].why.contains(why), "{skipped:?}");
        dir.unwrap()
    }

    #[test]
    fn every_checkpoint_carries_checksums_that_a_resume_verifies() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(latest_intact(root.path()).unwrap(), (None, vec![]));
        for step in 1..=3 {
            save(root.path(), step, 3);
        }
        let newest = root.path().join("step-00000003");
        assert_eq!(verify(&newest), Ok(()));
        let text = fs::read_to_string(newest.join(CHECKSUMS)).unwrap();
        for f in [
            "runtime.bin",
            "learner/manifest.json",
            "learner/state-1.bin",
        ] {
            assert!(text.contains(f), "{text}");
        }
        assert_eq!(latest_intact(root.path()).unwrap(), (Some(newest), vec![]));
    }

    #[test]
    fn a_flipped_byte_falls_back_to_the_previous_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=3 {
            save(root.path(), step, 3);
        }
        let state = root.path().join("step-00000003/learner/state-1.bin");
        let mut bytes = fs::read(&state).unwrap();
        bytes[100] ^= 0x01;
        fs::write(&state, bytes).unwrap();
        let dir = skipped_after(root.path(), "corrupted");
        assert!(dir.ends_with("step-00000002"));
    }

    #[test]
    fn a_resume_past_a_broken_newer_checkpoint_sets_it_aside_and_prune_keeps_what_it_writes() {
        let root = tempfile::tempdir().unwrap();
        for step in [10, 20] {
            save(root.path(), step, 2);
        }
        let state = root.path().join("step-00000020/learner/state-1.bin");
        let mut bytes = fs::read(&state).unwrap();
        bytes[7] ^= 0x40;
        fs::write(&state, bytes).unwrap();
        let (dir, skipped) = latest_intact(root.path()).unwrap();
        assert!(dir.unwrap().ends_with("step-00000010"));
        let moved = set_aside(root.path(), &skipped).unwrap();
        assert_eq!(moved, vec![root.path().join("skipped-step-00000020")]);
        // The resumed run saves at 15 (a reload changed the interval), keeping 1.
        save(root.path(), 15, 1);
        let steps: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        assert_eq!(steps, vec!["step-00000015".to_string()]);
        assert!(
            latest(root.path())
                .unwrap()
                .unwrap()
                .ends_with("step-00000015")
        );
        assert!(root.path().join("skipped-step-00000020").is_dir());
        // Even a newer step-* that nobody set aside never pushes out the
        // checkpoint just written.
        fs::create_dir(root.path().join("step-00000099")).unwrap();
        save(root.path(), 16, 1);
        assert!(root.path().join("step-00000016").is_dir());
        assert!(!root.path().join("step-00000015").exists());
    }

    #[test]
    fn a_truncated_file_falls_back_to_the_previous_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=3 {
            save(root.path(), step, 3);
        }
        let runtime = root.path().join("step-00000003").join(RUNTIME);
        let len = fs::metadata(&runtime).unwrap().len();
        File::options()
            .write(true)
            .open(&runtime)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert!(skipped_after(root.path(), "truncated").ends_with("step-00000002"));
    }

    #[test]
    fn a_deleted_manifest_falls_back_to_the_previous_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=3 {
            save(root.path(), step, 3);
        }
        fs::remove_file(root.path().join("step-00000003").join(CHECKSUMS)).unwrap();
        assert!(skipped_after(root.path(), "missing").ends_with("step-00000002"));
    }

    #[test]
    fn latest_naming_a_missing_directory_falls_back_too() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=2 {
            save(root.path(), step, 3);
        }
        fs::write(root.path().join(LATEST), "step-00000003").unwrap();
        let (dir, skipped) = latest_intact(root.path()).unwrap();
        assert!(dir.unwrap().ends_with("step-00000002"));
        assert!(skipped[0].why.contains("missing"), "{skipped:?}");
    }

    #[test]
    fn no_intact_checkpoint_is_a_clear_error_naming_each_fault() {
        let root = tempfile::tempdir().unwrap();
        for step in 1..=2 {
            save(root.path(), step, 3);
        }
        fs::remove_file(root.path().join("step-00000002").join(CHECKSUMS)).unwrap();
        fs::write(root.path().join("step-00000001/learner/extra.bin"), b"x").unwrap();
        let err = latest_intact(root.path()).unwrap_err().to_string();
        assert!(err.contains("no intact checkpoint"), "{err}");
        assert!(
            err.contains("step-00000002") && err.contains("missing"),
            "{err}"
        );
        assert!(
            err.contains("step-00000001") && err.contains("extra.bin"),
            "{err}"
        );
    }

    #[test]
    fn saving_a_step_again_swaps_it_in_and_latest_never_names_a_missing_dir() {
        let root = tempfile::tempdir().unwrap();
        save(root.path(), 4, 2);
        // The same step again (the final save after a periodic one).
        let tmp = begin(root.path(), 4, &state(4)).unwrap();
        fs::create_dir(tmp.join(LEARNER_DIR)).unwrap();
        fs::write(
            tmp.join(LEARNER_DIR).join("manifest.json"),
            b"{\"again\":1}",
        )
        .unwrap();
        // Until the commit, the old one is in force and whole.
        assert_eq!(verify(&root.path().join("step-00000004")), Ok(()));
        commit(root.path(), 4, 2).unwrap();
        let dir = latest(root.path()).unwrap().unwrap();
        assert_eq!(verify(&dir), Ok(()));
        assert_eq!(
            fs::read_to_string(dir.join("learner/manifest.json")).unwrap(),
            "{\"again\":1}"
        );
        assert!(!dir.join("learner/state-1.bin").exists());
        assert!(!root.path().join(".tmp-step-00000004").exists());
    }
}

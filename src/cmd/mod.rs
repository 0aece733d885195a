//! One module per subcommand area. Each exposes its clap arguments and a `run`
//! that returns the process exit code.

pub mod bench;
pub mod curate;
pub mod data;
pub mod export;
pub mod generate;
pub mod grade;
pub mod model;
pub mod report;
pub mod sandbox;
pub mod serve;
pub mod train;

use std::path::{Path, PathBuf};

/// The run directory and checkpoint directory that `path` names: a run (its
/// latest intact checkpoint, skipped ones reported) or one checkpoint
/// (`RUN/checkpoints/step-N`).
pub fn locate_checkpoint(path: &Path, cmd: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    if path.join("checkpoints").is_dir() {
        let (dir, skipped) = gradus_actors::checkpointer::latest_intact(&path.join("checkpoints"))?;
        for s in &skipped {
            eprintln!(
                "gradus {cmd}: warning: skipping checkpoint {}: {}",
                s.dir.display(),
                s.why
            );
        }
        let dir = dir.ok_or_else(|| anyhow::anyhow!("{} has no checkpoint yet", path.display()))?;
        Ok((path.to_path_buf(), dir))
    } else if path.join("learner").is_dir() {
        let run = path
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| anyhow::anyhow!("a checkpoint directory lies in RUN/checkpoints/"))?;
        Ok((run.to_path_buf(), path.to_path_buf()))
    } else {
        anyhow::bail!(
            "{}: neither a run directory (with checkpoints/) nor a checkpoint (with learner/)",
            path.display()
        );
    }
}

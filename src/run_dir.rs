//! The run directory: everything a run leaves behind, in one place.
//!
//! ```text
//! RUN_DIR/
//!   config.toml        the resolved config the run started with (updated on reload)
//!   events.jsonl       one JSON object per line: {"event", "time", "step", ...}
//!   metrics.jsonl      one line of learner and curriculum figures per step
//!   rollouts.jsonl     a sample of generated responses with their rewards
//!   eval.jsonl         held-out pass rate of every bucket, at the start, every
//!                      [eval].every steps, at stage boundaries and at the end
//!   http.addr          the address the HTTP endpoint is bound to
//!   checkpoints/       step-NNNNNNNN/ directories, written atomically
//! ```
//!
//! Files are appended line by line and flushed per line, so a run killed with
//! `kill -9` leaves every complete line readable and at most one torn last line,
//! which readers skip.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Map, Value, json};

/// Handle on a run directory.
pub struct RunDir {
    root: PathBuf,
    events: BufWriter<File>,
    metrics: BufWriter<File>,
    rollouts: BufWriter<File>,
    eval: BufWriter<File>,
}

impl RunDir {
    /// Opens (creating if needed) the run directory at `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(root.join("checkpoints"))
            .with_context(|| format!("creating run directory {}", root.display()))?;
        let append = |name: &str| -> anyhow::Result<BufWriter<File>> {
            let path = root.join(name);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(BufWriter::new(f))
        };
        Ok(Self {
            root: root.to_path_buf(),
            events: append("events.jsonl")?,
            metrics: append("metrics.jsonl")?,
            rollouts: append("rollouts.jsonl")?,
            eval: append("eval.jsonl")?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Appends `{"event": name, "time": <unix seconds>, "step": step, ...fields}`.
    pub fn event(&mut self, name: &str, step: u64, fields: Value) -> anyhow::Result<()> {
        let mut obj = Map::new();
        obj.insert("event".into(), json!(name));
        obj.insert("time".into(), json!(unix_time()));
        obj.insert("step".into(), json!(step));
        if let Value::Object(extra) = fields {
            obj.extend(extra);
        }
        write_line(&mut self.events, &Value::Object(obj))
    }

    /// Appends one line to metrics.jsonl.
    pub fn metrics(&mut self, line: &Value) -> anyhow::Result<()> {
        write_line(&mut self.metrics, line)
    }

    /// Appends one line to rollouts.jsonl.
    pub fn rollout(&mut self, line: &Value) -> anyhow::Result<()> {
        write_line(&mut self.rollouts, line)
    }

    /// Appends one line to eval.jsonl.
    pub fn eval(&mut self, line: &Value) -> anyhow::Result<()> {
        write_line(&mut self.eval, line)
    }

    /// Writes `name` under the run dir atomically (temp file, fsync, rename).
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.root.join(name), bytes)
    }
}

fn write_line(w: &mut BufWriter<File>, v: &Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

/// Seconds since the Unix epoch, with millisecond precision.
pub fn unix_time() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// Writes `path` so that readers see the old content or the new, never a mix:
/// write a sibling temp file, fsync it, rename it over `path`, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    gradus_actors::checkpointer::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSONL file written by [`RunDir`], skipping a torn last line.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_name_time_step_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(dir.path()).unwrap();
        run.event("stage_advanced", 12, json!({"from": "a", "to": "b"}))
            .unwrap();
        // A torn line, as kill -9 mid-write would leave.
        fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap()
            .write_all(b"{\"event\": \"tor")
            .unwrap();
        let events = read_jsonl(&dir.path().join("events.jsonl")).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "stage_advanced");
        assert_eq!(events[0]["step"], 12);
        assert_eq!(events[0]["to"], "b");
        assert!(events[0]["time"].as_f64().unwrap() > 1.0e9);
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("http.addr");
        write_atomic(&p, b"127.0.0.1:1").unwrap();
        write_atomic(&p, b"127.0.0.1:2").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "127.0.0.1:2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

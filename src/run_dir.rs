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
//!   lock               held (flock) by the one process writing the run: its pid and start time
//!   *.jsonl.superseded what a resume cut from a log (lines after the checkpoint it resumed from)
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

/// The exclusive right to write a run directory: an `flock` on `RUN_DIR/lock`,
/// taken before anything else is written and held for the life of the process.
/// The kernel drops it when the process dies, however it dies, so a `kill -9`
/// never leaves a stale lock; the file only says who holds it. Readers
/// (`gradus report`, the dashboards) never take it and never block.
pub struct RunLock {
    _held: nix::fcntl::Flock<File>,
}

impl RunLock {
    /// The lock file's name under the run directory.
    pub const FILE: &'static str = "lock";

    /// Takes the lock on `root` (creating the directory for a new run), or fails
    /// at once, naming the holder's pid and start time, if another process has it.
    pub fn acquire(root: &Path) -> anyhow::Result<Self> {
        use nix::fcntl::{Flock, FlockArg};
        fs::create_dir_all(root)
            .with_context(|| format!("creating run directory {}", root.display()))?;
        let path = root.join(Self::FILE);
        // Opened without truncating: a refused process must not erase the
        // holder's details. Rust opens files close-on-exec, so the programs the
        // sandbox starts never inherit the lock.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut &file, &mut text);
                anyhow::bail!(
                    "{} is in use: another gradus process holds its lock ({}); one process \
                     writes a run directory at a time. Stop that process first (SIGTERM \
                     checkpoints and exits), then `gradus train --resume {}`",
                    root.display(),
                    describe_holder(&text),
                    root.display()
                );
            }
            Err((_, e)) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        };
        let now = unix_time();
        let line = json!({"pid": std::process::id(), "started": now, "started_utc": utc(now)});
        held.set_len(0)
            .and_then(|()| {
                use std::io::Seek;
                held.seek(std::io::SeekFrom::Start(0))?;
                writeln!(&mut *held, "{line}")?;
                held.sync_data()
            })
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _held: held })
    }
}

/// "pid N, started 2026-12-02 18:55:01 UTC, 42 s ago", from the lock file's line.
fn describe_holder(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
        return "its pid is not recorded yet".into();
    };
    let pid = v["pid"]
        .as_u64()
        .map_or("unknown".into(), |p| p.to_string());
    match v["started"].as_f64() {
        Some(t) => format!(
            "pid {pid}, started {}, {:.0} s ago",
            utc(t),
            (unix_time() - t).max(0.0)
        ),
        None => format!("pid {pid}"),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (the civil-from-days algorithm).
fn utc(t: f64) -> String {
    let secs = t.max(0.0) as u64;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Handle on a run directory.
pub struct RunDir {
    root: PathBuf,
    events: BufWriter<File>,
    metrics: BufWriter<File>,
    rollouts: BufWriter<File>,
    eval: BufWriter<File>,
}

/// Suffix of the key under which a checkpoint's log lengths record the
/// number of a log's newest rotated file.
pub const ROTATED_KEY: &str = "#rotated";

/// Appends `from[start..]` to `to`, ending it with a newline.
fn append_tail(from: &Path, start: u64, to: &Path) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut src = File::open(from).with_context(|| format!("reading {}", from.display()))?;
    src.seek(SeekFrom::Start(start))?;
    let mut dst = OpenOptions::new()
        .create(true)
        .append(true)
        .open(to)
        .with_context(|| format!("opening {}", to.display()))?;
    let copied = std::io::copy(&mut src, &mut dst)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    if copied > 0 {
        use std::io::Read;
        let mut last = [0u8];
        src.seek(SeekFrom::End(-1))?;
        src.read_exact(&mut last)?;
        if last[0] != b'\n' {
            dst.write_all(b"\n")?;
        }
    }
    dst.sync_all()
        .with_context(|| format!("syncing {}", to.display()))
}

/// The append-only logs, which a resume cuts back to the checkpoint's lengths.
pub const LOGS: [&str; 4] = [
    "events.jsonl",
    "metrics.jsonl",
    "rollouts.jsonl",
    "eval.jsonl",
];

impl RunDir {
    /// Opens (creating if needed) the run directory at `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        Self::open_at(root, None).map(|(dir, _)| dir)
    }

    /// Opens the run directory of a resume: each log is first cut back to
    /// the length it had when the checkpoint was taken (`lengths`), so the
    /// steps between that checkpoint and the crash are not logged twice and a
    /// torn last line is not glued to the next one. Returns the bytes cut per
    /// log (only those that had any).
    pub fn open_at(
        root: &Path,
        lengths: Option<&std::collections::BTreeMap<String, u64>>,
    ) -> anyhow::Result<(Self, Map<String, Value>)> {
        fs::create_dir_all(root.join("checkpoints"))
            .with_context(|| format!("creating run directory {}", root.display()))?;
        let mut cut = Map::new();
        for name in LOGS {
            let path = root.join(name);
            // A rotation after the checkpoint (its save then failed, or the
            // process was killed): the first file rotated since holds the
            // live log as the checkpoint knew it, and is the live log again;
            // everything after it goes to NAME.superseded.
            let rotated_then = lengths.and_then(|l| l.get(&format!("{name}{ROTATED_KEY}")));
            if let Some(&then) = rotated_then {
                let since: Vec<(u64, PathBuf)> = rotated_files(root, name)
                    .into_iter()
                    .filter(|(n, _)| *n > then)
                    .collect();
                if let Some(((_, first), later)) = since.split_first() {
                    let aside = root.join(format!("{name}.superseded"));
                    let keep = lengths.and_then(|l| l.get(name)).copied().unwrap_or(0);
                    let first_len = fs::metadata(first)?.len();
                    let mut moved = first_len.saturating_sub(keep);
                    append_tail(first, keep.min(first_len), &aside)?;
                    for (_, p) in later {
                        moved += fs::metadata(p)?.len();
                        append_tail(p, 0, &aside)?;
                        fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
                    }
                    if path.exists() {
                        moved += fs::metadata(&path)?.len();
                        append_tail(&path, 0, &aside)?;
                    }
                    OpenOptions::new()
                        .write(true)
                        .open(first)
                        .and_then(|f| {
                            f.set_len(keep.min(first_len))?;
                            f.sync_all()
                        })
                        .with_context(|| format!("cutting {}", first.display()))?;
                    fs::rename(first, &path).with_context(|| {
                        format!("restoring {} to {}", first.display(), path.display())
                    })?;
                    File::open(root)
                        .and_then(|d| d.sync_all())
                        .with_context(|| format!("syncing {}", root.display()))?;
                    cut.insert(name.into(), json!(moved));
                    continue;
                }
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            // A log the checkpoint does not know (an older checkpoint) is only
            // rid of a torn tail.
            let keep = match lengths.and_then(|l| l.get(name)) {
                // Never past the last whole line: a torn tail goes too.
                Some(&n) => n.min(complete_prefix(&path)?),
                None => complete_prefix(&path)?,
            };
            if keep < meta.len() {
                // Nothing is lost: what is cut (the steps a resume redoes, a
                // torn line, the events of an attempt since superseded) is
                // kept, appended to NAME.superseded, which readers ignore.
                let tail = {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut f =
                        File::open(&path).with_context(|| format!("reading {}", path.display()))?;
                    f.seek(SeekFrom::Start(keep))?;
                    let mut b = Vec::new();
                    f.read_to_end(&mut b)?;
                    b
                };
                let aside = root.join(format!("{name}.superseded"));
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&aside)
                    .and_then(|mut f| {
                        f.write_all(&tail)?;
                        if !tail.ends_with(b"\n") {
                            f.write_all(b"\n")?;
                        }
                        f.sync_all()
                    })
                    .with_context(|| format!("writing {}", aside.display()))?;
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        f.set_len(keep)?;
                        f.sync_all()
                    })
                    .with_context(|| format!("cutting {} back to {keep} bytes", path.display()))?;
                cut.insert(name.into(), json!(meta.len() - keep));
            }
        }
        let dir = Self::append_all(root)?;
        Ok((dir, cut))
    }

    fn append_all(root: &Path) -> anyhow::Result<Self> {
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

    /// Rotates each log longer than `max_bytes`: `metrics.jsonl` becomes
    /// `metrics.jsonl.N` (N one past the newest rotated file) and a fresh
    /// `metrics.jsonl` is started; only the newest `keep` rotated files of each
    /// log are kept. Called just before a checkpoint records the logs' lengths,
    /// so a rotated file holds only lines from before that checkpoint and a
    /// resume never has to touch one. Returns the files written.
    pub fn rotate(&mut self, max_bytes: u64, keep: usize) -> anyhow::Result<Vec<String>> {
        let mut rotated = Vec::new();
        let root = self.root.clone();
        for (name, w) in [
            ("events.jsonl", &mut self.events),
            ("metrics.jsonl", &mut self.metrics),
            ("rollouts.jsonl", &mut self.rollouts),
            ("eval.jsonl", &mut self.eval),
        ] {
            w.flush()?;
            if w.get_ref().metadata()?.len() <= max_bytes {
                continue;
            }
            let mut old = rotated_files(&root, name);
            let next = old.last().map_or(1, |(n, _)| n + 1);
            let to = root.join(format!("{name}.{next}"));
            fs::rename(root.join(name), &to)
                .with_context(|| format!("rotating {name} to {}", to.display()))?;
            let fresh = OpenOptions::new()
                .create(true)
                .append(true)
                .open(root.join(name))
                .with_context(|| format!("opening {name}"))?;
            *w = BufWriter::new(fresh);
            old.push((next, to.clone()));
            let excess = old.len().saturating_sub(keep);
            for (_, path) in &old[..excess] {
                fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            }
            File::open(&root)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", root.display()))?;
            rotated.push(to.display().to_string());
        }
        Ok(rotated)
    }

    /// The length of each log now (every line flushed), for a checkpoint,
    /// and with it, under `NAME#rotated`, the number of its newest rotated
    /// file (0 for none), so that a resume from this checkpoint can undo a
    /// rotation that happened after it. A log whose flush fails is recorded at
    /// its length on disk (whole lines only reach it) and named in the errors.
    pub fn lengths(
        &mut self,
    ) -> (
        std::collections::BTreeMap<String, u64>,
        Vec<(String, anyhow::Error)>,
    ) {
        let mut out = std::collections::BTreeMap::new();
        let mut errors = Vec::new();
        let root = self.root.clone();
        for (name, w) in [
            ("events.jsonl", &mut self.events),
            ("metrics.jsonl", &mut self.metrics),
            ("rollouts.jsonl", &mut self.rollouts),
            ("eval.jsonl", &mut self.eval),
        ] {
            if let Err(e) = w.flush() {
                errors.push((name.to_string(), anyhow::Error::from(e)));
            }
            match w.get_ref().metadata() {
                Ok(m) => {
                    out.insert(name.to_string(), m.len());
                }
                Err(e) => errors.push((name.to_string(), e.into())),
            }
            let newest = rotated_files(&root, name).last().map_or(0, |(n, _)| *n);
            out.insert(format!("{name}{ROTATED_KEY}"), newest);
        }
        (out, errors)
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

/// The rotated files of log `name` under `root` (`name.1`, `name.2`, ...), oldest
/// first: the reader's own listing, so writer and reader agree on the names.
pub use gradus_report::jsonl::rotated_files;

/// Bytes of `path` up to and including its last newline (a torn last line
/// left out).
fn complete_prefix(path: &Path) -> anyhow::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_232_901.5), "2026-12-02 17:35:01 UTC");
    }

    #[test]
    fn a_second_lock_on_a_run_dir_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        let held = RunLock::acquire(&root).unwrap();
        // flock locks belong to the open file: a second open in this process
        // conflicts exactly as another process's would.
        let err = format!("{:#}", RunLock::acquire(&root).err().unwrap());
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("UTC") && err.contains("in use"), "{err}");
        // The refusal did not touch the holder's record.
        let text = fs::read_to_string(root.join(RunLock::FILE)).unwrap();
        assert!(
            text.contains(&format!("\"pid\":{}", std::process::id())),
            "{text}"
        );
        drop(held);
        RunLock::acquire(&root).unwrap();
    }

    #[test]
    fn logs_over_the_size_rotate_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(dir.path()).unwrap();
        for step in 0..12u64 {
            for _ in 0..10 {
                run.metrics(&json!({"step": step, "pad": "x".repeat(100)}))
                    .unwrap();
            }
            run.rotate(1000, 3).unwrap();
        }
        let rotated = rotated_files(dir.path(), "metrics.jsonl");
        let numbers: Vec<u64> = rotated.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [10, 11, 12]);
        // Each rotated file is whole lines; the live one starts fresh.
        for (_, p) in &rotated {
            assert_eq!(read_jsonl(p).unwrap().len(), 10);
        }
        assert_eq!(
            fs::metadata(dir.path().join("metrics.jsonl"))
                .unwrap()
                .len(),
            0
        );
        // Small logs are left alone.
        assert!(rotated_files(dir.path(), "events.jsonl").is_empty());
        // The lengths a checkpoint records are the fresh files'.
        run.metrics(&json!({"step": 12})).unwrap();
        let (lengths, errors) = run.lengths();
        assert!(errors.is_empty());
        assert_eq!(lengths["metrics.jsonl"], 12);
        assert_eq!(lengths["metrics.jsonl#rotated"], 12);
    }

    #[test]
    fn a_resume_undoes_a_rotation_made_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(dir.path()).unwrap();
        for step in 0..5u64 {
            run.metrics(&json!({"step": step, "pad": "x".repeat(100)}))
                .unwrap();
        }
        // The checkpoint at step 4 records the lengths (no rotation yet).
        let (at_checkpoint, _) = run.lengths();
        for step in 5..12u64 {
            run.metrics(&json!({"step": step, "pad": "x".repeat(100)}))
                .unwrap();
        }
        // The next save rotates the log, then fails (or is killed) ...
        assert_eq!(run.rotate(1000, 3).unwrap().len(), 1);
        run.metrics(&json!({"step": 12})).unwrap();
        drop(run);
        // ... so the resume goes back to step 4: the rotated file is the live
        // log again, cut to the checkpoint, and steps 5..12 are set aside.
        let (_run, cut) = RunDir::open_at(dir.path(), Some(&at_checkpoint)).unwrap();
        assert!(rotated_files(dir.path(), "metrics.jsonl").is_empty());
        let steps: Vec<u64> = read_jsonl(&dir.path().join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [0, 1, 2, 3, 4]);
        let aside: Vec<u64> = read_jsonl(&dir.path().join("metrics.jsonl.superseded"))
            .unwrap()
            .iter()
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(aside, [5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(cut["metrics.jsonl"].as_u64().unwrap() > 0);
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

//! Per-slot cgroups (v1 `pids` and `memory`), nested under this process's own
//! cgroup. The pids cap binds root too (RLIMIT_NPROC does not); the memory
//! limit turns a memory bomb into `memory_limit` instead of a host OOM.
//!
//! The slot's isolation cell (cell root and supervisor, which live as long as
//! the slot) joins the slot's cgroups once, when it is built; every process of
//! every job is forked inside the cell and so starts in them, with no
//! per-job migration. That matters: on cgroup v1 each write to `cgroup.procs`
//! waits for an RCU grace period once the machine has had no migration for a
//! while (measured here: 5-7 ms per write with 20 ms between writes, 30-70 us
//! back to back), which alone would cost a cold job more than the whole
//! isolation budget. A job's limits are the slot's limits plus room for the
//! cell's own processes (`overhead_processes`, `overhead_mb`). A slot runs one
//! job at a time, so the cgroups are created once and reset per job. "The job
//! is over" means `pids.current` is back to the cell's own count (taken when
//! the cell reported ready): zombies count there (not in `cgroup.procs`), so
//! nothing of the job is left, not even an unreaped entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroups of one slot; a controller is `Err` where it is unavailable.
#[derive(Debug)]
pub struct SlotCgroups {
    pub pids: Result<PathBuf, String>,
    pub memory: Result<PathBuf, String>,
    /// The limits last written, to skip rewriting them.
    last: Option<(u64, u64)>,
}

fn own_cgroup(controller: &str) -> Result<PathBuf, String> {
    let text =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mount = Path::new("/sys/fs/cgroup").join(controller);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if ctrls.split(',').any(|c| c == controller) {
            if !mount.is_dir() {
                return Err(format!("{} is not mounted", mount.display()));
            }
            return Ok(mount.join(path.trim_start_matches('/')));
        }
    }
    Err(format!(
        "no cgroup v1 `{controller}` hierarchy in /proc/self/cgroup (cgroup v2 only?)"
    ))
}

fn create(controller: &str, name: &str, probe_file: &str) -> Result<PathBuf, String> {
    let dir = own_cgroup(controller)?.join(name);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    if !dir.join(probe_file).exists() {
        return Err(format!("{} has no {probe_file}", dir.display()));
    }
    Ok(dir)
}

impl SlotCgroups {
    /// Create (or adopt) the cgroups named `name`.
    pub fn create(name: &str) -> SlotCgroups {
        SlotCgroups {
            pids: create("pids", name, "pids.max"),
            memory: create("memory", name, "memory.limit_in_bytes"),
            last: None,
        }
    }

    /// Set this job's limits (unless they are already set) and reset the
    /// peak counter (a job should not learn the last one's peak).
    pub fn prepare(&mut self, processes: u64, memory_bytes: u64) -> io::Result<()> {
        if let Ok(m) = &self.memory {
            let _ = fs::write(m.join("memory.max_usage_in_bytes"), "0");
        }
        if self.last == Some((processes, memory_bytes)) {
            return Ok(());
        }
        self.last = None;
        if let Ok(p) = &self.pids {
            fs::write(p.join("pids.max"), processes.to_string())?;
        }
        if let Ok(m) = &self.memory {
            // memsw must stay >= limit: lower it first when shrinking.
            let memsw = m.join("memory.memsw.limit_in_bytes");
            let has_memsw = memsw.exists();
            let limit = memory_bytes.to_string();
            if has_memsw {
                let _ = fs::write(&memsw, "-1");
            }
            fs::write(m.join("memory.limit_in_bytes"), &limit)?;
            if has_memsw {
                fs::write(&memsw, &limit)?;
            }
        }
        self.last = Some((processes, memory_bytes));
        Ok(())
    }

    /// The slot's cgroup directories that exist.
    pub fn dirs(&self) -> Vec<PathBuf> {
        [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok().cloned())
            .collect()
    }

    /// The `cgroup.procs` files the cell root writes its pid to.
    pub fn cell_procs_files(&self) -> Vec<String> {
        [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned())
            .collect()
    }

    /// Pids of the cell (cell root and supervisor), for memory accounting.
    pub fn cell_pids(&self) -> Vec<i32> {
        let Ok(p) = &self.pids else { return Vec::new() };
        procs_of(p)
    }

    /// OOM kills so far (the `oom_kill` line of memory.oom_control).
    pub fn oom_kills(&self) -> u64 {
        let Ok(m) = &self.memory else { return 0 };
        fs::read_to_string(m.join("memory.oom_control"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Tasks alive (or unreaped) in the slot, the cell's own included, or
    /// `None` without a pids cgroup.
    pub fn tasks(&self) -> Option<u64> {
        let p = self.pids.as_ref().ok()?;
        fs::read_to_string(p.join("pids.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn pids_in(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
        {
            out.extend(procs_of(d));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILL every process in the cgroups (the cell with its jobs),
    /// repeatedly, until none is left or `limit` passes. Returns whether the
    /// cgroups are empty.
    pub fn kill_all(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let pids = self.pids_in();
            if pids.is_empty() && self.tasks().unwrap_or(0) == 0 {
                return true;
            }
            for p in pids {
                // SAFETY: kill(2) with a pid read from our own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Wait until nothing of the job is left (zombies included): the task
    /// count is back to the cell's own `cell` tasks. Polls; gives up after
    /// `limit` (false).
    pub fn wait_settled(&self, cell: u64, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut sleep = Duration::from_micros(50);
        loop {
            match self.tasks() {
                Some(n) if n <= cell => return true,
                None => return true,
                _ => {}
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(2));
        }
    }

    /// Kill what is left and remove the directories.
    pub fn remove(&self) {
        self.kill_all(Duration::from_secs(2));
        for d in [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
        {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Processes in the cgroup `dir`.
pub fn procs_of(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Remove slot cgroups left by gradus processes that no longer exist.
pub fn remove_stale(prefix: &str) {
    for controller in ["pids", "memory"] {
        let Ok(parent) = own_cgroup(controller) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let owner: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
            if let Some(pid) = owner
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

//! Per-slot cgroups (v1 `pids` and `memory`), nested under this process's own
//! cgroup. The pids cap binds root too (RLIMIT_NPROC does not); the memory
//! limit turns a memory bomb into `memory_limit` instead of a host OOM.
//!
//! Each slot has two levels: the slot's cgroup holds its isolation cell (the
//! cell root and the supervisor, which live as long as the slot), and its
//! `job` child holds every process of the current job (the supervisor moves
//! each candidate and checker there before it runs anything). The job's limits
//! are set on the child. A slot runs one job at a time, so the cgroups are
//! created once and reset per job. "The job is over" means the child's
//! `pids.current` is 0: zombies count there (not in `cgroup.procs`), so
//! nothing of the job is left, not even an unreaped entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroups of one slot; a controller is `Err` where it is unavailable.
/// `pids` and `memory` are the slot's own (the cell); the job's are their
/// `job` children.
#[derive(Debug)]
pub struct SlotCgroups {
    pub pids: Result<PathBuf, String>,
    pub memory: Result<PathBuf, String>,
    /// The limits last written to the job cgroups, to skip rewriting them.
    last: Option<(u64, u64)>,
}

/// The name of the job's child cgroup under a slot's.
const JOB: &str = "job";

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
    for d in [dir.clone(), dir.join(JOB)] {
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("creating {}: {e}", d.display())),
        }
        if !d.join(probe_file).exists() {
            return Err(format!("{} has no {probe_file}", d.display()));
        }
    }
    Ok(dir)
}

fn job_dirs<'a>(
    dirs: impl IntoIterator<Item = &'a Result<PathBuf, String>>,
) -> impl Iterator<Item = PathBuf> {
    dirs.into_iter()
        .filter_map(|c| c.as_ref().ok())
        .map(|d| d.join(JOB))
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

    /// Set this job's limits on the job cgroups (unless they are already set).
    pub fn prepare(&mut self, processes: u64, memory_bytes: u64) -> io::Result<()> {
        if self.last == Some((processes, memory_bytes)) {
            return Ok(());
        }
        self.last = None;
        if let Ok(p) = &self.pids {
            fs::write(p.join(JOB).join("pids.max"), processes.to_string())?;
        }
        if let Ok(m) = &self.memory {
            let m = &m.join(JOB);
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

    /// The `cgroup.procs` files the cell root writes its pid to.
    pub fn cell_procs_files(&self) -> Vec<String> {
        [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned())
            .collect()
    }

    /// The `cgroup.procs` files the supervisor puts each job process in.
    pub fn job_procs_files(&self) -> Vec<String> {
        job_dirs([&self.pids, &self.memory])
            .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned())
            .collect()
    }

    /// Pids of the cell (cell root and supervisor), for memory accounting.
    pub fn cell_pids(&self) -> Vec<i32> {
        let Ok(p) = &self.pids else { return Vec::new() };
        procs_of(p)
    }

    /// OOM kills in the job cgroup so far (the `oom_kill` line of memory.oom_control).
    pub fn oom_kills(&self) -> u64 {
        let Ok(m) = &self.memory else { return 0 };
        fs::read_to_string(m.join(JOB).join("memory.oom_control"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Job tasks still alive (or unreaped), or `None` without a pids cgroup.
    pub fn tasks(&self) -> Option<u64> {
        let p = self.pids.as_ref().ok()?;
        fs::read_to_string(p.join(JOB).join("pids.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn pids_in(&self, cell: bool) -> Vec<i32> {
        let mut out = Vec::new();
        for d in job_dirs([&self.pids, &self.memory]) {
            out.extend(procs_of(&d));
        }
        if cell {
            for d in [&self.pids, &self.memory]
                .into_iter()
                .filter_map(|c| c.as_ref().ok())
            {
                out.extend(procs_of(d));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILL every process of the job, repeatedly, until none is left or
    /// `limit` passes. Returns whether the job cgroups are empty.
    pub fn kill_all(&self, limit: Duration) -> bool {
        self.kill(false, limit)
    }

    /// Like [`SlotCgroups::kill_all`], and the cell (supervisor) too.
    pub fn kill_cell(&self, limit: Duration) -> bool {
        self.kill(true, limit)
    }

    fn kill(&self, cell: bool, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let pids = self.pids_in(cell);
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

    /// Wait until nothing of the job is left (zombies included). Polls; gives
    /// up after `limit` and then kills whatever remains.
    pub fn wait_empty(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut sleep = Duration::from_micros(50);
        loop {
            match self.tasks() {
                Some(0) => return true,
                None if self.pids_in(false).is_empty() => return true,
                _ => {}
            }
            if Instant::now() > end {
                return self.kill_all(Duration::from_secs(5));
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(2));
        }
    }

    /// Kill what is left and remove the directories.
    pub fn remove(&self) {
        self.kill_cell(Duration::from_secs(2));
        for d in [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
        {
            let _ = fs::remove_dir(d.join(JOB));
            let _ = fs::remove_dir(d);
        }
    }
}

fn procs_of(dir: &Path) -> Vec<i32> {
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
                let _ = fs::remove_dir(e.path().join(JOB));
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

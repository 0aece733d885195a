//! Per-slot cgroups (v1 `pids` and `memory`), nested under this process's own
//! cgroup. The pids cap binds root too (RLIMIT_NPROC does not); the memory
//! limit turns a memory bomb into `memory_limit` instead of a host OOM.
//!
//! A slot runs one job at a time, so its cgroups are created once and reset
//! per job. "The job is over" means `pids.current` is 0: zombies count there
//! (not in `cgroup.procs`), so nothing of the job is left, not even an
//! unreaped entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroups of one slot; a controller is `None` where it is unavailable.
#[derive(Debug)]
pub struct SlotCgroups {
    pub pids: Result<PathBuf, String>,
    pub memory: Result<PathBuf, String>,
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
        }
    }

    /// Set this job's limits and reset the peak counter.
    pub fn prepare(&self, processes: u64, memory_bytes: u64) -> io::Result<()> {
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
            let _ = fs::write(m.join("memory.max_usage_in_bytes"), "0");
        }
        Ok(())
    }

    /// The `cgroup.procs` files a job root writes its pid to.
    pub fn procs_files(&self) -> Vec<String> {
        [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned())
            .collect()
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

    /// Tasks still alive (or unreaped), or `None` without a pids cgroup.
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
            if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILL every process in the cgroups, repeatedly, until none is left
    /// or `limit` passes. Returns whether the cgroups are empty.
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

    /// Wait until nothing of the job is left (zombies included). Polls; gives
    /// up after `limit` and then kills whatever remains.
    pub fn wait_empty(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut sleep = Duration::from_micros(50);
        loop {
            match self.tasks() {
                Some(0) => return true,
                None if self.pids_in().is_empty() => return true,
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
        self.kill_all(Duration::from_secs(2));
        for d in [&self.pids, &self.memory]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
        {
            let _ = fs::remove_dir(d);
        }
    }
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

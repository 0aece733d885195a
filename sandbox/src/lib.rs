//! gradus-sandbox: run untrusted generated programs against tests, isolated,
//! with honest verdicts, faster than a bare interpreter start.
//!
//! # Layout
//! - [`job`]: what to run and the JSON schema (plus public dataset rows).
//! - [`outcome`]: verdicts, per-case results, partial credit.
//! - [`config`]: [`SandboxConfig`], the `[sandbox]` table of a run config.
//! - `worker`: a pool slot and its isolation cell: namespaces and read-only
//!   mounts built once per slot, a supervisor (PID 1 of the cell) that serves
//!   the slot's jobs and renews per job what a job could leave behind.
//! - `harness.py`: the Python side; in warm mode the isolation steps run
//!   there, in order, and its supervisor is a zygote.
//! - [`cell`]: the native supervisor of cold mode (a separate single-threaded
//!   program, started by exec), the isolation steps in Rust with nix.
//! - [`seccomp`]: the deny list, compiled before any fork.
//! - `cgroup`: per-slot pids and memory cgroups (the cell and its jobs).
//! - `verdict`: records from the job's supervisor to an [`Outcome`].
//! - [`bench`](mod@bench): bare subprocess vs cold vs warm, for `gradus sandbox bench`.
//! - `service` (feature `service`): `gradus sandbox serve`'s HTTP server,
//!   SandboxFusion's `/run_code`, and the runtime's client of many services.
//!
//! # Use
//! ```no_run
//! # async fn f() -> Result<(), gradus_sandbox::SandboxError> {
//! use gradus_sandbox::{Sandbox, SandboxConfig, job::parse_line};
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let job = parse_line(r#"{"id":"1","source":"print(input())","tests":{"kind":"stdio","cases":[{"input":"hi","output":"hi"}]}}"#).unwrap();
//! let outcome = sandbox.run(job).await;
//! assert_eq!(outcome.verdict, gradus_sandbox::Verdict::Accepted);
//! # Ok(()) }
//! ```
//! Waits for subprocesses happen on tokio's blocking threads (`spawn_blocking`),
//! never on its workers; at most `workers` jobs run at once and further calls
//! wait for a slot (backpressure, no unbounded queue).

pub mod bench;
pub mod cell;
mod cgroup;
pub mod compare;
pub mod config;
pub mod job;
pub mod marshal;
pub mod outcome;
pub mod python;
pub mod seccomp;
#[cfg(feature = "service")]
pub mod service;
mod verdict;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

pub use config::{Mode, Protections, PythonConfig, Requirement, SandboxConfig};
pub use job::{Job, Limits, Tests};
pub use outcome::{CaseResult, Outcome, ProcessRecord, Verdict};

use worker::{Shared, Slot};

/// The harness source, written next to the cache so its bytecode is cached.
const HARNESS: &str = include_str!("harness.py");
const CGROUP_PREFIX: &str = "gradus-sandbox-";

/// Runs every job in a task of its own, all at once; outcomes in input
/// order (a task that panicked is a sandbox error).
pub(crate) async fn run_each<F, Fut>(jobs: Vec<Job>, run: F) -> Vec<Outcome>
where
    F: Fn(Job) -> Fut,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let handles: Vec<_> = jobs.into_iter().map(|j| tokio::spawn(run(j))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| {
            Outcome::failure(
                "",
                Verdict::SandboxError,
                0,
                format!("sandbox task failed: {e}"),
            )
        }));
    }
    out
}

/// Why a sandbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Python(#[from] python::PythonError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("writing the harness to {0}: {1}")]
    Harness(PathBuf, std::io::Error),
    #[error("harness server: {0}")]
    Server(String),
    #[error(
        "cold mode needs the native cell launcher: set SandboxConfig::launcher to a binary \
         that calls gradus_sandbox::cell::main_if_requested() first thing in main (the gradus \
         binary, or gradus-sandbox-cell), or call that function first in this program's main"
    )]
    NoLauncher,
    #[error("cell launcher {0}: {1}")]
    Launcher(PathBuf, String),
}

/// A bounded pool of isolated Python workers.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    slots: Mutex<Vec<Slot>>,
    freed: Condvar,
    /// One per slot. A job's permit lives on its blocking thread, so a
    /// caller that stops waiting (its future dropped) frees it only when the
    /// job ends: never more blocking threads than slots.
    permits: Arc<tokio::sync::Semaphore>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.slots.lock() {
            for s in slots.iter_mut() {
                s.shutdown();
            }
        }
    }
}

/// One protection as `doctor` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProtectionStatus {
    pub name: String,
    pub requirement: Requirement,
    /// `on`, `off` (by config) or `missing: <why>`.
    pub state: String,
    pub stops: String,
}

impl ProtectionStatus {
    pub fn active(&self) -> bool {
        self.state == "on"
    }
}

fn write_harness() -> Result<PathBuf, SandboxError> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in HARNESS.bytes() {
        hash = (hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let dir = std::env::temp_dir().join(format!("gradus-sandbox-harness-{hash:016x}"));
    let file = dir.join("gradus_harness.py");
    if std::fs::read_to_string(&file).ok().as_deref() == Some(HARNESS) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| SandboxError::Harness(dir.clone(), e))?;
    let tmp = dir.join(format!(".gradus_harness.{}.tmp", std::process::id()));
    std::fs::write(&tmp, HARNESS).map_err(|e| SandboxError::Harness(tmp.clone(), e))?;
    std::fs::rename(&tmp, &file).map_err(|e| SandboxError::Harness(file.clone(), e))?;
    Ok(dir)
}

/// The native supervisor's settings: the launcher (checked to be an
/// executable file) and what fresh interpreters need from the harness.
fn native(
    config: &SandboxConfig,
    python: &std::path::Path,
    dir: &std::path::Path,
) -> Result<worker::Native, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let launcher = config
        .launcher
        .clone()
        .or_else(cell::self_launcher)
        .ok_or(SandboxError::NoLauncher)?;
    match launcher.metadata() {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => {
            return Err(SandboxError::Launcher(
                launcher,
                "not an executable file".into(),
            ));
        }
        Err(e) => return Err(SandboxError::Launcher(launcher, e.to_string())),
    }
    let (harness, prefixes) = python::harness_code(python, &config.python.flags, worker::ENV, dir)?;
    Ok(worker::Native {
        launcher,
        harness,
        prefixes,
    })
}

impl Sandbox {
    /// Build a sandbox: validate the config, resolve the interpreter, compile
    /// the seccomp filter and create one pair of cgroups per slot. Each slot's
    /// cell starts on its first job (or with [`Sandbox::warm_up`]).
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let python = python::resolve(&config.python.interpreter)?;
        let dir = write_harness()?;
        let boot = format!(
            "import sys; sys.path.insert(0, {:?}); import gradus_harness; gradus_harness.main()",
            dir.to_string_lossy()
        );
        let seccomp = if config.protections.seccomp == Requirement::Off {
            Vec::new()
        } else {
            seccomp::programs()?
        };
        let native = match config.mode {
            Mode::Cold => Some(native(&config, &python, &dir)?),
            Mode::Warm => None,
        };
        let work_root = config.work_root.clone().unwrap_or_else(std::env::temp_dir);
        cgroup::remove_stale(CGROUP_PREFIX);
        let pid = std::process::id();
        // Several sandboxes may live in one process (doctor builds a probe one).
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slots = (0..config.workers)
            .map(|i| {
                Slot::new(
                    i,
                    cgroup::SlotCgroups::create(&format!("{CGROUP_PREFIX}{pid}-{seq}-{i}")),
                )
            })
            .collect();
        let workers = config.workers;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                shared: Shared {
                    cfg: config,
                    python,
                    boot,
                    seccomp,
                    work_root,
                    native,
                    running: Mutex::default(),
                },
                slots: Mutex::new(slots),
                freed: Condvar::new(),
                permits: Arc::new(tokio::sync::Semaphore::new(workers)),
            }),
        })
    }

    /// The resolved settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.shared.cfg
    }

    /// The interpreter binary jobs run with.
    pub fn interpreter(&self) -> &std::path::Path {
        &self.inner.shared.python
    }

    /// Build every slot's isolation cell now rather than on its first job.
    pub fn warm_up(&self) -> Result<(), SandboxError> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        for s in slots.iter_mut() {
            s.warm_up(&self.inner.shared)
                .map_err(SandboxError::Server)?;
        }
        Ok(())
    }

    /// Memory of each idle slot (server, cell root and supervisor), bytes (PSS).
    pub fn idle_worker_memory(&self) -> Vec<u64> {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().filter_map(Slot::server_memory).collect()
    }

    /// Tasks (processes and threads, zombies included) left in the job
    /// cgroups of the slots not running a job now. 0 once every job is over.
    pub fn job_tasks_left(&self) -> u64 {
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().filter_map(|s| s.job_tasks()).sum()
    }

    /// Run one job, blocking the calling thread. Waits for a free slot.
    pub fn run_blocking(&self, job: &Job) -> Outcome {
        self.run_blocking_capturing(job).0
    }

    /// [`Sandbox::run_blocking`], with what each of the job's processes did
    /// (whole stdout and stderr, exit status, times): for callers that report
    /// a run rather than a verdict (`/run_code`).
    pub fn run_blocking_capturing(&self, job: &Job) -> (Outcome, Vec<ProcessRecord>) {
        let mut slot = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(s) = slots.pop() {
                    break s;
                }
                slots = self
                    .inner
                    .freed
                    .wait(slots)
                    .unwrap_or_else(|p| p.into_inner());
            }
        };
        let (out, procs) = slot.execute_capturing(&self.inner.shared, job);
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
        self.inner.freed.notify_one();
        (out, procs.into_iter().map(ProcessRecord::from).collect())
    }

    /// Run one job. The wait happens on a blocking thread; at most `workers`
    /// jobs run at once and later callers wait here for a slot.
    pub async fn run(&self, job: Job) -> Outcome {
        self.run_capturing(job).await.0
    }

    /// [`Sandbox::run`] with the processes' records
    /// ([`Sandbox::run_blocking_capturing`]).
    pub async fn run_capturing(&self, job: Job) -> (Outcome, Vec<ProcessRecord>) {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let this = self.clone();
        let id = job.id.clone();
        let total = job.tests.total();
        let run = move || {
            let _permit = permit;
            this.run_blocking_capturing(&job)
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(o) => o,
            Err(e) => (
                Outcome::failure(
                    &id,
                    Verdict::SandboxError,
                    total,
                    format!("sandbox worker panicked: {e}"),
                ),
                Vec::new(),
            ),
        }
    }

    /// Jobs running now (each holds a slot).
    pub fn busy(&self) -> usize {
        self.inner.shared.cfg.workers - self.inner.permits.available_permits()
    }

    /// Kills the isolation cell running job `id`, its supervisor and the
    /// job's processes, as a crash of our own would: the job ends as
    /// `sandbox_error` (never a verdict on the program) and the slot builds a
    /// new cell for its next job. For cancelling work and for fault
    /// injection. Returns false when no job with that id is running.
    pub fn cancel(&self, id: &str) -> bool {
        let mut running = self
            .inner
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match running.get_mut(id) {
            Some(r) => {
                r.cancel();
                true
            }
            None => false,
        }
    }

    /// Run many jobs, at most `workers` at a time; outcomes in input order.
    pub async fn run_batch(&self, jobs: Vec<Job>) -> Vec<Outcome> {
        let this = self.clone();
        run_each(jobs, move |j| {
            let this = this.clone();
            async move { this.run(j).await }
        })
        .await
    }

    /// Which protections are active here, found by running a probe job with
    /// every configured protection downgraded to optional, in this
    /// sandbox's mode (warm and cold have different supervisors).
    pub fn doctor(&self) -> Vec<ProtectionStatus> {
        let sh = &self.inner.shared;
        let mut cfg = sh.cfg.clone();
        let mut p = cfg.protections.clone();
        macro_rules! soften {
            ($($f:ident),*) => { $( if p.$f == Requirement::Required { p.$f = Requirement::Optional; } )* };
        }
        soften!(
            pids_cgroup,
            memory_cgroup,
            user_ns,
            mount_ns,
            net_ns,
            ipc_ns,
            pid_ns,
            uts_ns,
            readonly_root,
            private_tmp,
            proc,
            rlimits,
            uid_drop,
            no_new_privs,
            seccomp
        );
        cfg.protections = p;
        cfg.workers = 1;
        let applied = match Sandbox::new(cfg) {
            Ok(probe) => probe.probe(),
            Err(e) => Err(e.to_string()),
        };
        let mut out = Vec::new();
        let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let cg = slots
            .first()
            .map(|s| (s.cgroups.pids.clone(), s.cgroups.memory.clone()));
        for (name, req) in sh.cfg.protections.list() {
            let state = if req == Requirement::Off {
                "off".to_string()
            } else {
                match (name, &cg, &applied) {
                    ("pids_cgroup", Some((p, _)), _) => p
                        .as_ref()
                        .map(|_| "on".to_string())
                        .unwrap_or_else(|e| format!("missing: {e}")),
                    ("memory_cgroup", Some((_, m)), _) => m
                        .as_ref()
                        .map(|_| "on".to_string())
                        .unwrap_or_else(|e| format!("missing: {e}")),
                    (_, _, Ok(list)) => list
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, s)| s.clone())
                        .unwrap_or_else(|| "missing: not reported by the probe job".into()),
                    (_, _, Err(e)) => format!("missing: probe job failed: {e}"),
                }
            };
            out.push(ProtectionStatus {
                name: name.into(),
                requirement: req,
                state,
                stops: Protections::what(name).trim().into(),
            });
        }
        out
    }

    fn probe(&self) -> Result<Vec<(String, String)>, String> {
        let job = Job {
            id: "doctor".into(),
            language: job::Language::Python,
            source: "print(1)".into(),
            tests: Tests::Stdio {
                cases: vec![job::StdioCase {
                    input: String::new(),
                    output: "1".into(),
                }],
                compare: Default::default(),
            },
            limits: Default::default(),
        };
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.first_mut().ok_or("no slot")?;
        slot.probe(&self.inner.shared, &job)
    }
}

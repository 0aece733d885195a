//! The native cell supervisor: a small single-threaded Rust program that
//! builds a slot's isolation cell and serves its cold-mode jobs, in place of
//! the Python harness server (which stays the supervisor in warm mode, where
//! the candidate runs in a fork of an interpreter with the harness imported).
//!
//! Why a separate program: the sandbox lives in a multi-threaded tokio
//! process, where only async-signal-safe code may run between `fork` and
//! `exec`. The slot therefore starts the launcher with `exec` (std's
//! `Command`), and everything that forks (the cell root, the supervisor, each
//! job's children) happens in this single-threaded process. A binary opts in
//! by calling [`main_if_requested`] first thing in `main`, before any thread
//! exists: the `gradus` binary does, and so does this crate's own
//! `gradus-sandbox-cell` (used by its tests). The slot points at the binary
//! through [`crate::SandboxConfig::launcher`], or at the running program when
//! it called [`main_if_requested`] and the field is unset.
//!
//! # Process tree of one slot (cold mode)
//! ```text
//! launcher S (host namespaces, host root: writes the cell's uid maps)
//!   J  cell root: setsid, slot cgroups, new namespaces, read-only mounts
//!     I  PID 1 of the cell's PID namespace: supervisor and reaper; serves
//!        the slot's jobs from its control socket, one at a time
//!       C  candidate: a fresh interpreter (ns uid 1000), confined, per test
//!       K  checker for HumanEval tests (ns uid 2000), same confinement
//! ```
//!
//! # Protocol (the same as the Python server's)
//! fd 0 is a `SOCK_SEQPACKET` socket. The first message is `C` with a memfd
//! holding the cell settings (a marshal dict); the answer is `R` + marshal of
//! the protections applied, or `E` + a `setup_error` record. Each later
//! message is `J` with the job request (memfd), the result pipe (write end)
//! and, for HumanEval jobs, the test-code pipe. Records go to the result pipe
//! as length-prefixed marshal dicts; the slot judges them (`verdict`). The
//! supervisor closes the result pipe only after every process of the job is
//! reaped; a failure of its own is reported as `setup_error` and ends the
//! cell (the slot builds a new one).
//!
//! # Layout
//! - `settings`: the cell settings and job requests, checked field by field.
//! - `setup`: S and J, the steps shared by every job of the slot.
//! - `init`: I, the job loop and what it renews between jobs.
//! - `run`: stdio, call and function tests, each in fresh interpreters.
//! - `spawn`: a confined child, its isolation steps in order, then `execve`.
//! - `watch`: I's view of one run (pipes, limits, deadline, reaping, records).

mod init;
mod run;
mod settings;
mod setup;
mod spawn;
mod watch;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `argv[1]` that makes a binary the cell launcher.
pub const ARG: &str = "--gradus-sandbox-cell";
/// `argv[2]`: the protocol this build speaks. A launcher of another build (a
/// binary replaced on disk during a run) refuses to serve rather than guess.
pub const PROTOCOL: &str = concat!("protocol-1-", env!("CARGO_PKG_VERSION"));

/// Exit status of a launcher started with arguments it does not understand.
const EXIT_USAGE: i32 = 2;

static SELF_LAUNCHER: OnceLock<PathBuf> = OnceLock::new();

/// Call first thing in `main`, before any thread is started. When argv says
/// this process is a cell launcher, it serves the cell and exits (never
/// returning); otherwise it notes that this binary can be the launcher of its
/// own sandboxes and returns.
pub fn main_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(ARG)) {
        // `/proc/self/exe`, exec'd from a fork of this process, is this very
        // binary even if the file was replaced or removed since it started
        // (a rebuild during a run), so the launcher always speaks our protocol.
        let exe = std::path::Path::new("/proc/self/exe");
        let me = if exe.exists() {
            Some(exe.to_path_buf())
        } else {
            std::env::current_exe().ok()
        };
        if let Some(me) = me {
            let _ = SELF_LAUNCHER.set(me);
        }
        return;
    }
    let code = match args.next() {
        Some(p) if p == PROTOCOL => setup::serve(),
        other => {
            eprintln!(
                "gradus-sandbox-cell: this launcher speaks {PROTOCOL}, asked for {:?}; \
                 a sandbox of another build started it",
                other.unwrap_or_default()
            );
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}

/// The running program, when it called [`main_if_requested`].
pub fn self_launcher() -> Option<PathBuf> {
    SELF_LAUNCHER.get().cloned()
}

/// A failure of the supervisor's own, reported as a `setup_error` record:
/// the step that failed, its errno (0 when none) and a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{step}: {msg} (errno {errno})")]
pub(crate) struct SetupError {
    pub step: String,
    pub errno: i32,
    pub msg: String,
}

impl SetupError {
    pub fn new(step: impl Into<String>, errno: i32, msg: impl Into<String>) -> SetupError {
        SetupError {
            step: step.into(),
            errno,
            msg: msg.into(),
        }
    }

    /// A failed call: `step` and the errno it set.
    pub fn sys(step: impl Into<String>, e: nix::errno::Errno) -> SetupError {
        SetupError::new(step, e as i32, e.desc())
    }

    /// The record the slot reads (`t: setup_error`).
    pub fn record(&self) -> Vec<u8> {
        let mut e = crate::marshal::Encoder::default();
        e.dict();
        e.str("t");
        e.str("setup_error");
        e.str("step");
        e.str(&self.step);
        e.str("errno");
        e.int(self.errno as i128);
        e.str("msg");
        e.str(&self.msg);
        e.end_dict();
        e.buf
    }
}

/// Shorthand: a failed call at `step`.
pub(crate) fn sys<T>(step: &str, r: nix::Result<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError::sys(step, e))
}

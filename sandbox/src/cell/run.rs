//! The three shapes of tests as the native supervisor runs them, each in
//! fresh interpreters (cold mode). What crosses to the slot is the same as
//! with the Python supervisor: stdout captured here and compared by Rust;
//! call results as marshal frames compared by Rust; HumanEval `check` run in
//! a separate checker process under its own uid that gets the test code
//! through its own pipe, after the candidate was started without it.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;

use super::init::Supervisor;
use super::settings::JobRequest;
use super::setup::{CANDIDATE_UID, CHECKER_UID};
use super::spawn::{Child, spawn};
use super::watch::{Sink, Watch, write_frame};
use super::{SetupError, sys};
use crate::marshal::Encoder;

/// Where a fresh interpreter finds its harness and task (call, function).
const BOOT_FD: RawFd = 6;
/// Where a fresh interpreter reports a compile error of the program.
const COMPILE_FD: RawFd = 7;

fn pipe() -> Result<(OwnedFd, OwnedFd), SetupError> {
    sys("pipe", pipe2(OFlag::O_CLOEXEC))
}

/// An anonymous in-memory file holding `data`, offset back at 0.
fn memfd(name: &str, data: &[u8]) -> Result<OwnedFd, SetupError> {
    let fd = sys(name, memfd_create(name, MFdFlags::MFD_CLOEXEC))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)
        .map_err(|e| SetupError::new(name, e.raw_os_error().unwrap_or(0), e.to_string()))?;
    let fd = OwnedFd::from(f);
    sys(
        name,
        nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekSet),
    )?;
    Ok(fd)
}

fn devnull() -> Result<OwnedFd, SetupError> {
    sys(
        "open /dev/null",
        nix::fcntl::open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
    )
}

impl Supervisor<'_> {
    /// A memfd with the harness code and a task: marshal `(code, role, args)`,
    /// where `args` is already marshal (from the slot).
    fn boot(&self, role: &str, args: &[u8]) -> Result<OwnedFd, SetupError> {
        let mut e = Encoder::default();
        e.tuple(3);
        e.bytes(&self.cell.harness);
        e.str(role);
        e.buf.extend_from_slice(args);
        memfd("boot", &e.buf)
    }

    /// One stdio case: the program with `input` on stdin. Returns the
    /// program's compile error instead of a record when it has one.
    pub(super) fn run_stdio_case(
        &self,
        job: &JobRequest,
        i: usize,
        input: &str,
        res_w: RawFd,
    ) -> Result<Option<String>, SetupError> {
        let lim = &job.limits;
        let stdin = memfd("stdin", input.as_bytes())?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (cmp_r, cmp_w) = pipe()?;
        let started = Instant::now();
        let fds = [
            (0, stdin.as_fd()),
            (1, out_w.as_fd()),
            (2, err_w.as_fd()),
            (COMPILE_FD, cmp_w.as_fd()),
        ];
        let child = Child {
            uid: CANDIDATE_UID,
            cpu_s: lim.cpu_s,
            fds: &fds,
            argv: &self.stdio_argv,
        };
        let pid = spawn(&self.conf, lim, &child)?;
        drop((stdin, out_w, err_w, cmp_w));
        let mut w = Watch::new(lim, res_w);
        w.add(out_r, Sink::Stdout)?;
        w.add(err_r, Sink::Stderr)?;
        w.add(cmp_r, Sink::Compile)?;
        w.run(pid, &[])?;
        if let Some(msg) = w.compile_error() {
            return Ok(Some(msg));
        }
        write_frame(res_w, &w.record(pid, i as i64, "candidate", started, true))?;
        Ok(None)
    }

    /// Call-based tests: every result leaves the candidate as marshal
    /// frames on fd 3, forwarded to the slot as they come.
    pub(super) fn run_call(
        &self,
        job: &JobRequest,
        inputs: usize,
        boot_args: &[u8],
        res_w: RawFd,
    ) -> Result<Option<String>, SetupError> {
        let lim = &job.limits;
        let null = devnull()?;
        let (proto_r, proto_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (cmp_r, cmp_w) = pipe()?;
        let boot = self.boot("call", boot_args)?;
        let started = Instant::now();
        let fds = [
            (0, null.as_fd()),
            (1, out_w.as_fd()),
            (2, err_w.as_fd()),
            (3, proto_w.as_fd()),
            (BOOT_FD, boot.as_fd()),
            (COMPILE_FD, cmp_w.as_fd()),
        ];
        let child = Child {
            uid: CANDIDATE_UID,
            cpu_s: lim.cpu_s * inputs.max(1) as f64,
            fds: &fds,
            argv: &self.harness_argv,
        };
        let pid = spawn(&self.conf, lim, &child)?;
        drop((null, proto_w, out_w, err_w, cmp_w, boot));
        let mut w = Watch::new(lim, res_w);
        w.add(out_r, Sink::Stdout)?;
        w.add(err_r, Sink::Stderr)?;
        w.add(proto_r, Sink::Frames("call"))?;
        w.add(cmp_r, Sink::Compile)?;
        w.run(pid, &[])?;
        if let Some(msg) = w.compile_error() {
            return Ok(Some(msg));
        }
        write_frame(res_w, &w.record(pid, -1, "candidate", started, false))?;
        Ok(None)
    }

    /// HumanEval shape: the checker K runs check(candidate) and calls into
    /// the candidate C over a socket; the supervisor watches both.
    pub(super) fn run_function(
        &self,
        job: &JobRequest,
        boot_args: &[u8],
        secret: OwnedFd,
        res_w: RawFd,
    ) -> Result<Option<String>, SetupError> {
        let lim = &job.limits;
        let (c_sock, k_sock) = sys(
            "socketpair",
            socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            ),
        )?;
        let null = devnull()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (kres_r, kres_w) = pipe()?;
        let (kerr_r, kerr_w) = pipe()?;
        let (cmp_r, cmp_w) = pipe()?;
        let boot = self.boot("candidate", boot_args)?;
        let started = Instant::now();
        let fds = [
            (0, null.as_fd()),
            (1, out_w.as_fd()),
            (2, err_w.as_fd()),
            (3, c_sock.as_fd()),
            (BOOT_FD, boot.as_fd()),
            (COMPILE_FD, cmp_w.as_fd()),
        ];
        let child = Child {
            uid: CANDIDATE_UID,
            cpu_s: lim.cpu_s,
            fds: &fds,
            argv: &self.harness_argv,
        };
        let cpid = spawn(&self.conf, lim, &child)?;
        drop((c_sock, out_w, err_w, cmp_w, boot));
        // The test code reaches only K, started after C: C never holds it.
        let mut none = Encoder::default();
        none.none();
        let boot = self.boot("checker", &none.buf)?;
        let fds = [
            (0, null.as_fd()),
            (1, kerr_w.as_fd()),
            (2, kerr_w.as_fd()),
            (3, k_sock.as_fd()),
            (4, secret.as_fd()),
            (5, kres_w.as_fd()),
            (BOOT_FD, boot.as_fd()),
        ];
        let child = Child {
            uid: CHECKER_UID,
            cpu_s: lim.cpu_s,
            fds: &fds,
            argv: &self.harness_argv,
        };
        let kpid = spawn(&self.conf, lim, &child)?;
        drop((k_sock, secret, kres_w, kerr_w, boot, null));
        let mut w = Watch::new(lim, res_w);
        w.add(out_r, Sink::Stdout)?;
        w.add(err_r, Sink::Stderr)?;
        w.add(kres_r, Sink::Frames("check"))?;
        w.add(kerr_r, Sink::Stderr)?;
        w.add(cmp_r, Sink::Compile)?;
        w.run(kpid, &[cpid])?;
        if let Some(msg) = w.compile_error() {
            return Ok(Some(msg));
        }
        write_frame(res_w, &w.record(cpid, -1, "candidate", started, false))?;
        write_frame(res_w, &w.record(kpid, -1, "checker", started, false))?;
        Ok(None)
    }
}

//! The supervisor's view of one run: the pipes to drain, the output and wall
//! limits to enforce, the children to reap, and the records for the slot.
//! A run ends only when the primary child has exited (or was killed), every
//! other process of the job is killed, every pipe is drained to EOF and every
//! child is reaped: a record never describes a job with processes still alive.

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::settings::JobLimits;
use super::{SetupError, sys};
use crate::marshal::Encoder;

/// What a pipe from a child carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sink {
    Stdout,
    Stderr,
    /// Length-prefixed frames, forwarded to the slot as `{t: tag, data}`.
    Frames(&'static str),
    /// One frame: the compile error of a fresh interpreter, if any.
    Compile,
}

struct Pipe {
    fd: OwnedFd,
    sink: Sink,
    buf: Vec<u8>,
}

/// How long one poll waits at most: the deadline is checked this often.
const TICK: Duration = Duration::from_millis(50);
/// Stderr kept while running (the last half of it when it grows past this).
const STDERR_KEEP: usize = 8192;
/// Stderr in a record.
const STDERR_REPORT: usize = 4096;

/// Write one length-prefixed record to the result pipe.
pub(super) fn write_frame(fd: RawFd, data: &[u8]) -> Result<(), SetupError> {
    let mut buf = Vec::with_capacity(4 + data.len());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
    let mut view = buf.as_slice();
    // SAFETY: the caller owns `fd` for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    while !view.is_empty() {
        match nix::unistd::write(fd, view) {
            Ok(n) => view = &view[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(SetupError::sys("write result pipe", e)),
        }
    }
    Ok(())
}

/// Kill every process of the job: as PID 1 of the job's PID namespace,
/// `kill(-1)` reaches them all (and never the caller); otherwise each group.
pub(super) fn kill_all(pids: &[Pid]) {
    if std::process::id() == 1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    } else {
        for p in pids {
            let _ = killpg(*p, Signal::SIGKILL);
        }
    }
}

/// Kill what is left of the job and reap every child, blocking.
pub(super) fn kill_rest() {
    kill_all(&[]);
    loop {
        let mut st = 0;
        // SAFETY: wait4 writes only the status int; rusage may be null.
        let pid = unsafe { libc::wait4(-1, &mut st, 0, std::ptr::null_mut()) };
        if pid > 0 || (pid < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR) {
            continue;
        }
        return;
    }
}

pub(super) struct Watch<'a> {
    lim: &'a JobLimits,
    res_w: RawFd,
    pipes: Vec<Pipe>,
    out: Vec<u8>,
    err: Vec<u8>,
    total: u64,
    deadline_s: f64,
    deadline: Instant,
    /// pid -> (wait status, CPU seconds).
    status: HashMap<i32, (i32, f64)>,
    killed: Option<&'static str>,
    compile: Vec<u8>,
    failed: Option<SetupError>,
}

impl<'a> Watch<'a> {
    pub fn new(lim: &'a JobLimits, res_w: RawFd) -> Watch<'a> {
        Watch {
            lim,
            res_w,
            pipes: Vec::new(),
            out: Vec::new(),
            err: Vec::new(),
            total: 0,
            deadline_s: lim.wall_s,
            deadline: Instant::now() + Duration::from_secs_f64(lim.wall_s),
            status: HashMap::new(),
            killed: None,
            compile: Vec::new(),
            failed: None,
        }
    }

    pub fn add(&mut self, fd: OwnedFd, sink: Sink) -> Result<(), SetupError> {
        let fl = sys(
            "fcntl",
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL),
        )?;
        let fl = nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK;
        sys(
            "fcntl",
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl)),
        )?;
        self.pipes.push(Pipe {
            fd,
            sink,
            buf: Vec::new(),
        });
        Ok(())
    }

    /// Wait for `primary`; then kill the rest of the job, drain every pipe
    /// to EOF and reap every child.
    pub fn run(&mut self, primary: Pid, others: &[Pid]) -> Result<(), SetupError> {
        let mut pids = vec![primary];
        pids.extend_from_slice(others);
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, primary.as_raw(), 0) };
        let pidfd = if raw >= 0 {
            // SAFETY: a new fd that nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
        } else {
            None
        };
        while !self.status.contains_key(&primary.as_raw()) {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && self.killed.is_none() {
                self.killed = Some("timeout");
            }
            if self.killed.is_some() {
                kill_all(&pids);
                break;
            }
            self.pump(left.min(TICK) + Duration::from_millis(1), pidfd.as_ref());
            self.reap(false);
        }
        drop(pidfd);
        kill_all(&pids);
        while !self.pipes.is_empty() {
            self.pump(TICK, None);
            self.reap(false);
        }
        self.reap(true);
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn reap(&mut self, block: bool) {
        loop {
            let mut st = 0;
            // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            let flags = if block { 0 } else { libc::WNOHANG };
            // SAFETY: wait4 fills the status and rusage it is given.
            let pid = unsafe { libc::wait4(-1, &mut st, flags, &mut ru) };
            if pid < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            if pid <= 0 {
                return;
            }
            let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
            self.status
                .insert(pid, (st, t(ru.ru_utime) + t(ru.ru_stime)));
        }
    }

    fn pump(&mut self, timeout: Duration, pidfd: Option<&OwnedFd>) {
        let mut fds: Vec<PollFd> = self
            .pipes
            .iter()
            .map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(p) = pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let ready: Vec<bool> = fds[..self.pipes.len()]
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut chunk = [0u8; 1 << 16];
        let mut closed = Vec::new();
        for (i, r) in ready.into_iter().enumerate() {
            if !r {
                continue;
            }
            let n = match nix::unistd::read(&self.pipes[i].fd, &mut chunk) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                closed.push(i);
                continue;
            }
            self.total += n as u64;
            let data = &chunk[..n];
            match self.pipes[i].sink {
                Sink::Stdout => self.out.extend_from_slice(data),
                Sink::Stderr => {
                    self.err.extend_from_slice(data);
                    if self.err.len() > STDERR_KEEP {
                        let cut = self.err.len() - STDERR_KEEP / 2;
                        self.err.drain(..cut);
                    }
                }
                Sink::Compile => {
                    if self.compile.len() < 1 << 16 {
                        self.compile.extend_from_slice(data);
                    }
                }
                Sink::Frames(tag) => {
                    self.pipes[i].buf.extend_from_slice(data);
                    self.forward(i, tag);
                }
            }
            if self.total > self.lim.output && self.killed.is_none() {
                self.killed = Some("output");
            }
        }
        for i in closed.into_iter().rev() {
            self.pipes.remove(i);
        }
    }

    fn forward(&mut self, i: usize, tag: &'static str) {
        loop {
            let buf = &mut self.pipes[i].buf;
            if buf.len() < 4 {
                return;
            }
            let n = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as u64;
            if n > self.lim.output {
                self.killed = self.killed.or(Some("output"));
                buf.clear();
                return;
            }
            let n = n as usize;
            if buf.len() < 4 + n {
                return;
            }
            let mut e = Encoder::default();
            e.dict();
            e.str("t");
            e.str(tag);
            e.str("data");
            e.bytes(&buf[4..4 + n]);
            e.end_dict();
            buf.drain(..4 + n);
            if let Err(err) = write_frame(self.res_w, &e.buf) {
                self.failed.get_or_insert(err);
            }
            if tag == "call" {
                self.deadline = Instant::now() + Duration::from_secs_f64(self.deadline_s);
            }
        }
    }

    /// The compile error a fresh interpreter reported, if any.
    pub fn compile_error(&self) -> Option<String> {
        let b = &self.compile;
        if b.len() < 4 {
            return None;
        }
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let msg = &b[4..b.len().min(4 + n)];
        Some(String::from_utf8_lossy(msg).into_owned())
    }

    /// The `proc` record of `pid`: how it ended, its CPU and wall time, the
    /// tail of stderr, and (for stdio tests) stdout up to the output limit.
    pub fn record(&self, pid: Pid, i: i64, role: &str, started: Instant, stdout: bool) -> Vec<u8> {
        let mut e = Encoder::default();
        e.dict();
        e.str("t");
        e.str("proc");
        e.str("i");
        e.int(i as i128);
        e.str("role");
        e.str(role);
        e.str("wall");
        e.float(started.elapsed().as_secs_f64());
        let st = self.status.get(&pid.as_raw()).copied();
        e.str("cpu");
        e.float(st.map_or(0.0, |s| s.1));
        e.str("killed");
        e.str(self.killed.unwrap_or(""));
        e.str("stderr");
        let tail = &self.err[self.err.len().saturating_sub(STDERR_REPORT)..];
        e.str(&String::from_utf8_lossy(tail));
        match st {
            None => {
                e.str("lost");
                e.bool(true);
            }
            Some((s, _)) if libc::WIFSIGNALED(s) => {
                e.str("signal");
                e.int(libc::WTERMSIG(s) as i128);
            }
            Some((s, _)) => {
                e.str("code");
                e.int(libc::WEXITSTATUS(s) as i128);
            }
        }
        if stdout {
            let cut = self.out.len().min(self.lim.output as usize);
            e.str("stdout");
            e.str(&String::from_utf8_lossy(&self.out[..cut]));
        }
        e.end_dict();
        e.buf
    }
}

//! One confined child of the supervisor: `clone(CLONE_VM | CLONE_VFORK)`
//! (what `posix_spawn` does: nothing of the supervisor is copied for an
//! image exec replaces at once, and the supervisor waits until the exec),
//! then the last isolation steps in a fixed order, then `execve` of the
//! interpreter. Everything the child needs (C strings, pointer arrays, BPF
//! programs, limits, its stack) is prepared before the clone, and the child
//! shares the supervisor's memory, so it only makes system calls: no
//! allocation, no locks, every signal blocked until right before the exec.
//!
//! A step that fails in the child is reported on a close-on-exec pipe as
//! (step, errno) and the child exits; the supervisor reads that pipe after
//! the clone returns, so a failure of ours (a missing interpreter, a filter
//! the kernel refuses) becomes a `setup_error`, never a verdict about the
//! program.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{Pid, pipe2};
use seccompiler::BpfProgram;

use super::settings::JobLimits;
use super::{SetupError, sys};

/// A NULL-terminated array of C strings for `execve`, built before the fork.
pub(super) struct CArgs {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArgs {
    pub fn new(items: Vec<CString>) -> CArgs {
        let mut ptrs: Vec<_> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CArgs {
            _strings: items,
            ptrs,
        }
    }
}

/// The confinement every child gets, as the cell applied it.
pub(super) struct Confinement {
    pub rlimits: bool,
    /// Drop to the child's own ns uid (needs the user namespace).
    pub uid_drop: bool,
    pub no_new_privs: bool,
    /// Installed in order, last; empty when seccomp is off.
    pub programs: Vec<BpfProgram>,
    pub exe: CString,
    pub envp: CArgs,
    /// The stack the child runs on until it execs (it shares our memory).
    pub stack: std::cell::RefCell<Vec<u8>>,
}

/// Size of the child's stack: its steps are a handful of system calls.
pub(super) const CHILD_STACK: usize = 256 << 10;

/// The steps a child reports when one fails (one byte on the error pipe).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Session,
    Fds,
    RlimitCpu,
    RlimitAs,
    RlimitFsize,
    RlimitNofile,
    RlimitCore,
    RlimitStack,
    UidDrop,
    NoNewPrivs,
    Seccomp,
    Exec,
}

const STEPS: [&str; 12] = [
    "child: setsid",
    "child: place fds",
    "child: rlimit cpu",
    "child: rlimit address space",
    "child: rlimit file size",
    "child: rlimit open files",
    "child: rlimit core",
    "child: rlimit stack",
    "child: drop to its ns uid",
    "child: no_new_privs",
    "child: seccomp filter",
    "child: execve of the interpreter",
];

/// One child to start: its uid, CPU seconds, fds and argv.
pub(super) struct Child<'a> {
    pub uid: u32,
    pub cpu_s: f64,
    /// (target fd in the child, source fd here).
    pub fds: &'a [(RawFd, BorrowedFd<'a>)],
    pub argv: &'a CArgs,
}

/// Fork `child` confined as `conf` says and exec the interpreter. Returns
/// once the exec has happened (or with the step that failed).
pub(super) fn spawn(conf: &Confinement, lim: &JobLimits, child: &Child) -> Result<Pid, SetupError> {
    let (err_r, err_w) = sys("pipe", pipe2(OFlag::O_CLOEXEC))?;
    let cpu = child.cpu_s.ceil().max(1.0) as u64;
    let err_raw = err_w.as_raw_fd();
    // No signal handler of ours may run in the child while it shares our
    // memory: block them all across the clone (the child restores the mask
    // right before exec).
    let mut old = SigSet::empty();
    sys(
        "sigprocmask",
        sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        ),
    )?;
    let old_mask = old;
    let cb = Box::new(move || -> isize {
        let (step, errno, err_fd) = confine_and_exec(conf, lim, child, cpu, err_raw, &old_mask);
        let e = (errno as i32).to_le_bytes();
        let msg = [step as u8, e[0], e[1], e[2], e[3]];
        // SAFETY: plain write and _exit; nothing else runs in the child.
        unsafe {
            libc::write(err_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(71);
        }
    });
    let mut stack = conf.stack.borrow_mut();
    // Like posix_spawn: the child shares our memory and we are suspended
    // until it has exec'd (or failed), so nothing of ours is copied for a
    // process image that exec throws away at once. The child only makes
    // system calls on data prepared before the clone.
    // SAFETY: single-threaded supervisor; the stack is ours and unused
    // while the child runs; the child never returns into our frames.
    let pid = unsafe {
        nix::sched::clone(
            cb,
            &mut stack,
            CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
            Some(libc::SIGCHLD),
        )
    };
    drop(stack);
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    match sys("clone", pid) {
        Err(e) => Err(e),
        Ok(pid) => {
            drop(err_w);
            let mut b = [0u8; 5];
            let mut got = 0;
            while got < b.len() {
                match nix::unistd::read(&err_r, &mut b[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            if got == 0 {
                return Ok(pid);
            }
            let step = STEPS.get(b[0] as usize).copied().unwrap_or("child");
            let errno = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
            Err(SetupError::sys(step, nix::errno::Errno::from_raw(errno)))
        }
    }
}

/// Sources are first moved to fds from here up, out of the targets' way.
const SHUFFLE_BASE: RawFd = 100;

/// The child's side, in order. Returns only on failure: the step, its errno
/// and the fd the error pipe is on by then.
fn confine_and_exec(
    conf: &Confinement,
    lim: &JobLimits,
    child: &Child,
    cpu: u64,
    err_w: RawFd,
    mask: &SigSet,
) -> (Step, nix::errno::Errno, RawFd) {
    use nix::errno::Errno;
    let mut err_fd = err_w;
    // Session and process group of its own: the job's processes can be
    // killed as a group, and cannot signal the supervisor's group or reach
    // a controlling terminal.
    if let Err(e) = nix::unistd::setsid() {
        return (Step::Session, e, err_fd);
    }
    // SAFETY (whole block): fd juggling with plain system calls on fds this
    // process owns; the plan's sources stay open until dup2 has copied them.
    unsafe {
        let fail = |step: Step, fd: RawFd| (step, Errno::last(), fd);
        // Fds: the error pipe and every source above the targets, then each
        // source onto its target and the error pipe right above them;
        // everything else closed, so nothing of the supervisor's (other
        // pipes, the control socket) reaches the program.
        let err_hi = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, SHUFFLE_BASE);
        if err_hi < 0 {
            return fail(Step::Fds, err_fd);
        }
        err_fd = err_hi;
        let mut moved = [0 as RawFd; 16];
        for (i, (_, src)) in child.fds.iter().enumerate().take(moved.len()) {
            moved[i] = libc::fcntl(src.as_raw_fd(), libc::F_DUPFD_CLOEXEC, SHUFFLE_BASE);
            if moved[i] < 0 {
                return fail(Step::Fds, err_fd);
            }
        }
        for (i, (target, _)) in child.fds.iter().enumerate().take(moved.len()) {
            if libc::dup2(moved[i], *target) < 0 {
                return fail(Step::Fds, err_fd);
            }
        }
        let top = child.fds.iter().map(|(t, _)| *t).max().unwrap_or(2) + 1;
        if libc::dup3(err_hi, top, libc::O_CLOEXEC) < 0 {
            return fail(Step::Fds, err_fd);
        }
        err_fd = top;
        if libc::syscall(
            libc::SYS_close_range,
            (top + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        ) < 0
        {
            return fail(Step::Fds, err_fd);
        }
        // SIGPIPE back to its default (the launcher ignores it), as a
        // process started by a shell would have it.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let fail = |step: Step| (step, Errno::last(), err_fd);
    if conf.rlimits {
        let as_bytes = lim.memory.saturating_add(lim.address_slack);
        for (step, res, soft, hard) in [
            // CPU: SIGXCPU at the soft limit, SIGKILL one second later (hard).
            (Step::RlimitCpu, Resource::RLIMIT_CPU, cpu, cpu + 1),
            // Address space: a backstop for the memory cgroup (the fresh
            // interpreter's own mappings fit in the slack).
            (Step::RlimitAs, Resource::RLIMIT_AS, as_bytes, as_bytes),
            // File size: no file (or tmpfs page) bomb larger than this.
            (
                Step::RlimitFsize,
                Resource::RLIMIT_FSIZE,
                lim.file_size,
                lim.file_size,
            ),
            // Open files: bounds fd exhaustion to this process.
            (
                Step::RlimitNofile,
                Resource::RLIMIT_NOFILE,
                lim.open_files,
                lim.open_files,
            ),
            // Core dumps: none, they would write outside our accounting.
            (Step::RlimitCore, Resource::RLIMIT_CORE, 0, 0),
            // Stack: explicit, so deep recursion ends in a signal, not host settings.
            (
                Step::RlimitStack,
                Resource::RLIMIT_STACK,
                lim.stack,
                lim.stack,
            ),
        ] {
            if let Err(e) = setrlimit(res, soft, hard) {
                return (step, e, err_fd);
            }
        }
    }
    if conf.uid_drop {
        // Another ns uid than the supervisor's: drops every capability and
        // stops signals, ptrace and /proc access to I and the other child.
        // Raw system calls: glibc's wrappers would broadcast the change to
        // every thread of the process when it has several, and the child
        // shares the supervisor's memory (and so glibc's idea of its threads).
        let id = child.uid as libc::c_long;
        // SAFETY: plain system calls with integer arguments (and no list).
        let failed = unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                0 as libc::c_long,
                std::ptr::null::<libc::gid_t>(),
            ) != 0
                || libc::syscall(libc::SYS_setresgid, id, id, id) != 0
                || libc::syscall(libc::SYS_setresuid, id, id, id) != 0
        };
        if failed {
            return fail(Step::UidDrop);
        }
    }
    if conf.no_new_privs {
        // No setuid or file-capability gains through exec.
        if let Err(e) = nix::sys::prctl::set_no_new_privs() {
            return (Step::NoNewPrivs, e, err_fd);
        }
    }
    for prog in &conf.programs {
        // Seccomp last: the deny list, compiled by the slot before any fork.
        if let Err(e) = seccompiler::apply_filter(prog) {
            let errno = match e {
                seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(0),
                _ => libc::EINVAL,
            };
            return (Step::Seccomp, Errno::from_raw(errno), err_fd);
        }
    }
    // Signals as they were before the clone (handlers are reset by exec).
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None) {
        return (Step::Exec, e, err_fd);
    }
    // Exec the interpreter: a fresh process image, nothing of ours left in it.
    // SAFETY: exe, argv and envp are NUL-terminated and outlive the call.
    unsafe {
        libc::execve(
            conf.exe.as_ptr(),
            child.argv.ptrs.as_ptr(),
            conf.envp.ptrs.as_ptr(),
        );
    }
    fail(Step::Exec)
}

/// Helper for callers: a C string from text the settings already checked.
pub(super) fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::from(c"?"))
}

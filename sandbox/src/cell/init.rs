//! I: PID 1 of the cell's PID namespace, the supervisor and reaper. It
//! applies the last cell-wide steps, prepares what every child needs (the
//! BPF programs, C strings), answers ready, then serves jobs one at a time.
//! Per job it makes the work dir, runs the tests (`run`), kills and reaps
//! everything, and only then writes `done`; between jobs it replaces what a
//! job could leave behind (scratch tmpfs mounts, the IPC namespace). A
//! failure of its own is reported and ends the cell.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use seccompiler::{BpfProgram, sock_filter};

use super::settings::{CellSettings, JobRequest, Kind};
use super::setup::{Applied, EXIT_FAILED, SCRATCH, mount_tmpfs, read_all, recv, reply, umount};
use super::spawn::{CArgs, CHILD_STACK, Confinement, cstring};
use super::watch::{kill_rest, write_frame};
use super::{SetupError, sys};
use crate::config::Requirement;
use crate::marshal::Encoder;

/// How a fresh interpreter runs a stdio test: like `python FLAGS
/// solution.py`, but a compile error is reported on fd 7 (the supervisor
/// compiles nothing itself). The program runs with `exec` of its bytes in
/// `__main__`: the `compile` builtin would cost ~1 ms per start (it sets up
/// the `ast` module's types), and an error raised while compiling, before
/// any of the program ran, is told apart from one the program raises by its
/// traceback (no frame of the program's). Only modules every interpreter
/// has loaded at startup are used (`posix`, `sys`).
const STDIO_BOOT: &str = "\
def _boot():
    import posix, sys
    sys.argv[:] = ['solution.py']
    f = posix.open('solution.py', posix.O_RDONLY)
    s = posix.read(f, posix.fstat(f).st_size)
    posix.close(f)
    g = sys.modules['__main__'].__dict__
    del g['_boot']
    g['__file__'] = 'solution.py'
    try:
        exec(s, g)
    except (SyntaxError, ValueError) as e:
        if e.__traceback__.tb_next is not None:
            raise
        m = ('%s: %s' % (type(e).__name__, e)).encode()
        posix.write(7, len(m).to_bytes(4, 'little') + m)
        raise SystemExit(1)
_boot()
";

/// How a fresh interpreter runs call and function tests: the harness code
/// and the task arrive in a memfd on fd 6 (as with the Python supervisor).
const HARNESS_BOOT: &str = "\
import marshal as m, os
h, r, a = m.loads(os.pread(6, os.fstat(6).st_size, 0))
os.close(6)
g = {'__name__': 'gradus_harness', '__builtins__': __builtins__}
exec(m.loads(h), g)
g['child_main'](r, a)
";

/// (mtime, ctime, atime with their nanoseconds, mode, uid, gid) of a
/// scratch dir's root.
type Stamp = (i64, i64, i64, i64, i64, i64, u32, u32, u32);

/// The supervisor's state for the life of the cell.
pub(super) struct Supervisor<'a> {
    pub cell: &'a CellSettings,
    pub applied: Applied,
    pub conf: Confinement,
    pub stdio_argv: CArgs,
    pub harness_argv: CArgs,
    /// Tmpfs mounts a job may have used (scratch dirs and work dirs).
    scratch: Vec<String>,
    stamps: HashMap<String, Stamp>,
    tmpfs_opts: String,
}

fn bpf(prog: &[u8]) -> BpfProgram {
    prog.chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// I's entry: the remaining cell-wide steps, then the job loop.
pub(super) fn run(
    cell: &CellSettings,
    mut applied: Applied,
    tmpfs_opts: String,
) -> Result<(), SetupError> {
    if std::process::id() == 1 && applied.on("mount_ns") {
        // 7. Fresh /proc for the PID namespace: other processes' environments
        //    and command lines on the host are out of sight.
        applied.attempt(cell.want("proc"), "proc", || {
            sys(
                "mount proc",
                nix::mount::mount(
                    Some("proc"),
                    "/proc",
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None::<&str>,
                ),
            )
        })?;
    } else {
        applied.attempt(cell.want("proc"), "proc", || {
            Err(SetupError::new(
                "proc",
                0,
                "a fresh /proc needs mount_ns and pid_ns",
            ))
        })?;
    }
    // 8. The supervisor is not dumpable: a job cannot open /proc/1/mem or fds.
    sys("prctl dumpable", nix::sys::prctl::set_dumpable(false))?;
    // 9-12. rlimits, uid drop, no_new_privs and seccomp are applied in each
    //    child (`spawn`), last, because I itself must still mount, fork, kill.
    for n in ["no_new_privs", "seccomp", "rlimits", "uid_drop"] {
        let off = cell.want(n) == Requirement::Off;
        applied.set(n, if off { "off" } else { "on" });
    }
    if applied.on("seccomp") && !applied.on("no_new_privs") {
        applied.set("no_new_privs", "on"); // seccomp without CAP_SYS_ADMIN needs it
    }
    let programs = if applied.on("seccomp") {
        cell.seccomp.iter().map(|p| bpf(p)).collect()
    } else {
        Vec::new()
    };
    let env = cell
        .env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect();
    let conf = Confinement {
        rlimits: applied.on("rlimits"),
        uid_drop: applied.on("uid_drop") && applied.on("user_ns"),
        no_new_privs: applied.on("no_new_privs"),
        programs,
        exe: cstring(&cell.python),
        envp: CArgs::new(env),
        stack: std::cell::RefCell::new(vec![0u8; CHILD_STACK]),
    };
    let argv = |boot: &str| {
        let mut v = vec![cstring(&cell.python)];
        v.extend(cell.flags.iter().map(|f| cstring(f)));
        v.push(cstring("-c"));
        v.push(cstring(boot));
        CArgs::new(v)
    };
    let mut sup = Supervisor {
        cell,
        applied,
        conf,
        stdio_argv: argv(STDIO_BOOT),
        harness_argv: argv(HARNESS_BOOT),
        scratch: Vec::new(),
        stamps: HashMap::new(),
        tmpfs_opts,
    };
    sup.fresh_scratch()?;
    let mut e = Encoder::default();
    sup.applied.encode(&mut e);
    reply(0, b'R', &e.buf);
    loop {
        let (msg, fds) = match recv(0) {
            Ok(m) if !m.0.is_empty() => m,
            _ => break,
        };
        let mut fds = fds.into_iter();
        let (b"J", Some(req), Some(res)) = (msg.as_slice(), fds.next(), fds.next()) else {
            // Not a job: nothing to answer on, nothing to run.
            continue;
        };
        // The test-code pipe: closed as soon as the checker has it.
        let secret = fds.next();
        drop(fds);
        if let Err(e) = sup.run_job(&req, &res, secret) {
            // The cell may be in a state we cannot vouch for: report, clean
            // up and exit; the slot builds a new cell for the next job.
            let _ = write_frame(res.as_raw_fd(), &e.record());
            kill_rest();
            std::process::exit(EXIT_FAILED);
        }
        drop(req);
        drop(res);
        // Between jobs (the slot already has the outcome): drop what the job
        // could have left in the cell. A failure ends the cell before any
        // other job can see its state.
        if sup.between_jobs().is_err() {
            kill_rest();
            std::process::exit(EXIT_FAILED);
        }
    }
    kill_rest();
    Ok(())
}

fn io_err(step: String, e: std::io::Error) -> SetupError {
    SetupError::new(step, e.raw_os_error().unwrap_or(0), e.to_string())
}

fn stamp(path: &str) -> Option<Stamp> {
    let s = nix::sys::stat::stat(path).ok()?;
    Some((
        s.st_mtime,
        s.st_mtime_nsec,
        s.st_ctime,
        s.st_ctime_nsec,
        s.st_atime,
        s.st_atime_nsec,
        s.st_mode,
        s.st_uid,
        s.st_gid,
    ))
}

impl Supervisor<'_> {
    fn run_job(
        &mut self,
        req: &OwnedFd,
        res: &OwnedFd,
        mut secret: Option<OwnedFd>,
    ) -> Result<(), SetupError> {
        let res_w = res.as_raw_fd();
        let outcome = (|| {
            let data = read_all(req)?;
            let job = JobRequest::parse(&data)
                .map_err(|e| SetupError::new("job request", 0, e.to_string()))?;
            self.work_dir(&job.workdir)?;
            let mut e = Encoder::default();
            e.dict();
            e.str("t");
            e.str("applied");
            e.str("protections");
            self.applied.encode(&mut e);
            e.end_dict();
            write_frame(res_w, &e.buf)?;
            self.run_tests(&job, res_w, &mut secret)
        })();
        drop(secret);
        // Nothing of the job runs on (each run already ends with its kill).
        kill_rest();
        let _ = nix::unistd::chdir("/");
        outcome?;
        let mut e = Encoder::default();
        e.dict();
        e.str("t");
        e.str("done");
        e.end_dict();
        write_frame(res_w, &e.buf)
    }

    fn run_tests(
        &mut self,
        job: &JobRequest,
        res_w: i32,
        secret: &mut Option<OwnedFd>,
    ) -> Result<(), SetupError> {
        let compile_error = match &job.kind {
            Kind::Stdio { inputs } => {
                std::fs::write("solution.py", &job.source)
                    .and_then(|()| {
                        std::fs::set_permissions(
                            "solution.py",
                            std::fs::Permissions::from_mode(0o644),
                        )
                    })
                    .map_err(|e| io_err("write solution.py".into(), e))?;
                let mut found = None;
                for (i, input) in inputs.iter().enumerate() {
                    found = self.run_stdio_case(job, i, input, res_w)?;
                    if found.is_some() {
                        break;
                    }
                }
                found
            }
            Kind::Call { inputs, boot_args } => self.run_call(job, *inputs, boot_args, res_w)?,
            Kind::Function { boot_args } => {
                let pipe = secret.take().ok_or_else(|| {
                    SetupError::new("request", 0, "a function job needs the test-code pipe")
                })?;
                self.run_function(job, boot_args, pipe, res_w)?
            }
        };
        if let Some(msg) = compile_error {
            let mut e = Encoder::default();
            e.dict();
            e.str("t");
            e.str("compile_error");
            e.str("msg");
            e.str(&msg);
            e.end_dict();
            write_frame(res_w, &e.buf)?;
        }
        Ok(())
    }

    /// The job's work dir, in a fresh tmpfs (the scratch mount it lies in,
    /// or its own); cd there.
    fn work_dir(&mut self, work: &str) -> Result<(), SetupError> {
        let mkdir =
            |w: &str| std::fs::create_dir_all(w).map_err(|e| io_err(format!("mkdir {w}"), e));
        if self.applied.on("mount_ns") {
            if self
                .scratch
                .iter()
                .any(|d| work.starts_with(&format!("{d}/")))
            {
                mkdir(work)?;
            } else if std::path::Path::new(work).is_dir() {
                mount_tmpfs(work, &self.tmpfs_opts)?;
                self.scratch.push(work.to_string());
            } else {
                mkdir(work)?;
            }
        }
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| io_err(format!("chmod {work}"), e))?;
        sys(&format!("chdir {work}"), nix::unistd::chdir(work))
    }

    /// Fresh tmpfs on /tmp, /var/tmp and /dev/shm (where not still unused).
    fn fresh_scratch(&mut self) -> Result<(), SetupError> {
        if !self.applied.on("private_tmp") {
            return Ok(());
        }
        for d in SCRATCH {
            if !self.scratch.iter().any(|s| s == d) && std::path::Path::new(d).is_dir() {
                mount_tmpfs(d, &self.tmpfs_opts)?;
                self.scratch.push(d.to_string());
                if let Some(s) = stamp(d) {
                    self.stamps.insert(d.to_string(), s);
                }
            }
        }
        Ok(())
    }

    /// A scratch tmpfs that holds nothing but its root dir, no data, and
    /// whose root no one has written, changed or even listed: as good as a
    /// fresh one, and no job can learn from it that another ran before (its
    /// root belongs to I, so a job cannot set it back).
    fn untouched(&self, path: &str) -> bool {
        let Ok(st) = nix::sys::statvfs::statvfs(path) else {
            return false;
        };
        let empty = st.files() - st.files_free() <= 1 && st.blocks() == st.blocks_free();
        empty && stamp(path).is_some() && self.stamps.get(path).copied() == stamp(path)
    }

    /// Unmount every scratch tmpfs a job may have used; a new IPC namespace.
    fn between_jobs(&mut self) -> Result<(), SetupError> {
        let keep: Vec<String> = self
            .scratch
            .iter()
            .filter(|d| SCRATCH.contains(&d.as_str()) && self.untouched(d))
            .cloned()
            .collect();
        for d in self.scratch.iter().rev() {
            if !keep.contains(d) {
                umount(d)?;
            }
        }
        self.scratch = keep;
        if self.applied.on("ipc_ns") {
            // SysV IPC objects and POSIX queues: gone with the namespace.
            sys("unshare ipc", nix::sched::unshare(CloneFlags::CLONE_NEWIPC))?;
        }
        self.fresh_scratch()
    }
}

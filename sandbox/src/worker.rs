//! One pool slot: its cgroups and its isolation cell. The slot starts a
//! server once (warm mode: a Python interpreter running `harness.py`; cold
//! mode: the native launcher of [`crate::cell`], started by exec); the server
//! builds a cell (namespaces, read-only mounts) whose supervisor, PID 1 of
//! the cell's PID namespace, then serves the slot's jobs one at a time for as
//! long as the slot lives. Both speak the same protocol and records. Per job
//! the supervisor forks the isolated processes and replaces everything a job
//! could leave behind; in warm mode the candidate runs in that fork (a zygote
//! with the harness imported), in cold mode the fork execs a fresh
//! interpreter. A cell that fails or times out is killed and rebuilt.
//!
//! Everything here blocks; the async API runs it on tokio's blocking threads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socketpair,
};
use nix::unistd::pipe2;

use crate::cgroup::SlotCgroups;
use crate::config::{Requirement, SandboxConfig};
use crate::job::{Job, Limits, Tests};
use crate::marshal::{Encoder, PyValue, decode};
use crate::outcome::{Outcome, Verdict};
use crate::verdict::{Evidence, Proc, judge};

/// Environment of every interpreter we start: an allow-list, nothing inherited.
pub(crate) const ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("HOME", "/tmp"),
];

/// Room for the address space of the interpreter itself above the job's memory limit.
const ADDRESS_SLACK: u64 = 64 << 20;
/// How long a new server may take to import the harness.
const SERVER_START: Duration = Duration::from_secs(20);
/// After a kill, how long we wait for the job's last records and processes.
const DRAIN: Duration = Duration::from_secs(5);
/// Test code up to this size is written straight into its pipe (Linux pipes
/// hold 64 KiB); larger tests get a writer thread.
const PIPE_ROOM: usize = 60 << 10;

/// Settings shared by all slots, fixed when the sandbox is built.
pub(crate) struct Shared {
    pub cfg: SandboxConfig,
    pub python: PathBuf,
    pub boot: String,
    pub seccomp: Vec<Vec<u8>>,
    pub work_root: PathBuf,
    /// Cold mode: each slot's supervisor is the native one (`crate::cell`).
    pub native: Option<Native>,
    /// Jobs handed to a cell and not finished, by id (for `Sandbox::cancel`).
    pub running: Mutex<HashMap<String, Running>>,
}

/// A job handed to a cell and not finished.
pub(crate) struct Running {
    /// The slot's cgroup directories (the cell and the job run in them).
    pub cgroups: Vec<PathBuf>,
    /// Set by `Sandbox::cancel`: whatever the cell reports, the job ends as
    /// our failure.
    pub cancelled: bool,
}

impl Running {
    /// Marks the job cancelled and SIGKILLs every process of its cell, the
    /// supervisor and the job's processes alike.
    pub fn cancel(&mut self) {
        self.cancelled = true;
        for dir in &self.cgroups {
            for pid in crate::cgroup::procs_of(dir) {
                // SAFETY: kill(2) on a process of the slot's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// What the native supervisor needs beyond the cell settings both kinds get.
pub(crate) struct Native {
    /// The program started per slot (see `crate::cell::main_if_requested`).
    pub launcher: PathBuf,
    /// The harness module's code object (marshal), for fresh interpreters.
    pub harness: Vec<u8>,
    /// The interpreter's prefixes, made reachable inside the cell.
    pub prefixes: Vec<String>,
}

/// A harness server process (and through it the cell) and our end of its
/// control socket.
struct Server {
    child: Child,
    sock: Option<OwnedFd>,
    /// The cell has a fresh private tmpfs on each scratch dir for every job.
    private_tmp: bool,
}

impl Server {
    /// Start the server, send it the cell settings and wait until the cell's
    /// supervisor reports ready (or why it could not build the cell).
    fn start(sh: &Shared, cell: &[u8]) -> Result<Server, String> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        // Cold mode: the native supervisor, a program of its own started by
        // exec (never code run after a fork of this multi-threaded process).
        // Warm mode: a Python interpreter that becomes the zygote.
        let (mut cmd, what) = match &sh.native {
            Some(n) => {
                let mut c = Command::new(&n.launcher);
                c.arg(crate::cell::ARG).arg(crate::cell::PROTOCOL);
                (c, format!("the cell launcher {}", n.launcher.display()))
            }
            None => {
                let mut c = Command::new(&sh.python);
                c.args(&sh.cfg.python.flags).arg("-c").arg(&sh.boot);
                (
                    c,
                    format!(
                        "the harness server ({} {})",
                        sh.python.display(),
                        sh.cfg.python.flags.join(" ")
                    ),
                )
            }
        };
        let child = cmd
            .env_clear()
            .envs(ENV.iter().copied())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {what}: {e}"))?;
        // The command holds the child's end of the socket: close it here, so
        // that a child that exits early shows as a hang-up, not a silence.
        drop(cmd);
        let mut server = Server {
            child,
            sock: Some(ours),
            private_tmp: false,
        };
        let did_not_start = format!(
            "{what} did not start the cell; run it by hand to see why{}",
            if sh.native.is_some() {
                " (it must call gradus_sandbox::cell::main_if_requested() first in main)"
            } else {
                ""
            }
        );
        let file = memfd_with("gradus-cell", cell)?;
        if server.send(b"C", &[file.as_raw_fd()]).is_err() {
            // It exited before reading its settings.
            server.kill();
            return Err(did_not_start);
        }
        drop(file);
        let mut fds = [PollFd::new(server.sock().as_fd(), PollFlags::POLLIN)];
        let ready = poll(
            &mut fds,
            PollTimeout::try_from(SERVER_START).unwrap_or(PollTimeout::MAX),
        )
        .map_err(|e| format!("waiting for {what}: {e}"))?;
        let mut b = vec![0u8; 1 << 16];
        let n = if ready > 0 {
            nix::unistd::read(server.sock(), &mut b).unwrap_or(0)
        } else {
            0
        };
        match b[..n].split_first() {
            Some((b'R', applied)) => {
                server.private_tmp = decode(applied)
                    .ok()
                    .and_then(|a| {
                        a.get("private_tmp")
                            .and_then(PyValue::as_str)
                            .map(|s| s == "on")
                    })
                    .unwrap_or(false);
                Ok(server)
            }
            Some((b'E', rec)) => {
                server.kill();
                let mut ev = Evidence::default();
                ev.add(rec);
                Err(ev
                    .setup_error
                    .or(ev.garbled)
                    .unwrap_or_else(|| "the cell could not be built".into()))
            }
            _ => {
                server.kill();
                Err(did_not_start)
            }
        }
    }

    fn sock(&self) -> &OwnedFd {
        self.sock
            .as_ref()
            .expect("server socket open while the server is in use")
    }

    fn alive(&mut self) -> bool {
        self.sock.is_some() && matches!(self.child.try_wait(), Ok(None))
    }

    fn send(&self, tag: &[u8], fds: &[i32]) -> Result<(), String> {
        let iov = [std::io::IoSlice::new(tag)];
        sendmsg::<UnixAddr>(
            self.sock().as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(fds)],
            MsgFlags::empty(),
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("sending to the cell's supervisor: {e}"))
    }

    fn kill(&mut self) {
        self.sock = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Close the socket (the supervisor then kills what is left and exits,
    /// and the server with it) and reap the server.
    fn stop(&mut self, grace: Duration) {
        self.sock = None;
        let end = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= end => {
                    self.kill();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_micros(100)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(200));
    }
}

/// An anonymous in-memory file holding `data` (no disk, unlike a temp file).
fn memfd_with(name: &str, data: &[u8]) -> Result<File, String> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| format!("memfd: {e}"))?;
    let mut f = File::from(fd);
    f.write_all(data).map_err(|e| format!("memfd: {e}"))?;
    Ok(f)
}

/// Where a job works. Inside a cell with private scratch dirs the supervisor
/// makes the dir in that job's fresh tmpfs, so nothing is created on the host;
/// elsewhere it is a host temp dir (tempfile) that gets a fresh tmpfs on top.
enum WorkDir {
    InCell(PathBuf),
    Host(tempfile::TempDir),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::InCell(p) => p,
            WorkDir::Host(t) => t.path(),
        }
    }
}

/// The scratch dirs a cell replaces with a fresh tmpfs per job (as in harness.py).
const SCRATCH: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

fn pss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
    };
    field("Pss:").or_else(|| field("Rss:")).map(|kb| kb * 1024)
}

/// A pool slot: one job at a time.
pub(crate) struct Slot {
    pub index: usize,
    pub cgroups: SlotCgroups,
    server: Option<Server>,
    /// The cgroups' OOM-kill count after the last job.
    oom_seen: u64,
    /// Tasks of the cell itself (cell root and supervisor) in the slot's
    /// pids cgroup, counted when it reported ready.
    cell_tasks: u64,
    /// Jobs run, for work dir names.
    seq: u64,
    /// Protections the last job's supervisor reported (for `doctor`).
    last_applied: Option<Vec<(String, String)>>,
}

impl Slot {
    pub fn new(index: usize, cgroups: SlotCgroups) -> Slot {
        let oom_seen = cgroups.oom_kills();
        Slot {
            index,
            cgroups,
            server: None,
            oom_seen,
            cell_tasks: 0,
            seq: 0,
            last_applied: None,
        }
    }

    /// Build the cell now rather than on the first job.
    pub fn warm_up(&mut self, sh: &Shared) -> Result<(), String> {
        self.ensure_cell(sh)
    }

    fn ensure_cell(&mut self, sh: &Shared) -> Result<(), String> {
        if !self.server.as_mut().is_some_and(Server::alive) {
            self.reset_cell();
            self.server = Some(Server::start(sh, &self.cell_request(sh))?);
            self.cell_tasks = self.cgroups.tasks().unwrap_or(0);
        }
        Ok(())
    }

    /// Kill the cell and everything in it; the next job builds a new one.
    fn reset_cell(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.sock = None;
            self.cgroups.kill_all(DRAIN);
            s.stop(Duration::from_millis(200));
        }
        self.cell_tasks = 0;
    }

    /// Tasks of a job still in the slot's cgroups (0 between jobs).
    pub fn job_tasks(&self) -> Option<u64> {
        self.cgroups
            .tasks()
            .map(|n| n.saturating_sub(self.cell_tasks))
    }

    /// Memory of the idle cell, bytes: PSS of the server, the cell root and
    /// the supervisor together (RSS where PSS is unavailable).
    pub fn server_memory(&self) -> Option<u64> {
        let pid = self.server.as_ref()?.child.id() as i32;
        let mut total = pss(pid)?;
        for p in self.cgroups.cell_pids() {
            total += pss(p).unwrap_or(0);
        }
        Some(total)
    }

    /// Run one job to its outcome. Never panics on the program's behaviour;
    /// our own failures become `sandbox_error`.
    pub fn execute(&mut self, sh: &Shared, job: &Job) -> Outcome {
        self.execute_capturing(sh, job).0
    }

    /// [`Slot::execute`], with the supervisor's record of each process the
    /// job ran (whole stdout and stderr, exit status, times); empty when the
    /// job never ran (an invalid job, a failure of the sandbox's own).
    pub fn execute_capturing(&mut self, sh: &Shared, job: &Job) -> (Outcome, Vec<Proc>) {
        let t0 = Instant::now();
        let total = job.tests.total();
        let result = self.execute_once(sh, job, false);
        sh.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
        let (mut out, procs) = match result {
            Ok(o) => o,
            Err(e) => {
                self.reset_cell();
                (
                    Outcome::failure(&job.id, Verdict::SandboxError, total, e),
                    Vec::new(),
                )
            }
        };
        out.id = job.id.clone();
        out.wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        (out, procs)
    }

    fn execute_once(
        &mut self,
        sh: &Shared,
        job: &Job,
        retried: bool,
    ) -> Result<(Outcome, Vec<Proc>), String> {
        let lim = sh.cfg.limits.with(&job.limits);
        let problems = lim.problems("limits");
        if !problems.is_empty() {
            return Ok((
                Outcome::failure(
                    &job.id,
                    Verdict::InvalidJob,
                    job.tests.total(),
                    problems.join("; "),
                ),
                Vec::new(),
            ));
        }
        let prot = &sh.cfg.protections;
        for (name, req, state) in [
            ("pids_cgroup", prot.pids_cgroup, &self.cgroups.pids),
            ("memory_cgroup", prot.memory_cgroup, &self.cgroups.memory),
        ] {
            if let (Requirement::Required, Err(why)) = (req, state) {
                return Err(format!("required protection `{name}` is missing: {why}"));
            }
        }
        self.ensure_cell(sh)?;
        let work = self.work_dir(sh)?;
        let overhead = sh.cfg.overhead_mb << 20;
        self.cgroups
            .prepare(
                lim.processes + sh.cfg.overhead_processes,
                (lim.memory_mb << 20) + overhead,
            )
            .map_err(|e| format!("setting cgroup limits: {e}"))?;
        let request = self.request(sh, job, &lim, work.path());
        let req_file = memfd_with("gradus-job", &request)?;
        let (res_r, res_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let mut fds = vec![req_file.as_raw_fd(), res_w.as_raw_fd()];
        let mut secret_writer = None;
        let mut secret_r = None;
        if let Tests::Function {
            entry_point,
            test,
            prelude,
        } = &job.tests
        {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
            let mut enc = Encoder::default();
            enc.tuple(3);
            enc.str(test);
            enc.str(entry_point);
            enc.str(prelude);
            let data = enc.buf;
            let mut f = File::from(w);
            if data.len() <= PIPE_ROOM {
                // Fits in the pipe: the checker reads it after C is forked.
                f.write_all(&data).map_err(|e| format!("test pipe: {e}"))?;
            } else {
                // A thread keeps a large test from blocking us on the pipe.
                secret_writer = Some(std::thread::spawn(move || {
                    let _ = f.write_all(&data);
                }));
            }
            fds.push(r.as_raw_fd());
            secret_r = Some(r);
        }
        let sent = self
            .server
            .as_ref()
            .expect("cell just ensured")
            .send(b"J", &fds);
        if let Err(e) = sent {
            // A cell that died between jobs is rebuilt once.
            self.reset_cell();
            self.ensure_cell(sh)?;
            self.server
                .as_ref()
                .expect("cell just ensured")
                .send(b"J", &fds)
                .map_err(|e2| format!("{e}; after a rebuild: {e2}"))?;
        }
        sh.running.lock().unwrap_or_else(|p| p.into_inner()).insert(
            job.id.clone(),
            Running {
                cgroups: self.cgroups.dirs(),
                cancelled: false,
            },
        );
        drop(res_w);
        drop(secret_r);
        drop(req_file);
        let total = job.tests.total().max(1) as f64;
        let job_wall = (lim.wall_s * total + 2.0).min(lim.max_job_wall_s);
        let mut ev = Evidence::default();
        let finished = read_records(
            &res_r,
            Instant::now() + Duration::from_secs_f64(job_wall),
            &mut ev,
        );
        let cancelled = sh
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.id)
            .is_some_and(|r| r.cancelled);
        if cancelled {
            self.reset_cell();
            if let Some(t) = secret_writer {
                let _ = t.join();
            }
            return Err("cancelled: the job's isolation cell was killed".into());
        }
        if finished && ev.is_empty() {
            // A live supervisor always reports first: the cell died with the
            // job still queued (it exits when it cannot vouch for its state
            // after a job), and nothing of this job ran. Run it once more in a
            // new cell.
            self.reset_cell();
            if let Some(t) = secret_writer {
                let _ = t.join();
            }
            if !retried {
                return self.execute_once(sh, job, true);
            }
            return Err("the isolation cell died before running the job, twice".into());
        }
        if !finished {
            // The supervisor did not finish in time: kill the whole cell (its
            // supervisor would go on with the next test) and take what it sent.
            ev.job_timed_out = true;
            self.reset_cell();
            read_records(&res_r, Instant::now() + DRAIN, &mut ev);
        }
        // The supervisor reaps every job process before it closes the result
        // pipe, so one look usually confirms that only the cell is left.
        let cell = self.cell_tasks;
        let settled = self.cgroups.tasks().is_none_or(|n| n <= cell)
            || self.cgroups.wait_settled(cell, DRAIN);
        if let Some(t) = secret_writer {
            let _ = t.join();
        }
        if !settled {
            // Something of the job outlived its supervisor's cleanup: kill the
            // cell with it, and blame ourselves, not the program.
            self.reset_cell();
            if !self.cgroups.kill_all(DRAIN) {
                return Err("processes of the job survived SIGKILL; the slot is unusable".into());
            }
            return Err(
                "a process of the job outlived the supervisor's cleanup; the cell was rebuilt"
                    .into(),
            );
        }
        let oom = self.cgroups.oom_kills();
        ev.oom = oom > self.oom_seen;
        self.oom_seen = oom;
        if !ev.done || ev.setup_error.is_some() || ev.garbled.is_some() {
            // The supervisor exits after a failure of its own; make sure.
            self.reset_cell();
        }
        self.last_applied = Some(ev.applied.clone());
        drop(work);
        let out = judge(&job.id, &job.tests, &lim, &ev, sh.cfg.report_chars);
        Ok((out, ev.procs))
    }

    fn work_dir(&mut self, sh: &Shared) -> Result<WorkDir, String> {
        self.seq += 1;
        let in_cell = self.server.as_ref().is_some_and(|s| s.private_tmp)
            && SCRATCH.iter().any(|d| sh.work_root.starts_with(d));
        if in_cell {
            let name = format!("gradus-job-{}-{}", self.index, self.seq);
            return Ok(WorkDir::InCell(sh.work_root.join(name)));
        }
        tempfile::Builder::new()
            .prefix("gradus-job-")
            .tempdir_in(&sh.work_root)
            .map(WorkDir::Host)
            .map_err(|e| format!("creating a work dir in {}: {e}", sh.work_root.display()))
    }

    /// The cell's settings, fixed for the life of the slot.
    fn cell_request(&self, sh: &Shared) -> Vec<u8> {
        let mut e = Encoder::default();
        e.dict();
        e.str("python");
        e.str(&sh.python.to_string_lossy());
        e.str("flags");
        e.list(sh.cfg.python.flags.len());
        for f in &sh.cfg.python.flags {
            e.str(f);
        }
        e.str("env");
        e.dict();
        for (k, v) in ENV {
            e.str(k);
            e.str(v);
        }
        e.end_dict();
        let files = self.cgroups.cell_procs_files();
        e.str("cell_cgroups");
        e.list(files.len());
        for p in &files {
            e.str(p);
        }
        e.str("tmpfs_bytes");
        e.int((sh.cfg.tmpfs_mb << 20) as i128);
        e.str("tmpfs_inodes");
        e.int(sh.cfg.tmpfs_inodes as i128);
        e.str("uid_base");
        e.int((sh.cfg.uid_base as i128) + 3 * self.index as i128);
        e.str("seccomp");
        e.list(sh.seccomp.len());
        for p in &sh.seccomp {
            e.bytes(p);
        }
        e.str("protect");
        e.dict();
        for (name, req) in sh.cfg.protections.list() {
            e.str(name);
            e.str(req.as_str());
        }
        e.end_dict();
        if let Some(n) = &sh.native {
            e.str("harness");
            e.bytes(&n.harness);
            e.str("prefixes");
            e.list(n.prefixes.len());
            for p in &n.prefixes {
                e.str(p);
            }
        }
        e.end_dict();
        e.buf
    }

    fn request(&self, sh: &Shared, job: &Job, lim: &Limits, work: &Path) -> Vec<u8> {
        let mut e = Encoder::default();
        e.dict();
        let (kind, fn_name) = match &job.tests {
            Tests::Stdio { .. } => ("stdio", ""),
            Tests::Call { fn_name, .. } => ("call", fn_name.as_str()),
            Tests::Function { entry_point, .. } => ("function", entry_point.as_str()),
        };
        e.str("kind");
        e.str(kind);
        e.str("fn_name");
        e.str(fn_name);
        e.str("source");
        e.str(&job.source);
        e.str("inputs");
        match &job.tests {
            Tests::Stdio { cases, .. } => {
                e.list(cases.len());
                for c in cases {
                    e.str(&c.input);
                }
            }
            Tests::Call { inputs, .. } => {
                e.list(inputs.len());
                for args in inputs {
                    e.list(args.len());
                    for a in args {
                        e.json(a);
                    }
                }
            }
            Tests::Function { .. } => e.list(0),
        }
        e.str("limits");
        e.dict();
        for (k, v) in [("cpu_s", lim.cpu_s), ("wall_s", lim.wall_s)] {
            e.str(k);
            e.float(v);
        }
        for (k, v) in [
            ("memory", lim.memory_mb << 20),
            ("output", lim.output_kb << 10),
            ("file_size", lim.file_size_kb << 10),
            ("open_files", lim.open_files),
            ("stack", lim.stack_mb << 20),
            ("address_slack", ADDRESS_SLACK),
        ] {
            e.str(k);
            e.int(v as i128);
        }
        e.end_dict();
        e.str("workdir");
        e.str(&work.to_string_lossy());
        if sh.native.is_some() {
            // The arguments of the harness task a fresh interpreter runs
            // (the native supervisor does not speak Python values).
            let mut a = Encoder::default();
            match &job.tests {
                Tests::Stdio { .. } => a.none(),
                Tests::Call {
                    fn_name, inputs, ..
                } => {
                    a.tuple(3);
                    a.str(&job.source);
                    a.str(fn_name);
                    a.list(inputs.len());
                    for args in inputs {
                        a.list(args.len());
                        for v in args {
                            a.json(v);
                        }
                    }
                }
                Tests::Function { .. } => a.str(&job.source),
            }
            e.str("boot_args");
            e.bytes(&a.buf);
        }
        e.end_dict();
        e.buf
    }

    /// Kill the cell and anything left, and remove the cgroups.
    pub fn shutdown(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop(Duration::from_millis(500));
        }
        self.cgroups.remove();
    }
}

/// Read length-prefixed records until EOF (true) or `deadline` (false).
fn read_records(fd: &OwnedFd, deadline: Instant, ev: &mut Evidence) -> bool {
    let mut file = File::from(fd.try_clone().expect("dup of the result pipe"));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            return true;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while buf.len() - start >= 4 {
            let len =
                u32::from_le_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            if buf.len() - start - 4 < len {
                break;
            }
            ev.add(&buf[start + 4..start + 4 + len]);
            start += 4 + len;
        }
        buf.drain(..start);
    }
}

impl Slot {
    /// Run `job` and return the protections its supervisor reported as applied.
    pub fn probe(&mut self, sh: &Shared, job: &Job) -> Result<Vec<(String, String)>, String> {
        let out = self.execute(sh, job);
        match self.last_applied.take() {
            Some(list) if !list.is_empty() => Ok(list),
            _ => Err(out
                .detail
                .unwrap_or_else(|| format!("verdict {}", out.verdict.as_str()))),
        }
    }
}

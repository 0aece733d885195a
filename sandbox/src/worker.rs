//! One pool slot: its cgroups and its interpreter. In warm mode the slot keeps
//! a harness server (an interpreter with the harness imported) and sends it
//! one job at a time; the server forks an isolated job root per job (a
//! zygote). In cold mode the slot starts a fresh server for every job.
//!
//! Everything here blocks; the async API runs it on tokio's blocking threads.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socketpair,
};
use nix::unistd::pipe2;

use crate::cgroup::SlotCgroups;
use crate::config::{Mode, Requirement, SandboxConfig};
use crate::job::{Job, Limits, Tests};
use crate::marshal::Encoder;
use crate::outcome::{Outcome, Verdict};
use crate::verdict::{Evidence, judge};

/// Environment of every interpreter we start: an allow-list, nothing inherited.
const ENV: &[(&str, &str)] = &[
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

/// Settings shared by all slots, fixed when the sandbox is built.
pub(crate) struct Shared {
    pub cfg: SandboxConfig,
    pub python: PathBuf,
    pub boot: String,
    pub seccomp: Vec<Vec<u8>>,
    pub work_root: PathBuf,
}

/// A harness server process and our end of its control socket.
struct Server {
    child: Child,
    sock: Option<OwnedFd>,
}

impl Server {
    fn start(sh: &Shared) -> Result<Server, String> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let child = Command::new(&sh.python)
            .args(&sh.cfg.python.flags)
            .arg("-c")
            .arg(&sh.boot)
            .env_clear()
            .envs(ENV.iter().copied())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", sh.python.display()))?;
        let mut server = Server {
            child,
            sock: Some(ours),
        };
        let mut fds = [PollFd::new(server.sock().as_fd(), PollFlags::POLLIN)];
        let ready = poll(
            &mut fds,
            PollTimeout::try_from(SERVER_START).unwrap_or(PollTimeout::MAX),
        )
        .map_err(|e| format!("waiting for the harness server: {e}"))?;
        let mut b = [0u8; 1];
        let n = if ready > 0 {
            nix::unistd::read(server.sock(), &mut b).unwrap_or(0)
        } else {
            0
        };
        if n != 1 || b[0] != b'R' {
            let _ = server.child.kill();
            let _ = server.child.wait();
            return Err(format!(
                "the harness server ({} {}) did not start; run it by hand to see why",
                sh.python.display(),
                sh.cfg.python.flags.join(" ")
            ));
        }
        Ok(server)
    }

    fn sock(&self) -> &OwnedFd {
        self.sock
            .as_ref()
            .expect("server socket open while the server is in use")
    }

    fn alive(&mut self) -> bool {
        self.sock.is_some() && matches!(self.child.try_wait(), Ok(None))
    }

    fn send(&self, fds: &[i32]) -> Result<(), String> {
        let iov = [std::io::IoSlice::new(b"J")];
        sendmsg::<UnixAddr>(
            self.sock().as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(fds)],
            MsgFlags::empty(),
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("sending the job to the harness server: {e}"))
    }

    /// Close the socket (the server exits once its jobs are reaped) and reap it.
    fn stop(&mut self, grace: Duration) {
        self.sock = None;
        let end = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= end => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
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

/// A pool slot: one job at a time.
pub(crate) struct Slot {
    pub index: usize,
    pub cgroups: SlotCgroups,
    server: Option<Server>,
    /// Protections the last job's supervisor reported (for `doctor`).
    last_applied: Option<Vec<(String, String)>>,
}

impl Slot {
    pub fn new(index: usize, cgroups: SlotCgroups) -> Slot {
        Slot {
            index,
            cgroups,
            server: None,
            last_applied: None,
        }
    }

    /// Start the warm server now rather than on the first job.
    pub fn warm_up(&mut self, sh: &Shared) -> Result<(), String> {
        if sh.cfg.mode == Mode::Warm && !self.server.as_mut().is_some_and(Server::alive) {
            self.server = Some(Server::start(sh)?);
        }
        Ok(())
    }

    /// Resident memory of the idle warm server, bytes (PSS where available).
    pub fn server_memory(&self) -> Option<u64> {
        let pid = self.server.as_ref()?.child.id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let field = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        };
        field("Pss:").or_else(|| field("Rss:")).map(|kb| kb * 1024)
    }

    /// Run one job to its outcome. Never panics on the program's behaviour;
    /// our own failures become `sandbox_error`.
    pub fn execute(&mut self, sh: &Shared, job: &Job) -> Outcome {
        let t0 = Instant::now();
        let total = job.tests.total();
        let mut out = match self.execute_inner(sh, job) {
            Ok(o) => o,
            Err(e) => Outcome::failure(&job.id, Verdict::SandboxError, total, e),
        };
        out.id = job.id.clone();
        out.wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        out
    }

    fn execute_inner(&mut self, sh: &Shared, job: &Job) -> Result<Outcome, String> {
        let lim = sh.cfg.limits.with(&job.limits);
        let problems = lim.problems("limits");
        if !problems.is_empty() {
            return Ok(Outcome::failure(
                &job.id,
                Verdict::InvalidJob,
                job.tests.total(),
                problems.join("; "),
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
        let work = tempfile::Builder::new()
            .prefix("gradus-job-")
            .tempdir_in(&sh.work_root)
            .map_err(|e| format!("creating a work dir in {}: {e}", sh.work_root.display()))?;
        let overhead = sh.cfg.overhead_mb << 20;
        self.cgroups
            .prepare(
                lim.processes + sh.cfg.overhead_processes,
                (lim.memory_mb << 20) + overhead,
            )
            .map_err(|e| format!("setting cgroup limits: {e}"))?;
        let oom_before = self.cgroups.oom_kills();
        let request = self.request(sh, job, &lim, work.path());
        let mut req_file = tempfile::tempfile().map_err(|e| format!("request file: {e}"))?;
        req_file
            .write_all(&request)
            .map_err(|e| format!("request file: {e}"))?;
        let (res_r, res_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let mut fds = vec![req_file.as_raw_fd(), res_w.as_raw_fd()];
        let mut secret_writer = None;
        let mut secret_r = None;
        if let Tests::Function { entry_point, test } = &job.tests {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
            let mut enc = Encoder::default();
            enc.tuple(2);
            enc.str(test);
            enc.str(entry_point);
            let data = enc.buf;
            // The checker reads the test only after the candidate is forked;
            // a thread keeps a large test from blocking us on the pipe.
            secret_writer = Some(std::thread::spawn(move || {
                let mut f = File::from(w);
                let _ = f.write_all(&data);
            }));
            fds.push(r.as_raw_fd());
            secret_r = Some(r);
        }
        let mut cold = None;
        match sh.cfg.mode {
            Mode::Warm => {
                let alive = self.server.as_mut().is_some_and(Server::alive);
                if !alive {
                    self.server = Some(Server::start(sh)?);
                }
                let server = self.server.as_ref().expect("server just started");
                if let Err(e) = server.send(&fds) {
                    // A server that died between jobs is restarted once.
                    self.server = Some(Server::start(sh)?);
                    self.server
                        .as_ref()
                        .expect("server just started")
                        .send(&fds)
                        .map_err(|e2| format!("{e}; after restart: {e2}"))?;
                }
            }
            Mode::Cold => {
                let server = Server::start(sh)?;
                server.send(&fds)?;
                cold = Some(server);
            }
        }
        if let Some(s) = cold.as_mut() {
            s.sock = None;
        }
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
        if !finished {
            ev.job_timed_out = true;
            self.cgroups.kill_all(DRAIN);
            read_records(&res_r, Instant::now() + DRAIN, &mut ev);
        }
        let clean = self.cgroups.wait_empty(DRAIN);
        if let Some(mut s) = cold.take() {
            s.stop(DRAIN);
        }
        if let Some(t) = secret_writer {
            let _ = t.join();
        }
        if !clean {
            return Err("processes of the job survived SIGKILL; the slot is unusable".into());
        }
        ev.oom = self.cgroups.oom_kills() > oom_before;
        self.last_applied = Some(ev.applied.clone());
        drop(work);
        Ok(judge(&job.id, &job.tests, &lim, &ev, sh.cfg.report_chars))
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
        e.str("cgroups");
        let procs = self.cgroups.procs_files();
        e.list(procs.len());
        for p in &procs {
            e.str(p);
        }
        e.str("workdir");
        e.str(&work.to_string_lossy());
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
        e.end_dict();
        e.buf
    }

    /// Kill anything left and remove the cgroups.
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

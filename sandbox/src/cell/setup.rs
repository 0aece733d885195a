//! S and J: the launcher process and the cell root. S reads the cell
//! settings, forks J and, being root in the host user namespace, writes J's
//! uid and gid maps. J applies the steps every job of the slot shares, in a
//! fixed order (each with what it stops), then forks I, PID 1 of the cell's
//! PID namespace (`init`). The per-job steps follow in `init` and `spawn`.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, pipe2};

use super::settings::CellSettings;
use super::{EXIT_USAGE, SetupError, init, sys};
use crate::config::Requirement;

/// Exit status of a cell that failed (reported with a `setup_error` record).
pub(super) const EXIT_FAILED: i32 = 70;
/// ns uids of the candidate and the checker (ns uid 0 is the supervisor).
pub(super) const CANDIDATE_UID: u32 = 1000;
pub(super) const CHECKER_UID: u32 = 2000;
/// Scratch dirs that get a fresh private tmpfs for every job.
pub(super) const SCRATCH: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// What each protection came to: `on`, `off` or `missing: why`, in the
/// order applied.
#[derive(Debug, Default, Clone)]
pub(super) struct Applied(pub Vec<(String, String)>);

impl Applied {
    pub fn set(&mut self, name: &str, state: impl Into<String>) {
        let state = state.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = state,
            None => self.0.push((name.to_string(), state)),
        }
    }

    pub fn on(&self, name: &str) -> bool {
        self.0.iter().any(|(n, s)| n == name && s == "on")
    }

    /// The marshal dict the slot reads (name -> state).
    pub fn encode(&self, e: &mut crate::marshal::Encoder) {
        e.dict();
        for (k, v) in &self.0 {
            e.str(k);
            e.str(v);
        }
        e.end_dict();
    }

    /// Run an isolation step as its requirement says and record the result.
    /// A failure of a required step is returned; of an optional one, noted.
    pub fn attempt(
        &mut self,
        want: Requirement,
        name: &str,
        f: impl FnOnce() -> Result<(), SetupError>,
    ) -> Result<bool, SetupError> {
        if want == Requirement::Off {
            self.set(name, "off");
            return Ok(false);
        }
        match f() {
            Ok(()) => {
                self.set(name, "on");
                Ok(true)
            }
            Err(e) if want == Requirement::Required => Err(e),
            Err(e) => {
                self.set(name, format!("missing: {}: {}", e.step, e.msg));
                Ok(false)
            }
        }
    }
}

/// One message from the control socket and the fds that came with it.
pub(super) fn recv(sock: RawFd) -> nix::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: SCM_RIGHTS hands us new fds that nothing else owns.
            fds.extend(list.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok((buf, fds))
}

/// Send `tag` + `payload` as one message (errors ignored: the slot may be gone).
pub(super) fn reply(sock: RawFd, tag: u8, payload: &[u8]) {
    let mut m = Vec::with_capacity(1 + payload.len());
    m.push(tag);
    m.extend_from_slice(payload);
    let _ =
        nix::sys::socket::sendmsg::<()>(sock, &[IoSlice::new(&m)], &[], MsgFlags::empty(), None);
}

/// The whole content of a memfd (or any seekable file) from offset 0.
pub(super) fn read_all(fd: &OwnedFd) -> Result<Vec<u8>, SetupError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = sys(
            "read request",
            nix::sys::uio::pread(fd, &mut chunk, out.len() as i64),
        )?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Replace fd 0 (the control socket) with /dev/null.
fn drop_socket() {
    if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
        // SAFETY: dup2 onto fd 0 replaces the socket; nothing else owns fd 0
        // once the caller no longer uses the socket.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
}

/// S: the launcher's entry. Returns the process exit status.
pub(super) fn serve() -> i32 {
    // SAFETY: fd 0 stays open for the whole call.
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    match nix::sys::stat::fstat(stdin) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => {}
        _ => {
            eprintln!(
                "gradus-sandbox-cell: fd 0 is not a control socket; this program is \
                 started by gradus-sandbox for each pool slot, not by hand"
            );
            return EXIT_USAGE;
        }
    }
    let (msg, fds) = match recv(0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("gradus-sandbox-cell: reading the cell settings: {e}");
            return EXIT_USAGE;
        }
    };
    if msg.is_empty() {
        return 0;
    }
    let cell = match (msg.as_slice(), fds.as_slice()) {
        (b"C", [f]) => read_all(f).and_then(|d| {
            CellSettings::parse(&d).map_err(|e| SetupError::new("cell settings", 0, e.to_string()))
        }),
        _ => Err(SetupError::new(
            "protocol",
            0,
            "the first message must be `C` with one fd (the cell settings)",
        )),
    };
    drop(fds);
    let cell = match cell {
        Ok(c) => c,
        Err(e) => {
            reply(0, b'E', &e.record());
            return EXIT_USAGE;
        }
    };
    match start_cell(&cell) {
        Ok(code) => code,
        Err(e) => {
            reply(0, b'E', &e.record());
            EXIT_FAILED
        }
    }
}

/// S: fork J, write its id maps when it asks, wait for it.
fn start_cell(cell: &CellSettings) -> Result<i32, SetupError> {
    let (sync_r, sync_w) = sys("pipe", pipe2(OFlag::O_CLOEXEC))?;
    let (go_r, go_w) = sys("pipe", pipe2(OFlag::O_CLOEXEC))?;
    // SAFETY: the launcher is single-threaded (main_if_requested runs before
    // any thread starts), so the child may run ordinary code.
    match sys("fork cell root", unsafe { fork() })? {
        ForkResult::Child => {
            drop(sync_r);
            drop(go_w);
            let code = match cell_root(cell, sync_w, go_r) {
                Ok(code) => code,
                Err(e) => {
                    reply(0, b'E', &e.record());
                    EXIT_FAILED
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(sync_w);
            drop(go_r);
            // Jobs go to the cell: S keeps no handle on the control socket.
            drop_socket();
            let mut b = [0u8; 1];
            if nix::unistd::read(&sync_r, &mut b) == Ok(1) && b[0] == b'U' {
                let answer = match write_id_maps(child, cell.uid_base) {
                    Ok(()) => b"G".to_vec(),
                    Err(e) => [b"F".as_slice(), e.to_string().as_bytes()].concat(),
                };
                let _ = nix::unistd::write(&go_w, &answer[..answer.len().min(200)]);
            }
            drop(go_w);
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(0)
        }
    }
}

/// S is root in the host user namespace, so it may map the cell's ns uids
/// 0/1000/2000 onto unprivileged host uids (a process writing its own map
/// could only map its own uid, host root, which keeps root's file access).
fn write_id_maps(pid: Pid, base: u32) -> std::io::Result<()> {
    let lines = format!(
        "0 {base} 1\n{CANDIDATE_UID} {} 1\n{CHECKER_UID} {} 1\n",
        base + 1,
        base + 2
    );
    for name in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{name}"), &lines)?;
    }
    Ok(())
}

/// J: the steps shared by every job of the slot; then fork I and wait.
fn cell_root(cell: &CellSettings, sync_w: OwnedFd, go_r: OwnedFd) -> Result<i32, SetupError> {
    let mut applied = Applied::default();
    // 1. Fresh work dir: the slot names one per job; I puts a private
    //    size-limited tmpfs there, so nothing written survives the job.
    // 2. New session and process group: the cell cannot signal or read the
    //    host's controlling terminal, and has its own group to kill.
    sys("setsid", nix::unistd::setsid())?;
    // 3. Cgroups (a pids cap that binds root, memory): the cell joins the
    //    slot's while still host root (cgroupfs is not writable from inside
    //    the user namespace); every job process is forked inside them.
    let me = std::process::id().to_string();
    for path in &cell.cell_cgroups {
        std::fs::write(path, &me).map_err(|e| {
            SetupError::new(
                format!("join cgroup {path}"),
                e.raw_os_error().unwrap_or(0),
                e.to_string(),
            )
        })?;
    }
    // 4. User + network + mount + IPC + PID (+ UTS) namespaces: no host uid
    //    0, no network but a private loopback, no host mounts, IPC or pids.
    let namespaces = [
        ("user_ns", CloneFlags::CLONE_NEWUSER),
        ("mount_ns", CloneFlags::CLONE_NEWNS),
        ("net_ns", CloneFlags::CLONE_NEWNET),
        ("ipc_ns", CloneFlags::CLONE_NEWIPC),
        ("pid_ns", CloneFlags::CLONE_NEWPID),
        ("uts_ns", CloneFlags::CLONE_NEWUTS),
    ];
    let flags = namespaces
        .iter()
        .filter(|(n, _)| cell.want(n) != Requirement::Off)
        .fold(CloneFlags::empty(), |a, (_, f)| a | *f);
    if nix::sched::unshare(flags).is_ok() {
        for (n, f) in namespaces {
            applied.set(n, if flags.contains(f) { "on" } else { "off" });
        }
    } else {
        for (n, f) in namespaces {
            applied.attempt(cell.want(n), n, || sys("unshare", nix::sched::unshare(f)))?;
        }
    }
    let user_ns = applied.on("user_ns");
    let mount_wanted = cell.want("mount_ns") != Requirement::Off;
    sys(
        "sync",
        nix::unistd::write(&sync_w, if user_ns { b"U" } else { b"N" }),
    )?;
    drop(sync_w);
    let mut hidden = Vec::new();
    if user_ns {
        let mut answer = [0u8; 256];
        let n = nix::unistd::read(&go_r, &mut answer).unwrap_or(0);
        if answer[..n].first() != Some(&b'G') {
            let why = String::from_utf8_lossy(answer.get(1..n).unwrap_or(&[])).into_owned();
            return Err(SetupError::new(
                "uid_map",
                0,
                if why.is_empty() {
                    "no answer".into()
                } else {
                    why
                },
            ));
        }
        // Opened while this process still has host root's file access.
        if mount_wanted {
            hidden = interpreter_dirs(&cell.prefixes)?;
        }
        // Become ns root (an unprivileged host uid) so files we make are mapped.
        sys("setgroups", nix::unistd::setgroups(&[]))?;
        sys(
            "setresgid",
            nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)),
        )?;
        sys(
            "setresuid",
            nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)),
        )?;
    } else if applied.on("mount_ns") {
        hidden = interpreter_dirs(&cell.prefixes)?;
    }
    drop(go_r);
    let tmpfs_opts = format!(
        "size={},nr_inodes={},mode=1777",
        cell.tmpfs_bytes, cell.tmpfs_inodes
    );
    if applied.on("mount_ns") {
        // Mount events stay inside the cell: nothing we mount leaks to the host.
        sys(
            "mount --make-rprivate /",
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            ),
        )?;
        // 5. A read-only view of everything else (and no setuid binaries).
        applied.attempt(cell.want("readonly_root"), "readonly_root", || {
            mount_setattr_ro("/")
        })?;
        // 6. Private /tmp, /dev/shm and /var/tmp: scratch space is per job (I
        //    mounts a fresh tmpfs on each for every job), size- and
        //    inode-limited, and cannot reach the host's. Tried once here.
        applied.attempt(cell.want("private_tmp"), "private_tmp", || {
            for d in SCRATCH {
                if std::path::Path::new(d).is_dir() {
                    mount_tmpfs(d, &tmpfs_opts)?;
                    umount(d)?;
                }
            }
            Ok(())
        })?;
        expose_interpreter(hidden)?;
    } else {
        for n in ["readonly_root", "private_tmp"] {
            applied.attempt(cell.want(n), n, || {
                Err(SetupError::new("mount_ns", 0, "needs the mount namespace"))
            })?;
        }
    }
    // SAFETY: single-threaded, as above.
    match sys("fork supervisor", unsafe { fork() })? {
        ForkResult::Child => {
            let code = match init::run(cell, applied, tmpfs_opts) {
                Ok(()) => 0,
                Err(e) => {
                    reply(0, b'E', &e.record());
                    EXIT_FAILED
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop_socket();
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(0)
        }
    }
}

pub(super) fn mount_tmpfs(path: &str, opts: &str) -> Result<(), SetupError> {
    sys(
        &format!("mount tmpfs {path}"),
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts),
        ),
    )
}

pub(super) fn umount(path: &str) -> Result<(), SetupError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        // A host work dir the slot already removed takes its mounts in every
        // namespace with it: nothing is left to unmount.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(SetupError::sys(format!("umount {path}"), e)),
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Make the mount tree at `path` read-only and nosuid, recursively.
fn mount_setattr_ro(path: &str) -> Result<(), SetupError> {
    let c = CString::new(path).map_err(|_| SetupError::new("mount_setattr", 0, "NUL in path"))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid C string and attr a valid mount_attr of
    // the size passed; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(SetupError::sys(
            format!("mount_setattr {path} ro,nosuid"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The shallowest ancestor of `path` that others may not traverse.
fn blocked_ancestor(path: &str) -> Option<String> {
    let mut d = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        d.push('/');
        d.push_str(part);
        let st = nix::sys::stat::stat(d.as_str()).ok()?;
        if st.st_mode & 0o001 == 0 {
            return Some(d);
        }
    }
    None
}

/// (blocked ancestor, dir, O_PATH fd) for each interpreter dir the
/// candidate's uid could not reach; opened while we still have host access.
fn interpreter_dirs(prefixes: &[String]) -> Result<Vec<(String, String, OwnedFd)>, SetupError> {
    let real: BTreeSet<String> = prefixes
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut out = Vec::new();
    for p in real {
        if let Some(a) = blocked_ancestor(&p) {
            let fd = sys(
                &format!("open {p}"),
                nix::fcntl::open(
                    p.as_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ),
            )?;
            out.push((a, p, fd));
        }
    }
    Ok(out)
}

/// Hide each untraversable dir behind an empty tmpfs (its other contents
/// stay out of sight) and bind the interpreter's own dirs back, read-only.
fn expose_interpreter(hidden: Vec<(String, String, OwnedFd)>) -> Result<(), SetupError> {
    let ancestors: BTreeSet<String> = hidden.iter().map(|(a, _, _)| a.clone()).collect();
    for a in &ancestors {
        mount_tmpfs(a, "size=1m,mode=0755")?;
    }
    let mut all = ancestors.clone();
    for (_, p, fd) in hidden {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&p)
            .map_err(|e| {
                SetupError::new(
                    format!("mkdir {p}"),
                    e.raw_os_error().unwrap_or(0),
                    e.to_string(),
                )
            })?;
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        sys(
            &format!("bind {p}"),
            nix::mount::mount(
                Some(src.as_str()),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
        all.insert(p);
    }
    for path in &all {
        mount_setattr_ro(path)?;
    }
    Ok(())
}

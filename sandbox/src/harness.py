"""gradus sandbox harness: the Python side of gradus-sandbox.

The Rust side starts this module in a fresh interpreter (`serve`) per pool
slot and talks to it over a SOCK_SEQPACKET socket on fd 0. The first message
carries the slot's cell settings (a marshal dict in an unlinked file); the
server builds the slot's isolation cell from it and answers "R" (ready, with
the protections applied) or "E" (why not). Each later message is one job and
carries three fds: the request (a marshal dict in a memfd), the result pipe
(write end) and, for HumanEval-shaped jobs, the pipe holding the test code.

Process tree of one slot:

    server (this interpreter, host namespaces; writes the cell's uid maps)
      J  cell root: setsid, slot cgroups, new namespaces, read-only mounts
        I  PID 1 of the cell's PID namespace: trusted supervisor and reaper;
           serves jobs from fd 0, one at a time, for the life of the slot
          C  the candidate program (ns uid 1000, rlimits, no_new_privs,
             seccomp), forked per test
          K  the checker for HumanEval tests (ns uid 2000, same filter)

The cell (J and I) joins the slot's pids and memory cgroups once; C and K are
forked inside and start in them (no per-job cgroup migration: on cgroup v1
each waits for an RCU grace period). Namespaces are created once per cell;
what a job could leave behind is replaced for every job instead: /tmp,
/var/tmp, /dev/shm and the work dir are fresh tmpfs mounts, unmounted after
the job (one that nobody touched at all is kept), SysV IPC and POSIX queues
live in an IPC namespace that I replaces after every job, and after every
test I kills everything else in the PID namespace and reaps it; the Rust side
then checks that the slot's task count is back to the cell's two. A cell that
fails any of this exits and is rebuilt.

This server and its supervisor serve warm mode: the candidate runs in C, a
fork of I (the harness is already imported: a zygote). Cold mode has a native
supervisor (the Rust crate's `cell` module) that execs a fresh interpreter per
test; for call and function tests that interpreter runs this module's code
(sent as a code object on fd 6) from `child_main`.

Honesty: no verdict is decided in a process that runs candidate code. Stdout is
captured by I and compared by Rust; call-based results leave C as marshal bytes
(type-tagged, exact builtin types only) and are compared by Rust against
expected values that never enter the sandbox; HumanEval `check` runs in K, a
separate process under another uid that receives only plain values from C
(read by a strict decoder, never by CPython's marshal) and takes nothing from
the program but its entry point: the helpers the test relies on come from the
job's prelude (the problem's prompt), run in K's own namespace.
The test code reaches K through its own pipe after C has been forked, so it is
never in C's memory.

Only modules every interpreter already has are imported at the top: a fresh
interpreter in cold mode runs this module too. The server and supervisor
import theirs in `supervisor_imports` (nothing heavy: no json, signal,
subprocess, socket, ctypes; every module the supervisor holds makes each fork
of it dearer).
"""

import gc
import marshal
import os
import sys


def supervisor_imports():
    """Bind the modules only the server and the supervisor use as module
    globals. A fresh interpreter running a cold-mode child (`child_main`)
    never needs them, and importing them would cost it ≈ 2 ms (four of them
    are extension modules loaded from disk); the warm supervisor has them
    before it forks anything."""
    global _socket, fcntl, resource, select, time
    import _socket
    import fcntl
    import resource
    import select
    import time

SIGKILL = 9
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
ENOENT = 2
EINVAL = 22
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
SYS_MOUNT_SETATTR = 442
CANDIDATE_UID = 1000
CHECKER_UID = 2000
FRAME_MAX = 64 << 20
# Scratch dirs that get a fresh private tmpfs for every job.
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
# The fd on which a fresh interpreter (cold mode) reports a compile error of
# the program to its native supervisor.
COMPILE_FD = 7

_LIBC = []


def libc():
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def errno_now():
    import ctypes

    return ctypes.get_errno()


class SetupError(Exception):
    def __init__(self, step, errno, msg):
        super().__init__(step, errno, msg)
        self.step, self.errno, self.msg = step, errno, msg


def check_rc(step, rc):
    if rc != 0:
        err = errno_now()
        raise SetupError(step, err, os.strerror(err))


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd, obj):
    data = obj if isinstance(obj, bytes) else marshal.dumps(obj)
    write_all(fd, len(data).to_bytes(4, "little") + data)


def read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_frame(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    n = int.from_bytes(head, "little")
    if n > FRAME_MAX:
        return None
    return read_exact(fd, n)


def read_fd(fd):
    return os.pread(fd, os.fstat(fd).st_size, 0)


def mount_tmpfs(path, opts):
    rc = libc().mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode())
    check_rc("mount tmpfs " + path, rc)


def umount(path):
    if libc().umount2(path.encode(), MNT_DETACH) != 0:
        err = errno_now()
        # A host work dir the Rust side has already removed takes its mounts
        # in every namespace with it: nothing is left to unmount.
        if err not in (EINVAL, ENOENT):
            raise SetupError("umount " + path, err, os.strerror(err))


def setup_error_record(e):
    if isinstance(e, SetupError):
        return {"t": "setup_error", "step": e.step, "errno": e.errno, "msg": e.msg}
    return {"t": "setup_error", "step": "harness", "errno": 0, "msg": repr(e)}


# ---------------------------------------------------------------- server


def serve():
    """Build this slot's cell from the first message on fd 0, then wait for it."""
    sock = _socket.socket(fileno=0)
    sock.setblocking(True)
    msg, fds = recv_fds(sock)
    if not msg or not fds:
        os._exit(0)
    cell = marshal.loads(read_fd(fds[0]))
    for f in fds:
        os.close(f)
    sync_r, sync_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(sync_r)
        os.close(go_w)
        try:
            cell_root(cell, sock, sync_w, go_r)
        except BaseException as e:
            rec = setup_error_record(e)
            try:
                sock.send(b"E" + marshal.dumps(rec))
            except OSError:
                pass
        os._exit(70)
    os.close(sync_w)
    os.close(go_r)
    # Jobs go to the cell: the server keeps no handle on the control socket.
    sock.detach()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    if os.read(sync_r, 1) == b"U":
        try:
            write_id_maps(pid, cell)
            os.write(go_w, b"G")
        except OSError as e:
            os.write(go_w, b"F" + str(e).encode()[:200])
    os.close(sync_r)
    os.close(go_w)
    os.waitpid(pid, 0)
    os._exit(0)


def write_id_maps(pid, cell):
    # The server is root in the host user namespace, so it may map the cell's
    # ns-uids 0/1000/2000 onto unprivileged host uids (a process writing its
    # own map could only map host root, which would keep root's file access).
    base = cell["uid_base"]
    lines = "0 %d 1\n%d %d 1\n%d %d 1\n" % (base, CANDIDATE_UID, base + 1, CHECKER_UID, base + 2)
    for name in ("uid_map", "gid_map"):
        with open("/proc/%d/%s" % (pid, name), "w") as f:
            f.write(lines)


# ---------------------------------------------------------------- cell root (J)


def attempter(want, applied):
    """Run an isolation step as its requirement says; record what happened."""

    def attempt(name, fn):
        mode = want.get(name, "off")
        if mode == "off":
            applied[name] = "off"
            return False
        try:
            fn()
            applied[name] = "on"
            return True
        except SetupError as e:
            if mode == "required":
                raise
            applied[name] = "missing: %s: %s" % (e.step, e.msg)
            return False
        except OSError as e:
            if mode == "required":
                raise SetupError(name, e.errno or 0, str(e))
            applied[name] = "missing: %s" % e
            return False

    return attempt


def cell_root(cell, sock, sync_w, go_r):
    """Isolation steps shared by every job of the slot, in a fixed order; each
    says what it stops. The per-job steps follow in `run_job` and `confine`."""
    want = cell["protect"]  # name -> "required" | "optional" | "off"
    applied = {}
    attempt = attempter(want, applied)
    # 1. Fresh work dir: the Rust side makes one per job with tempfile; I puts
    #    a private size-limited tmpfs there, so nothing written survives the job.
    # 2. New session and process group: the cell cannot signal or read the
    #    controlling terminal of the host, and has its own group to kill.
    os.setsid()
    # 3. Cgroups (pids cap that binds root, memory): the cell joins the slot's
    #    while still host root (inside the user namespace cgroupfs is not
    #    writable); every job process is forked inside and starts in them.
    for path in cell["cell_cgroups"]:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    # 4. User + network + mount + IPC + PID (+ UTS) namespaces: no host uid 0,
    #    no network but a private loopback, no host mounts, SysV IPC or pids.
    ns_flags = {
        "user_ns": CLONE_NEWUSER,
        "mount_ns": CLONE_NEWNS,
        "net_ns": CLONE_NEWNET,
        "ipc_ns": CLONE_NEWIPC,
        "pid_ns": CLONE_NEWPID,
        "uts_ns": CLONE_NEWUTS,
    }
    flags = 0
    for name, bit in ns_flags.items():
        if want.get(name, "off") != "off":
            flags |= bit
    if libc().unshare(flags) == 0:
        for name, bit in ns_flags.items():
            applied[name] = "on" if flags & bit else "off"
    else:
        for name, bit in ns_flags.items():
            if flags & bit:
                attempt(name, lambda bit=bit: check_rc("unshare", libc().unshare(bit)))
            else:
                applied[name] = "off"
    user_ns = applied.get("user_ns") == "on"
    os.write(sync_w, b"U" if user_ns else b"N")
    os.close(sync_w)
    if user_ns:
        answer = os.read(go_r, 256)
        if answer[:1] != b"G":
            raise SetupError("uid_map", 0, answer[1:].decode(errors="replace") or "no answer")
        hidden = interpreter_dirs() if want.get("mount_ns", "off") != "off" else []
        # Become ns root (an unprivileged host uid) so files we create are mapped.
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    os.close(go_r)
    mount_ns = applied.get("mount_ns") == "on"
    if not user_ns:
        hidden = interpreter_dirs() if mount_ns else []
    tmpfs_opts = "size=%d,nr_inodes=%d,mode=1777" % (cell["tmpfs_bytes"], cell["tmpfs_inodes"])
    if mount_ns:
        # Mount events stay inside the cell: nothing we mount leaks to the host.
        check_rc("mount --make-rprivate /", libc().mount(None, b"/", None, MS_REC | MS_PRIVATE, None))

        def readonly_root():
            attr = (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID).to_bytes(8, "little") + bytes(24)
            rc = libc().syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, 32)
            check_rc("mount_setattr / ro,nosuid", rc)

        # 5. Private /tmp, /dev/shm and /var/tmp: scratch space is per job
        #    (I mounts a fresh tmpfs on each for every job), size- and
        #    inode-limited, and cannot reach the host's. Tried once here.
        def private_tmp():
            for d in SCRATCH:
                if os.path.isdir(d):
                    mount_tmpfs(d, tmpfs_opts)
                    umount(d)

        # 6. A read-only view of everything else (and no setuid binaries).
        attempt("readonly_root", readonly_root)
        attempt("private_tmp", private_tmp)
        expose_interpreter(hidden, tmpfs_opts)
    else:
        for name in ("readonly_root", "private_tmp"):
            attempt(name, _needs_mount_ns)
    cell["tmpfs_opts"] = tmpfs_opts
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            init_main(cell, sock, applied)
            code = 0
        except BaseException as e:
            try:
                sock.send(b"E" + marshal.dumps(setup_error_record(e)))
            except OSError:
                pass
        os._exit(code)
    sock.detach()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    os.waitpid(pid, 0)


def _needs_mount_ns():
    raise SetupError("mount_ns", 0, "needs the mount namespace")


def blocked_ancestor(path):
    """The shallowest ancestor of `path` that others may not traverse."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def interpreter_dirs():
    """(blocked ancestor, dir, O_PATH fd) for each interpreter dir the
    candidate's uid could not reach; opened while we still have host access."""
    out = []
    for p in sorted({os.path.realpath(x) for x in (sys.prefix, sys.base_prefix, sys.exec_prefix)}):
        a = blocked_ancestor(p)
        if a is not None:
            out.append((a, p, os.open(p, os.O_PATH | os.O_DIRECTORY)))
    return out


def expose_interpreter(hidden, tmpfs_opts):
    # Hide the untraversable dir behind an empty tmpfs (its other contents stay
    # out of sight) and bind the interpreter's own dirs back, read-only.
    for a in sorted({a for a, _, _ in hidden}):
        check_rc("mount tmpfs " + a, libc().mount(b"tmpfs", a.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755"))
    for a, p, fd in hidden:
        os.makedirs(p, mode=0o755, exist_ok=True)
        src = ("/proc/self/fd/%d" % fd).encode()
        check_rc("bind " + p, libc().mount(src, p.encode(), None, MS_BIND | MS_REC, None))
        os.close(fd)
    for path in sorted({a for a, _, _ in hidden} | {p for _, p, _ in hidden}):
        attr = (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID).to_bytes(8, "little") + bytes(24)
        check_rc("mount_setattr " + path, libc().syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, attr, 32))


# ---------------------------------------------------------------- init (I)


class Job:
    def __init__(self, cell, req, res_w):
        self.cell = cell
        self.req = req
        self.res_w = res_w
        self.applied = cell["applied"]
        self.lim = req["limits"]
        self.pid1 = os.getpid() == 1
        self.code = None


def init_main(cell, sock, applied):
    want = cell["protect"]
    attempt = attempter(want, applied)
    if os.getpid() == 1 and applied.get("mount_ns") == "on":

        def fresh_proc():
            rc = libc().mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            check_rc("mount proc", rc)

        # 7. Fresh /proc for the PID namespace: other processes' environments
        #    and command lines on the host are out of sight.
        attempt("proc", fresh_proc)
    else:

        def no_proc():
            raise SetupError("proc", 0, "a fresh /proc needs mount_ns and pid_ns")

        attempt("proc", no_proc)
    # 8. The supervisor is not dumpable: the candidate cannot open /proc/1/mem or fds.
    libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # 9-11. rlimits, no_new_privs and seccomp are applied in each child, last,
    #    because I itself must still mount, fork and kill.
    for name in ("no_new_privs", "seccomp", "rlimits", "uid_drop"):
        mode = want.get(name, "off")
        applied[name] = "off" if mode == "off" else "on"
    if applied.get("seccomp") == "on" and applied.get("no_new_privs") != "on":
        applied["no_new_privs"] = "on"  # seccomp without CAP_SYS_ADMIN needs it
    cell["applied"] = applied
    cell["fprogs"] = seccomp_programs(cell["seccomp"] if applied.get("seccomp") == "on" else [])
    cell["scratch"] = []
    cell["stamps"] = {}
    fresh_scratch(cell)
    # Every job's fork copies I's page tables, every cold child unmaps them
    # again: hand back what the setup left behind before the first job.
    gc.collect()
    libc().malloc_trim(0)
    sock.send(b"R" + marshal.dumps(applied))
    while True:
        msg, fds = recv_fds(sock)
        if not msg:
            break
        if len(fds) < 2:
            for f in fds:
                os.close(f)
            continue
        res_w = fds[1]
        try:
            run_job(cell, fds)
        except BaseException as e:
            # The cell may be in a state we cannot vouch for: report, clean
            # up and exit; the Rust side builds a new cell for the next job.
            try:
                write_frame(res_w, setup_error_record(e))
            except OSError:
                pass
            kill_rest()
            os._exit(70)
        finally:
            # The request and the result pipe; run_job owns the rest.
            for f in fds[:2]:
                os.close(f)
        # Between jobs (the Rust side already has the outcome): drop what
        # the job could have left in the cell and prepare the next one. A
        # failure here ends the cell, before any other job can see its state.
        try:
            clear_scratch(cell)
            if applied.get("ipc_ns") == "on":
                # SysV IPC objects and POSIX queues: gone with the namespace.
                check_rc("unshare ipc", libc().unshare(CLONE_NEWIPC))
            fresh_scratch(cell)
        except BaseException:
            kill_rest()
            os._exit(70)
    kill_rest()
    os._exit(0)


def recv_fds(sock, maxfds=8):
    """One message and the fds that came with it (SCM_RIGHTS)."""
    msg, anc, _, _ = sock.recvmsg(1 << 16, _socket.CMSG_SPACE(maxfds * 4))
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            n = len(data) // 4
            fds.extend(int.from_bytes(data[4 * i : 4 * i + 4], sys.byteorder, signed=True) for i in range(n))
    return msg, fds


def fresh_scratch(cell):
    """Fresh tmpfs on /tmp, /var/tmp and /dev/shm (where not still unused)
    for the next job."""
    if cell["applied"].get("private_tmp") == "on":
        for d in SCRATCH:
            if d not in cell["scratch"] and os.path.isdir(d):
                mount_tmpfs(d, cell["tmpfs_opts"])
                cell["scratch"].append(d)
                cell["stamps"][d] = stamp(d)


def stamp(path):
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_atime_ns, st.st_mode, st.st_uid, st.st_gid)


def untouched(cell, path):
    """A scratch tmpfs that holds nothing but its root dir, no data, and whose
    root no one has written, changed or even listed: as good as a fresh one,
    and no job can learn from it that another ran before (its root belongs to
    I, so a job cannot set it back)."""
    st = os.statvfs(path)
    empty = st.f_files - st.f_ffree <= 1 and st.f_blocks == st.f_bfree
    return empty and cell["stamps"].get(path) == stamp(path)


def clear_scratch(cell):
    """Unmount every scratch tmpfs a job may have used."""
    keep = [d for d in cell["scratch"] if d in SCRATCH and untouched(cell, d)]
    for d in reversed(cell["scratch"]):
        if d not in keep:
            umount(d)
    cell["scratch"] = keep


def kill_rest():
    """Kill every other process of the cell's PID namespace and reap it."""
    if os.getpid() == 1:
        try:
            os.kill(-1, SIGKILL)
        except OSError:
            pass
    while True:
        try:
            os.wait4(-1, 0)
        except ChildProcessError:
            return


def run_job(cell, fds):
    req_fd, res_w = fds[0], fds[1]
    # The test-code pipe: closed as soon as K has it (or now, if no K).
    secret = list(fds[2:3])
    for f in fds[3:]:
        os.close(f)
    try:
        req = marshal.loads(read_fd(req_fd))
        job = Job(cell, req, res_w)
        work_dir(cell, req["workdir"])
        write_frame(res_w, {"t": "applied", "protections": cell["applied"]})
        run_tests(job, secret)
    finally:
        for f in secret:
            os.close(f)
        secret.clear()
        # Nothing of the job runs on (each test already ends with kill_rest).
        kill_rest()
        os.chdir("/")
    write_frame(res_w, {"t": "done"})


def work_dir(cell, work):
    """The job's work dir, in a fresh tmpfs (the scratch mount it lies in, or
    its own); cd there."""
    if cell["applied"].get("mount_ns") == "on":
        if any(work.startswith(d + "/") for d in cell["scratch"]):
            os.makedirs(work, mode=0o777)
        elif os.path.isdir(work):
            mount_tmpfs(work, cell["tmpfs_opts"])
            cell["scratch"].append(work)
        else:
            os.makedirs(work, mode=0o777)
    os.chmod(work, 0o1777)
    os.chdir(work)


def run_tests(job, secret):
    req = job.req
    try:
        code = compile(req["source"], "<solution>", "exec")
    except (SyntaxError, ValueError) as e:
        write_frame(job.res_w, {"t": "compile_error", "msg": "%s: %s" % (type(e).__name__, e)})
        return
    job.code = code
    kind = req["kind"]
    if kind == "stdio":
        for i, data in enumerate(req["inputs"]):
            run_stdio_case(job, i, data)
    elif kind == "call":
        run_call(job)
    elif kind == "function":
        run_function(job, secret)
    else:
        raise SetupError("request", 0, "unknown kind %r" % kind)


def confine(cell, lim, uid, cpu_s, vm):
    """In a child about to run a job's code: the last isolation steps, in order.
    `vm` is the address space the child started with (I's, measured before the
    fork: the child touches as little as it can before it runs the job)."""
    applied = cell["applied"]
    if applied.get("rlimits") == "on":
        cpu = max(1, int(-(-cpu_s // 1)))
        # CPU: SIGXCPU at the soft limit, SIGKILL one second later (hard).
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        # Address space: a backstop for the memory cgroup.
        space = lim["memory"] + vm + lim["address_slack"]
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
        # File size: no file (or tmpfs page) bomb larger than this.
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size"], lim["file_size"]))
        # Open files: bounds fd exhaustion to this process.
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim["open_files"], lim["open_files"]))
        # Core dumps: none, they would write outside our accounting.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # Stack: explicit, so deep recursion ends in a signal, not host settings.
        resource.setrlimit(resource.RLIMIT_STACK, (lim["stack"], lim["stack"]))
    if applied.get("uid_drop") == "on" and applied.get("user_ns") == "on":
        # Another ns uid than the supervisor: drops every capability and stops
        # signals, ptrace and /proc access to I and K.
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if applied.get("no_new_privs") == "on":
        # No setuid/file-capability gains through exec.
        check_rc("no_new_privs", libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    for _, fprog in cell["fprogs"]:
        # Seccomp last: the deny list of the Rust side (built before fork).
        check_rc("seccomp", libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0))


def seccomp_programs(filters):
    """(buffer, struct sock_fprog) per filter, built once in I: children only
    pass them to prctl."""
    import ctypes

    out = []
    for prog in filters:
        buf = ctypes.create_string_buffer(prog, len(prog))
        fprog = (len(prog) // 8).to_bytes(2, "little") + bytes(6) + ctypes.addressof(buf).to_bytes(8, "little")
        out.append((buf, fprog))
    return out


def vsz():
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def fork_child(job, uid, cpu_s, fd_plan, task):
    """Fork a confined child: fd_plan maps target fd -> source fd. The child
    runs `task`, a function of this module and its arguments. It starts in
    the slot's cgroups (a fork of I), so the process cap holds from its
    first instruction."""
    vm = vsz()
    pid = os.fork()
    if pid == 0:
        child_run(job.cell, fd_plan, uid, cpu_s, job.lim, task, vm)
    return pid


def child_run(cell, fd_plan, uid, cpu_s, lim, task, vm):
    """The child's side: place fds, confine, run. Never returns."""
    code = 71
    try:
        os.setpgid(0, 0)
        # Move sources out of the way (above any target) first, then place them.
        tmp = {t: fcntl.fcntl(s, fcntl.F_DUPFD, 100) for t, s in fd_plan.items()}
        for t, s in tmp.items():
            os.dup2(s, t)
        top = max(fd_plan) + 1
        os.closerange(top, 1 << 16)
        confine(cell, lim, uid, cpu_s, vm)
        name, args = task
        code = globals()[name](*args)
    except BaseException as e:
        try:
            os.write(2, ("gradus-sandbox: child setup failed: %r\n" % (e,)).encode())
        except OSError:
            pass
    os._exit(code)


def report_compile_error(e):
    """In a fresh interpreter: the program does not compile. Its supervisor
    (native, in cold mode) compiles nothing itself; the error goes to it as
    one frame on COMPILE_FD."""
    msg = ("%s: %s" % (type(e).__name__, e)).encode()
    try:
        write_all(COMPILE_FD, len(msg).to_bytes(4, "little") + msg)
    except OSError:
        pass
    os._exit(1)


def child_main(role, args):
    """Entry of a fresh interpreter (cold mode), already confined."""
    code = 71
    try:
        # The source text, not a code object: `exec` compiles it without the
        # `compile` builtin's cost (≈ 1 ms setting up the ast module's types);
        # run_user_code tells a compile error from the program's own.
        if role == "call":
            source, name, inputs = args
            code = call_body(source, name, inputs)
        elif role == "candidate":
            code = candidate_body(args)
        elif role == "checker":
            code = checker_body()
    except BaseException as e:
        try:
            os.write(2, ("gradus-sandbox: child failed: %r\n" % (e,)).encode())
        except OSError:
            pass
    os._exit(code)


def stdio_body(code):
    """C for a stdio test: the program, like `python3 solution.py`."""
    return run_user_code(code)[0]


def run_user_code(code):
    """Run the candidate like `python3 solution.py` would; return the exit code."""
    import builtins

    sys.argv[:] = ["solution.py"]
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    g = {"__name__": "__main__", "__builtins__": builtins}
    status = 0
    try:
        exec(code, g)
    except SystemExit as e:
        status = exit_status(e)
    except BaseException as e:
        if isinstance(code, str) and isinstance(e, (SyntaxError, ValueError)) and e.__traceback__.tb_next is None:
            # Raised compiling the source, before any of the program ran (an
            # error the program raises has the program's frames below ours).
            report_compile_error(e)
        sys.excepthook(*sys.exc_info())
        status = 1
    return finish(status), g


def exit_status(e):
    c = e.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c & 0xFF
    try:
        print(c, file=sys.stderr)
    except Exception:
        pass
    return 1


def finish(status):
    if "threading" in sys.modules:
        try:
            sys.modules["threading"]._shutdown()
        except BaseException:
            pass
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except BaseException:
            status = status or 120
    return status


class Watch:
    """I's view of one run: pipes to drain, limits to enforce, children to reap."""

    def __init__(self, job, deadline_s):
        self.job = job
        self.poller = select.poll()
        self.sinks = {}
        self.out = bytearray()
        self.err = bytearray()
        self.total = 0
        self.deadline_s = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.status = {}
        self.killed = None

    def add(self, fd, kind, tag=None):
        os.set_blocking(fd, False)
        self.sinks[fd] = [kind, tag, bytearray()]
        self.poller.register(fd, select.POLLIN | select.POLLHUP)

    def kill_all(self, pids):
        if self.job.pid1:
            # PID 1 of the job's namespace: kill(-1) reaches every job process.
            try:
                os.kill(-1, SIGKILL)
            except OSError:
                pass
        else:
            for p in pids:
                try:
                    os.killpg(p, SIGKILL)
                except OSError:
                    pass

    def reap(self):
        while True:
            try:
                pid, st, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.status[pid] = (st, ru.ru_utime + ru.ru_stime)

    def pump(self, timeout_ms):
        for fd, ev in self.poller.poll(timeout_ms):
            sink = self.sinks.get(fd)
            if sink is None:
                continue
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                self.poller.unregister(fd)
                os.close(fd)
                del self.sinks[fd]
                continue
            kind = sink[0]
            if kind == "frames":
                sink[2] += data
                self.total += len(data)
                self.forward(sink)
            elif kind == "stdout":
                self.total += len(data)
                self.out += data
            else:
                self.total += len(data)
                self.err += data
                if len(self.err) > 8192:
                    del self.err[: len(self.err) - 4096]
            if self.total > self.job.lim["output"] and self.killed is None:
                self.killed = "output"

    def forward(self, sink):
        buf = sink[2]
        while len(buf) >= 4:
            n = int.from_bytes(buf[:4], "little")
            if n > self.job.lim["output"]:
                self.killed = self.killed or "output"
                del buf[:]
                return
            if len(buf) < 4 + n:
                return
            write_frame(self.job.res_w, {"t": sink[1], "data": bytes(buf[4 : 4 + n])})
            del buf[: 4 + n]
            if sink[1] == "call":
                self.deadline = time.monotonic() + self.deadline_s

    def run(self, primary, others):
        """Wait for `primary`; then kill the rest and drain every pipe to EOF."""
        pids = [primary] + others
        pidfd = os.pidfd_open(primary)
        self.poller.register(pidfd, select.POLLIN)
        while primary not in self.status:
            left = self.deadline - time.monotonic()
            if left <= 0 and self.killed is None:
                self.killed = "timeout"
            if self.killed:
                self.kill_all(pids)
                break
            self.pump(int(min(left, 0.05) * 1000) + 1)
            self.reap()
        self.poller.unregister(pidfd)
        os.close(pidfd)
        self.kill_all(pids)
        while self.sinks:
            self.pump(50)
            self.reap()
        while True:
            try:
                pid, st, ru = os.wait4(-1, 0)
            except ChildProcessError:
                break
            self.status[pid] = (st, ru.ru_utime + ru.ru_stime)

    def record(self, pid, i, role, started):
        st, cpu = self.status.get(pid, (None, 0.0))
        rec = {
            "t": "proc",
            "i": i,
            "role": role,
            "wall": time.monotonic() - started,
            "cpu": cpu,
            "killed": self.killed or "",
            "stderr": bytes(self.err[-4096:]).decode("utf-8", "replace"),
        }
        if st is None:
            rec["lost"] = True
        elif os.WIFSIGNALED(st):
            rec["signal"] = os.WTERMSIG(st)
        else:
            rec["code"] = os.WEXITSTATUS(st)
        return rec


def stdin_fd(data):
    fd = os.memfd_create("stdin")
    write_all(fd, data.encode() if isinstance(data, str) else data)
    os.lseek(fd, 0, 0)
    return fd


def devnull():
    return os.open("/dev/null", os.O_RDONLY)


def run_stdio_case(job, i, data):
    lim = job.lim
    in_fd = stdin_fd(data)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    code = job.code
    started = time.monotonic()
    pid = fork_child(job, CANDIDATE_UID, lim["cpu_s"], {0: in_fd, 1: out_w, 2: err_w}, ("stdio_body", (code,)))
    for fd in (in_fd, out_w, err_w):
        os.close(fd)
    w = Watch(job, lim["wall_s"])
    w.add(out_r, "stdout")
    w.add(err_r, "stderr")
    w.run(pid, [])
    rec = w.record(pid, i, "candidate", started)
    rec["stdout"] = bytes(w.out[: lim["output"]]).decode("utf-8", "replace")
    write_frame(job.res_w, rec)


def candidate_entry(g, name):
    fn = g.get(name)
    if fn is None and "Solution" in g:
        fn = getattr(g["Solution"](), name, None)
    return fn


def describe(e):
    return {"exc": type(e).__name__, "msg": str(e)[:2000]}


def run_call(job):
    """Call-based tests: every result leaves C as marshal bytes on fd 3."""
    lim = job.lim
    req = job.req
    proto_r, proto_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    code, name, inputs = job.code, req["fn_name"], req["inputs"]
    started = time.monotonic()
    null = devnull()
    plan = {0: null, 1: out_w, 2: err_w, 3: proto_w}
    pid = fork_child(job, CANDIDATE_UID, lim["cpu_s"] * max(1, len(inputs)), plan, ("call_body", (code, name, inputs)))
    for fd in plan.values():
        os.close(fd)
    w = Watch(job, lim["wall_s"])
    w.add(out_r, "stdout")
    w.add(err_r, "stderr")
    w.add(proto_r, "frames", "call")
    w.run(pid, [])
    write_frame(job.res_w, w.record(pid, -1, "candidate", started))


def call_body(code, name, inputs):
    """C for call-based tests: run the program, then call `name` per input."""
    status, g = run_user_code(code)
    fn = candidate_entry(g, name)
    for i, args in enumerate(inputs):
        if fn is None:
            rec = {"i": i, "exc": "NameError", "msg": "no function %r" % name}
        else:
            try:
                rec = {"i": i, "v": fn(*args)}
            except BaseException as e:
                rec = dict(describe(e), i=i)
        try:
            data = marshal.dumps(rec)
        except ValueError:
            data = marshal.dumps({"i": i, "exc": "TypeError", "msg": "unsupported return type %s" % type(rec.get("v")).__name__})
        write_frame(3, data)
    return finish(status)


def serve_calls(g):
    """C's side of HumanEval checks: answer K's calls on fd 3 until EOF.
    K only ever asks for the entry point; nothing else of the program's
    namespace is offered."""
    while True:
        frame = read_frame(3)
        if frame is None:
            return
        msg = marshal.loads(frame)
        try:
            rec = {"v": g[msg["name"]](*msg["args"], **msg["kw"])}
        except BaseException as e:
            rec = describe(e)
        try:
            data = marshal.dumps(rec)
        except ValueError:
            data = marshal.dumps({"exc": "TypeError", "msg": "unsupported return type %s" % type(rec.get("v")).__name__})
        write_frame(3, data)


class CandidateError(Exception):
    """The candidate raised, returned something unusable, or went away."""


class ProblemError(Exception):
    """The problem's own code is at fault, whatever the program does: its
    prelude or test failed to run, it defines no `check`, or the check used a
    name that neither the test, its prelude nor the builtins define (helpers
    never come from the program). A bad job, not a wrong answer."""


def checker(secret_fd):
    """K: run the test's check(candidate) on plain values; report on fd 5.

    K's namespace is built from the problem alone: the prelude (the helpers
    the test relies on, e.g. HumanEval's prompt), then the test. The program
    contributes one object, its entry point, as a proxy whose results are
    rebuilt as plain builtin values. Nothing else is ever looked up in the
    program: a program that redefines a helper the test trusts (an identity
    `encode_cyclic`) changes only its own copy, which K never sees."""
    chunks = []
    while True:
        b = os.read(secret_fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(secret_fd)
    test, entry, prelude = marshal.loads(b"".join(chunks))

    def call(name, args, kw):
        try:
            write_frame(3, marshal.dumps({"name": name, "args": tuple(args), "kw": kw}))
        except ValueError as e:
            raise HarnessArgError(str(e))
        except OSError:
            raise CandidateError("the program exited before the check finished")
        try:
            frame = read_frame(3)
        except OSError:
            frame = None
        if frame is None:
            raise CandidateError("the program exited before the check finished")
        try:
            rec = plain_loads(frame)
        except (ValueError, TypeError, RecursionError) as e:
            raise CandidateError("unusable reply: %s" % e)
        if type(rec) is not dict:
            raise CandidateError("malformed reply")
        if "exc" in rec:
            raise CandidateError("%s: %s" % (rec.get("exc"), rec.get("msg")))
        return rec.get("v")

    def candidate(*args, **kw):
        return call(entry, args, kw)

    candidate.__name__ = entry
    import builtins

    g = {"__name__": "__check__", "__builtins__": builtins}
    # A prompt used as the prelude may end in a bare signature (`def f(x):`)
    # or be prose: what does not compile is left out, and only matters if the
    # test then names something it would have defined (said below).
    prelude_code, prelude_note = compile_prelude(prelude)
    for what, code in (("prelude", prelude_code), ("test", test)):
        if code is None:
            continue
        try:
            exec(code if what == "prelude" else compile(code, "<test>", "exec"), g)
        except BaseException as e:
            raise ProblemError("the problem's %s failed to run: %s: %s" % (what, type(e).__name__, e))
    # The prelude's stub of the entry point (a prompt's signature and
    # docstring) is replaced by the program's: a helper of the problem that
    # calls the entry point by name calls the program.
    g[entry] = candidate
    check = g.get("check")
    if not callable(check):
        raise ProblemError("the test defines no check(candidate)")
    try:
        check(candidate)
    except NameError as e:
        if type(e) is not NameError:
            # An UnboundLocalError depends on what the program returned (an
            # empty loop left a variable unset): the program's failure.
            raise
        raise ProblemError(
            "the test uses a name it does not define (%s); a helper must come from the job's "
            "prelude, the checker takes nothing but the entry point from the program%s" % (e, prelude_note)
        )
    return {"ok": True}


def compile_prelude(prelude):
    """The prelude's code object and a note for error messages. A prelude that
    ends in a bare signature (a prompt the program completes) gets a `pass`
    body; one that still does not compile is left out, noted."""
    if not prelude.strip():
        return None, ""
    try:
        return compile(prelude, "<prelude>", "exec"), ""
    except SyntaxError as first:
        lines = prelude.rstrip().split("\n")
        last = lines[-1]
        if last.lstrip().startswith(("def ", "async def ", "class ")) and last.rstrip().endswith(":"):
            indent = last[: len(last) - len(last.lstrip())]
            try:
                return compile("\n".join(lines) + "\n" + indent + "    pass\n", "<prelude>", "exec"), ""
            except SyntaxError:
                pass
        return None, " (the prelude was left out: it does not compile: %s)" % first


class HarnessArgError(Exception):
    """A test passed an argument that cannot cross the process boundary."""


def plain_loads(data):
    """Decode a reply from C, which the program controls. CPython's marshal
    is not safe against crafted data, so K reads it with this strict decoder:
    only None, bools, ints, floats, complex, str, bytes, tuples, lists,
    dicts, sets and frozensets (marshal format 4, with back references);
    every other type code is refused. The values are plain builtins, so no
    `__eq__` or `__hash__` of the program's runs in K."""
    view = memoryview(data)
    refs = []
    pos = [0]

    def take(n):
        i = pos[0]
        if n < 0 or i + n > len(view):
            raise ValueError("truncated")
        pos[0] = i + n
        return view[i : i + n]

    def u32():
        return int.from_bytes(take(4), "little")

    def i32():
        return int.from_bytes(take(4), "little", signed=True)

    def count():
        n = i32()
        if n < 0 or n > len(view):
            raise ValueError("bad length")
        return n

    def one(depth):
        if depth > 200:
            raise ValueError("nested too deeply")
        code = take(1)[0]
        flag, t = code & 0x80, chr(code & 0x7F)
        if t == "r":
            i = u32()
            if i >= len(refs) or refs[i] is None:
                raise ValueError("bad reference")
            return refs[i]
        slot = None
        if flag:
            slot = len(refs)
            refs.append(None)
        if t == "N":
            v = None
        elif t == "T":
            v = True
        elif t == "F":
            v = False
        elif t == "i":
            v = i32()
        elif t == "l":
            n = i32()
            if abs(n) > 1 << 12:
                # 4,096 15-bit digits (about 18,000 decimal digits); the
                # digit-by-digit rebuild is quadratic past that.
                raise ValueError("integer too long")
            digits = take(2 * abs(n))
            v = 0
            for k in range(abs(n) - 1, -1, -1):
                d = digits[2 * k] | digits[2 * k + 1] << 8
                if d >= 1 << 15:
                    raise ValueError("bad digit")
                v = (v << 15) | d
            v = -v if n < 0 else v
        elif t == "g":
            v = float_from(take(8))
        elif t == "y":
            v = complex(float_from(take(8)), float_from(take(8)))
        elif t == "s":
            v = bytes(take(count()))
        elif t in "ut":
            v = bytes(take(count())).decode("utf-8", "surrogatepass")
        elif t in "aA":
            v = bytes(take(count())).decode("ascii")
        elif t in "zZ":
            v = bytes(take(take(1)[0])).decode("ascii")
        elif t in ")([<>":
            n = take(1)[0] if t == ")" else count()
            items = [one(depth + 1) for _ in range(n)]
            v = {"(": tuple, ")": tuple, "[": list, "<": set, ">": frozenset}[t](items)
        elif t == "{":
            v = {}
            if slot is not None:
                refs[slot] = v
            while True:
                if view[pos[0] : pos[0] + 1] == b"0":
                    pos[0] += 1
                    break
                k = one(depth + 1)
                v[k] = one(depth + 1)
        else:
            raise ValueError("type code %r is not a plain value" % t)
        if slot is not None:
            refs[slot] = v
        return v

    v = one(0)
    if pos[0] != len(view):
        raise ValueError("trailing bytes")
    return v


def float_from(b):
    # No import: K must not import anything after the program could have
    # written files (see `seal_imports`). Marshal floats are little-endian
    # IEEE doubles, as the hosts the sandbox runs on are.
    return memoryview(bytes(b)).cast("d")[0]


def seal_imports():
    """K imports only the interpreter's own modules: the program shares K's
    work dir (mode 1777) and a private /tmp, so a `struct.py` or `typing.py`
    it wrote there must never be found by an import the prelude or test makes
    (`-c` puts the current directory first on sys.path). K leaves the work
    dir, and sys.path keeps only the interpreter's own read-only dirs."""
    roots = tuple(
        {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    )
    sys.path[:] = [
        p
        for p in sys.path
        if p and os.path.isabs(p) and os.path.realpath(p).startswith(roots)
        and not os.path.realpath(p).startswith(("/tmp", "/var/tmp", "/dev/shm"))
    ]
    sys.path_importer_cache.clear()
    os.chdir("/")


def run_function(job, secret):
    """HumanEval shape: K runs check(candidate); C serves calls; I watches both."""
    lim = job.lim
    entry = job.req["fn_name"]
    c_sock, k_sock = _socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    kres_r, kres_w = os.pipe()
    kerr_r, kerr_w = os.pipe()
    code = job.code
    started = time.monotonic()
    null = devnull()
    plan = {0: null, 1: out_w, 2: err_w, 3: c_sock}
    cpid = fork_child(job, CANDIDATE_UID, lim["cpu_s"], plan, ("candidate_body", (code,)))
    for fd in plan.values():
        if fd != null:
            os.close(fd)
    # The test code arrives only now, in K: C was forked without it.
    if not secret:
        raise SetupError("request", 0, "a function job needs the test-code pipe")
    plan = {0: null, 1: kerr_w, 2: kerr_w, 3: k_sock, 4: secret[0], 5: kres_w}
    kpid = fork_child(job, CHECKER_UID, lim["cpu_s"], plan, ("checker_body", ()))
    for fd in set(plan.values()) | {null}:
        os.close(fd)
    secret.clear()
    w = Watch(job, lim["wall_s"])
    w.add(out_r, "stdout")
    w.add(err_r, "stderr")
    w.add(kres_r, "frames", "check")
    w.add(kerr_r, "stderr")
    w.run(kpid, [cpid])
    write_frame(job.res_w, w.record(cpid, -1, "candidate", started))
    write_frame(job.res_w, w.record(kpid, -1, "checker", started))


def candidate_body(code):
    """C for HumanEval tests: run the program, then answer K's calls on fd 3."""
    status, g = run_user_code(code)
    sys.stdout.flush()
    serve_calls(g)
    return finish(status)


def checker_body():
    """K: run check(candidate) and report on fd 5."""
    try:
        seal_imports()
        rec = checker(4)
    except AssertionError as e:
        rec = {"ok": False, "exc": "AssertionError", "msg": str(e)[:2000]}
    except CandidateError as e:
        rec = {"ok": False, "exc": "CandidateError", "msg": str(e)[:2000]}
    except HarnessArgError as e:
        rec = {"ok": False, "exc": "HarnessArgError", "msg": str(e)[:2000]}
    except ProblemError as e:
        rec = {"ok": False, "exc": "ProblemError", "msg": str(e)[:2000]}
    except BaseException as e:
        rec = {"ok": False, "exc": type(e).__name__, "msg": str(e)[:2000]}
    write_frame(5, rec)
    return 0


def _socketpair():
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return a.detach(), b.detach()


def main():
    supervisor_imports()
    serve()

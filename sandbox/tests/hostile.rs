//! Hostile programs: each runs in the sandbox with its exact verdict asserted,
//! and the host is checked clean afterwards (no process in the sandbox uid
//! range, no new listening socket, no file left in the temp dirs). Programs
//! that probe a protection print what they saw, so `accepted` means every
//! attempt was stopped and the expected denial was observed.

mod common;

use common::*;
use gradus_sandbox::job::{Job, JobLimits};
use gradus_sandbox::{Outcome, Verdict};

/// Run `job` in both modes, warm (the Python supervisor, a zygote fork per
/// test) and cold (the native supervisor, a fresh interpreter per test),
/// asserting the verdict and a clean host after each, and (with the
/// `service` feature) once more through `gradus sandbox serve`'s HTTP
/// endpoint over the warm pool, with the same verdict and host checks; the
/// outcomes, warm first. Shadows `common::expect` (warm only) in this file.
fn expect(job: Job, verdict: Verdict) -> [Outcome; 2] {
    expect_each(job, verdict, verdict)
}

/// [`expect`] where the two modes fail the program differently.
fn expect_each(job: Job, warm: Verdict, cold: Verdict) -> [Outcome; 2] {
    #[cfg(feature = "service")]
    expect_http(job.clone(), warm);
    [
        expect_in(sandbox(), job.clone(), warm),
        expect_in(cold_sandbox(), job, cold),
    ]
}

fn limits(mut job: Job, f: impl FnOnce(&mut JobLimits)) -> Job {
    f(&mut job.limits);
    job
}

fn quick(job: Job) -> Job {
    limits(job, |l| {
        l.cpu_s = Some(1.0);
        l.wall_s = Some(2.0);
    })
}

#[test]
fn infinite_loop_is_time_limit() {
    expect(
        quick(stdio("while True:\n    pass\n", &[("", "")])),
        Verdict::TimeLimit,
    );
}

#[test]
fn sleep_forever_is_time_limit() {
    expect(
        quick(stdio("import time\ntime.sleep(10**6)\n", &[("", "")])),
        Verdict::TimeLimit,
    );
}

#[test]
fn signal_ignoring_loop_is_time_limit() {
    let src = "import signal\nfor s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n";
    expect(quick(stdio(src, &[("", "")])), Verdict::TimeLimit);
}

#[test]
fn fork_bomb_is_capped_and_reaped() {
    let src =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    expect(quick(stdio(src, &[("", "")])), Verdict::TimeLimit);
}

#[test]
fn thread_bomb_hits_the_process_cap() {
    let src = "import threading, time\nn = 0\ntry:\n    while True:\n        threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    print('capped', n < 40)\n";
    expect(stdio(src, &[("", "capped True")]), Verdict::Accepted);
}

#[test]
fn memory_bomb_at_once_is_memory_limit() {
    let job = limits(stdio("x = bytearray(10**10)\n", &[("", "")]), |l| {
        l.memory_mb = Some(64)
    });
    expect(job, Verdict::MemoryLimit);
}

#[test]
fn memory_bomb_gradual_is_memory_limit() {
    let src = "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))\n";
    let job = limits(quick(stdio(src, &[("", "")])), |l| l.memory_mb = Some(64));
    expect(job, Verdict::MemoryLimit);
}

#[test]
fn stack_overflow_is_runtime_error_by_signal() {
    let src = "import sys\nsys.setrecursionlimit(10**8)\nclass A:\n    def __repr__(self):\n        return repr(A())\nrepr(A())\n";
    for out in expect(quick(stdio(src, &[("", "")])), Verdict::RuntimeError) {
        assert_eq!(out.cases[0].signal, Some(libc::SIGSEGV), "{out:?}");
    }
}

#[test]
fn stdout_flood_is_output_limit() {
    let job = limits(
        quick(stdio("while True:\n    print('x' * 1000)\n", &[("", "")])),
        |l| l.output_kb = Some(64),
    );
    expect(job, Verdict::OutputLimit);
}

#[test]
fn stderr_flood_is_output_limit() {
    let src = "import sys\nwhile True:\n    sys.stderr.write('y' * 1000)\n";
    let job = limits(quick(stdio(src, &[("", "")])), |l| l.output_kb = Some(64));
    expect(job, Verdict::OutputLimit);
}

#[test]
fn file_bomb_stops_at_the_file_size_limit() {
    let src = "n = 0\ntry:\n    with open('big', 'wb') as f:\n        while True:\n            f.write(b'x' * 65536)\n            n += 65536\nexcept OSError as e:\n    print('stopped', n <= 1 << 20, e.errno)\n";
    expect(stdio(src, &[("", "stopped True 27")]), Verdict::Accepted);
}

#[test]
fn inode_bomb_stops_at_the_tmpfs_inode_limit() {
    let src = "import errno\nn = 0\ntry:\n    while True:\n        open('f%d' % n, 'w').close()\n        n += 1\nexcept OSError as e:\n    print(e.errno == errno.ENOSPC, n < 5000)\n";
    expect(stdio(src, &[("", "True True")]), Verdict::Accepted);
}

#[test]
fn writes_outside_the_work_dir_are_refused_or_private() {
    let src = r#"
import os
res = []
for p in ["/etc/pwned", "/usr/pwned", "/root/pwned", "/pwned", "/home/pwned"]:
    try:
        open(p, "w").write("x")
        res.append("wrote " + p)
    except OSError:
        res.append("no")
for p in ["/tmp/pwned", "/var/tmp/pwned", "/dev/shm/pwned"]:
    open(p, "w").write("x")
print(" ".join(res), os.getcwd() == os.path.realpath("."))
"#;
    expect(
        stdio(src, &[("", "no no no no no True")]),
        Verdict::Accepted,
    );
    for p in [
        "/etc/pwned",
        "/usr/pwned",
        "/root/pwned",
        "/pwned",
        "/tmp/pwned",
        "/var/tmp/pwned",
        "/dev/shm/pwned",
    ] {
        assert!(!std::path::Path::new(p).exists(), "{p} exists on the host");
    }
}

#[test]
fn etc_shadow_and_other_processes_are_out_of_reach() {
    let src = r#"
import os
try:
    open("/etc/shadow").read()
    shadow = "read"
except OSError:
    shadow = "denied"
pids = [p for p in os.listdir("/proc") if p.isdigit()]
try:
    open("/proc/1/environ").read()
    init = "read"
except OSError:
    init = "denied"
readable = []
for p in pids:
    if int(p) != os.getpid():
        try:
            open("/proc/%s/environ" % p).read()
            readable.append(p)
        except OSError:
            pass
print(shadow, len(pids) <= 2, init, readable)
"#;
    // Visible: the cell's supervisor (PID 1) and the program itself; no host
    // process, and no environment but its own.
    expect(
        stdio(src, &[("", "denied True denied []")]),
        Verdict::Accepted,
    );
}

#[test]
fn tcp_and_udp_to_loopback_are_blocked() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    udp.set_nonblocking(true).unwrap();
    let src = format!(
        r#"
import socket
res = []
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=1)
    res.append("tcp connected")
except OSError as e:
    res.append("tcp %d" % e.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"hi", ("127.0.0.1", {uport}))
    res.append("udp sent")
except OSError as e:
    res.append("udp %d" % e.errno)
try:
    socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    res.append("inet6 open")
except OSError as e:
    res.append("inet6 %d" % e.errno)
a, b = socket.socketpair()
a.sendall(b"u")
res.append("unix " + b.recv(1).decode())
print(" ".join(res))
"#
    );
    expect(
        stdio(&src, &[("", "tcp 1 udp 1 inet6 1 unix u")]),
        Verdict::Accepted,
    );
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's TCP listener"
    );
    let mut buf = [0u8; 8];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "the sandbox reached the host's UDP socket"
    );
}

#[test]
fn dns_fails() {
    let src = "import socket\ntry:\n    socket.getaddrinfo('example.com', 80)\n    print('resolved')\nexcept OSError:\n    print('no dns')\n";
    expect(stdio(src, &[("", "no dns")]), Verdict::Accepted);
}

#[test]
fn double_forked_daemon_is_killed_with_the_job() {
    let src = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\nos.wait()\nprint('parent done')\n";
    let job = limits(stdio(src, &[("", "parent done")]), |l| {
        l.wall_s = Some(30.0)
    });
    for out in expect(job, Verdict::Accepted) {
        assert!(
            out.wall_ms < 30_000.0,
            "the job waited for its daemon: {out:?}"
        );
    }
}

#[test]
fn daemon_holding_the_output_pipe_does_not_hold_the_job() {
    let src = "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(5)\n        while True:\n            print('late', flush=True)\n            time.sleep(0.01)\n    os._exit(0)\nos.wait()\nprint('parent done')\n";
    let job = limits(stdio(src, &[("", "parent done")]), |l| {
        l.wall_s = Some(30.0)
    });
    for out in expect(job, Verdict::Accepted) {
        assert!(
            out.wall_ms < 30_000.0,
            "the job waited for the pipe holder: {out:?}"
        );
    }
}

#[test]
fn kill_minus_one_reaches_nothing_outside() {
    let mut canary = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // kill(-1) skips the caller; ESRCH (nothing else it may signal) is fine too.
    let src = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\nprint('alive')\n";
    expect(stdio(src, &[("", "alive")]), Verdict::Accepted);
    assert!(
        canary.try_wait().unwrap().is_none(),
        "kill(-1) in the sandbox killed a host process"
    );
    let _ = canary.kill();
    let _ = canary.wait();
}

#[test]
fn ptrace_is_denied() {
    let src = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.ptrace(16, 1, None, None)\nprint(r, ctypes.get_errno())\nr = libc.ptrace(0, 0, None, None)\nprint(r, ctypes.get_errno())\n";
    expect(stdio(src, &[("", "-1 1\n-1 1")]), Verdict::Accepted);
}

#[test]
fn dangerous_syscalls_via_ctypes_are_denied() {
    let src = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return "%s=%d" % (name, ctypes.get_errno() if r == -1 else 0)
nr = {"x86_64": dict(bpf=321, io_uring_setup=425, userfaultfd=323, perf_event_open=298, keyctl=250, clone3=435, kexec_load=246, init_module=175, setns=308),
      "aarch64": dict(bpf=280, io_uring_setup=425, userfaultfd=282, perf_event_open=241, keyctl=219, clone3=435, kexec_load=104, init_module=105, setns=268)}[os.uname().machine]
out = [call("unshare", 0x10000000), call("unshare", 0x40000000), call("mount", b"none", b"/tmp", b"tmpfs", 0, None), call("umount2", b"/tmp", 0)]
for name in ["bpf", "io_uring_setup", "userfaultfd", "perf_event_open", "keyctl", "clone3", "kexec_load", "init_module", "setns"]:
    r = libc.syscall(nr[name], 0, 0, 0, 0, 0)
    out.append("%s=%d" % (name, ctypes.get_errno() if r == -1 else 0))
if os.uname().machine == "x86_64":
    # The x32 ABI's getpid (bit 30 set): a number no per-call rule matches.
    r = libc.syscall(0x40000000 | 39)
    out.append("x32=%d" % (ctypes.get_errno() if r == -1 else 0))
print(" ".join(out))
"#;
    let mut want = "unshare=1 unshare=1 mount=1 umount2=1 bpf=1 io_uring_setup=1 userfaultfd=1 perf_event_open=1 keyctl=1 clone3=38 kexec_load=1 init_module=1 setns=1".to_string();
    if cfg!(target_arch = "x86_64") {
        want.push_str(" x32=1");
    }
    expect(stdio(src, &[("", &want)]), Verdict::Accepted);
}

#[test]
fn setuid_files_grant_nothing() {
    let src = r#"
import os, shutil, subprocess
shutil.copy("/usr/bin/id", "./id")
os.chmod("./id", 0o4755)
uid = subprocess.run(["./id", "-u"], capture_output=True, text=True).stdout.strip()
try:
    os.setuid(0)
    me = "root"
except PermissionError:
    me = "denied"
print(uid, me)
"#;
    expect(stdio(src, &[("", "1000 denied")]), Verdict::Accepted);
}

#[test]
fn fd_exhaustion_is_bounded() {
    let src = "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\nexcept OSError as e:\n    print(e.errno, len(fs) < 64)\n";
    expect(stdio(src, &[("", "24 True")]), Verdict::Accepted);
}

#[test]
fn dev_shm_is_private_and_bounded() {
    let src = "import os\nempty = os.listdir('/dev/shm') == []\ntry:\n    with open('/dev/shm/pwned', 'wb') as f:\n        f.write(b'x' * (2 << 20))\n    err = 0\nexcept OSError as e:\n    err = e.errno\nprint(empty, err)\n";
    expect(stdio(src, &[("", "True 27")]), Verdict::Accepted);
}

// ---- reward hacks (issue point 5) ----

const CHECK: &str =
    "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(10) == 20\n";

#[test]
fn a_plain_failing_assert_still_fails() {
    expect(
        function(
            "def f(x):\n    return x * 2\n",
            "f",
            "def check(candidate):\n    assert False\n",
        ),
        Verdict::WrongAnswer,
    );
    expect(stdio("assert 1 == 2\n", &[("", "")]), Verdict::RuntimeError);
}

#[test]
fn exiting_zero_early_is_not_a_pass() {
    expect(
        stdio("import sys\nsys.exit(0)\nprint(42)\n", &[("", "42")]),
        Verdict::WrongAnswer,
    );
    expect(
        function("import os\nos._exit(0)\n", "f", CHECK),
        Verdict::RuntimeError,
    );
    expect(
        function("import sys\nsys.exit(0)\n", "f", CHECK),
        Verdict::RuntimeError,
    );
    let call_job = call(
        "import os\nos._exit(0)\ndef f(x):\n    return x\n",
        "f",
        serde_json::json!([[1]]),
        serde_json::json!([1]),
    );
    expect(call_job, Verdict::RuntimeError);
}

#[test]
fn printing_a_banner_is_not_a_pass() {
    let src = "print('All tests passed!')\nprint('{\"ok\": true, \"t\": \"check\"}')\ndef f(x):\n    return 0\n";
    expect(function(src, "f", CHECK), Verdict::WrongAnswer);
}

#[test]
fn monkeypatching_builtins_and_the_harness_is_not_a_pass() {
    let src = r#"
import builtins, sys
builtins.AssertionError = type("Nope", (Exception,), {})
builtins.isinstance = lambda *a: True
for m in list(sys.modules.values()):
    for name in ("write_frame", "checker", "plain", "describe"):
        if hasattr(m, name):
            try:
                setattr(m, name, lambda *a, **k: {"ok": True})
            except Exception:
                pass
def f(x):
    return 0
"#;
    // Patching its own copy of the harness only breaks the program's side:
    // the checker, in another process, waits for answers that never come.
    // A fresh interpreter (cold) holds the harness outside sys.modules, so
    // nothing is patched there and the check itself fails.
    let job = limits(function(src, "f", CHECK), |l| l.wall_s = Some(1.0));
    expect_each(job, Verdict::TimeLimit, Verdict::WrongAnswer);
}

#[test]
fn walking_frames_and_memory_finds_no_expected_values() {
    let test = "def check(candidate):\n    secret = 'SECRET-' + 'MARKER-77'\n    assert candidate(0) == secret\n";
    let src = r#"
import gc, sys, types
def f(x):
    found = "none"
    frame = sys._getframe()
    while frame is not None:
        for v in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(v, str) and "MARKER-77" in v:
                found = v
        frame = frame.f_back
    for o in gc.get_objects():
        if isinstance(o, str) and "MARKER-77" in o:
            found = o
        if type(o) is types.CodeType:
            for c in o.co_consts:
                if isinstance(c, str) and "MARKER" in c:
                    found = "SECRET-" + c
    return found
"#;
    expect(function(src, "f", test), Verdict::WrongAnswer);
}

#[test]
fn system_exit_inside_the_function_is_not_a_pass() {
    expect(
        function("def f(x):\n    raise SystemExit(0)\n", "f", CHECK),
        Verdict::RuntimeError,
    );
    let job = call(
        "def f(x):\n    raise SystemExit(0)\n",
        "f",
        serde_json::json!([[1]]),
        serde_json::json!([1]),
    );
    expect(job, Verdict::RuntimeError);
}

#[test]
fn overriding_eq_is_not_a_pass() {
    let src = "class E:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\ndef f(x):\n    return E()\n";
    expect(function(src, "f", CHECK), Verdict::RuntimeError);
    let sub = "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\ndef f(x):\n    return I(0)\n";
    expect(function(sub, "f", CHECK), Verdict::RuntimeError);
    let job = call(sub, "f", serde_json::json!([[1]]), serde_json::json!([1]));
    expect(job, Verdict::RuntimeError);
}

#[test]
fn expected_outputs_are_not_in_the_sandbox() {
    let src = r#"
import os, gc
# The token is built at run time: the program's own source (which cold mode
# writes to solution.py in the work dir) must not hold it.
tok = "-".join(["tok", "8c1f"])
found = "nothing"
for path in ["/proc/1/cmdline", "/proc/1/environ", "/proc/self/environ", "/proc/self/cmdline"]:
    try:
        if tok.encode() in open(path, "rb").read():
            found = tok
    except OSError:
        pass
for root, dirs, files in os.walk("/tmp"):
    for name in files:
        try:
            if tok.encode() in open(os.path.join(root, name), "rb").read():
                found = tok
        except OSError:
            pass
for o in gc.get_objects():
    if isinstance(o, (str, bytes)) and o is not tok and tok == o:
        found = o
print(found)
"#;
    for out in expect(stdio(src, &[("", "tok-8c1f")]), Verdict::WrongAnswer) {
        assert_eq!(out.cases[0].got.as_deref(), Some("nothing\n"));
    }
}

// ---- reward hacks on what the checker trusts (issue 19) ----

/// A problem whose test trusts a helper of the problem's own (as HumanEval/38
/// trusts `encode_cyclic`): `check` passes only if `f` inverts `enc`.
const PRELUDE: &str = "def enc(s):\n    return s[1:] + s[:1]\n";
const INVERSE_CHECK: &str = "def check(candidate):\n    for s in ['abc', 'hello', 'xy']:\n        assert candidate(enc(s)) == s\n";
const INVERSE: &str =
    "def enc(s):\n    return s[1:] + s[:1]\ndef f(s):\n    return s[-1:] + s[:-1]\n";

#[test]
fn redefining_a_prelude_helper_is_not_a_pass() {
    let job = |src: &str| function_with_prelude(src, "f", INVERSE_CHECK, PRELUDE);
    expect(job(INVERSE), Verdict::Accepted);
    // The program never needs the helper: the checker has its own.
    expect(
        job("def f(s):\n    return s[-1:] + s[:-1]\n"),
        Verdict::Accepted,
    );
    for hack in [
        "def enc(s):\n    return s\ndef f(s):\n    return s\n",
        "enc = lambda s: s\nf = lambda s: s\n",
        "import builtins\nbuiltins.enc = lambda s: s\ndef f(s):\n    return s\n",
    ] {
        expect(job(hack), Verdict::WrongAnswer);
    }
}

#[test]
fn a_helper_no_prelude_defines_is_never_taken_from_the_program() {
    // The test names `enc`, the job has no prelude: the problem is
    // incomplete, and the program's `enc` is not used to fill the gap.
    let outs = expect(function(INVERSE, "f", INVERSE_CHECK), Verdict::InvalidJob);
    for o in outs {
        let d = o.detail.unwrap_or_default();
        assert!(d.contains("enc") && d.contains("prelude"), "{d}");
    }
}

#[test]
fn a_broken_prelude_or_test_is_an_invalid_job_not_a_verdict_on_the_program() {
    // A prelude that does not compile is left out; the test then misses its
    // helper, and the error says both.
    let job = function_with_prelude(INVERSE, "f", INVERSE_CHECK, "def enc(s)\n    return s\n");
    for o in expect(job, Verdict::InvalidJob) {
        let d = o.detail.unwrap_or_default();
        assert!(d.contains("enc") && d.contains("does not compile"), "{d}");
    }
    // One that compiles and raises is the problem's fault as it stands.
    let job = function_with_prelude(INVERSE, "f", INVERSE_CHECK, "raise KeyError('k')\n");
    for o in expect(job, Verdict::InvalidJob) {
        let d = o.detail.unwrap_or_default();
        assert!(
            d.contains("prelude failed") && d.contains("KeyError"),
            "{d}"
        );
    }
    let job = function_with_prelude(INVERSE, "f", "raise ValueError('x')\n", PRELUDE);
    for o in expect(job, Verdict::InvalidJob) {
        assert!(o.detail.unwrap_or_default().contains("test"));
    }
    let job = function_with_prelude(INVERSE, "f", "def chek(candidate):\n    pass\n", PRELUDE);
    for o in expect(job, Verdict::InvalidJob) {
        assert!(o.detail.unwrap_or_default().contains("check"));
    }
}

#[test]
fn a_prompt_ending_in_a_bare_signature_or_prose_still_serves_as_prelude() {
    // HumanEval-shaped rows of other datasets: the prompt is a signature the
    // program completes, or prose; the helpers it defines still reach the
    // checker, and what cannot compile is left out.
    let prelude = "def enc(s):\n    return s[1:] + s[:1]\n\n\ndef f(s):\n";
    let job = function_with_prelude(INVERSE, "f", INVERSE_CHECK, prelude);
    expect(job, Verdict::Accepted);
    let hack = "def enc(s):\n    return s\ndef f(s):\n    return s\n";
    expect(
        function_with_prelude(hack, "f", INVERSE_CHECK, prelude),
        Verdict::WrongAnswer,
    );
    let prose = "Write a function f that doubles its argument.";
    expect(
        function_with_prelude("def f(x):\n    return 2 * x\n", "f", CHECK, prose),
        Verdict::Accepted,
    );
}

#[test]
fn an_unbound_local_the_programs_answer_causes_is_a_wrong_answer_not_a_bad_job() {
    let test =
        "def check(candidate):\n    for i in candidate(3):\n        pass\n    assert i == 2\n";
    let job = function("def f(n):\n    return []\n", "f", test);
    for o in expect(job, Verdict::WrongAnswer) {
        assert!(o.detail.unwrap_or_default().contains("UnboundLocalError"));
    }
    expect(
        function("def f(n):\n    return list(range(n))\n", "f", test),
        Verdict::Accepted,
    );
}

#[test]
fn defining_check_or_candidate_is_not_a_pass() {
    let src =
        "def check(candidate):\n    pass\ncandidate = lambda *a: 4\ndef f(x):\n    return 0\n";
    expect(function(src, "f", CHECK), Verdict::WrongAnswer);
}

#[test]
fn patching_modules_the_test_imports_is_not_a_pass() {
    // The test imports math and compares through it; the program replaces
    // math in its own sys.modules (and asks for asserts to be stripped).
    let test = "def check(candidate):\n    import math\n    assert math.isclose(candidate(2.0), 1.4142135623730951)\n    assert math.fabs(candidate(9.0) - 3.0) < 1e-9\n";
    let src = r#"
import os, sys, types
fake = types.ModuleType("math")
fake.isclose = lambda *a, **k: True
fake.fabs = lambda v: 0.0
sys.modules["math"] = fake
os.environ["PYTHONOPTIMIZE"] = "1"
def f(x):
    return 0.0
"#;
    expect(function(src, "f", test), Verdict::WrongAnswer);
}

#[test]
fn forged_protocol_frames_are_refused_by_the_checkers_decoder() {
    // Before the checker asks anything, the program answers on the protocol
    // socket with a frame CPython's marshal would turn into a code object
    // (the checker reads it with a strict decoder that takes plain values
    // only), then with an unhashable dict key and a truncated frame.
    for payload in [
        "marshal.dumps({'v': (lambda: 4).__code__})",
        "b'{' + marshal.dumps('v')[:-1]",
        "b'\\xff\\xff'",
    ] {
        let src = format!(
            "import marshal, os\ndata = {payload}\nos.write(3, len(data).to_bytes(4, 'little') + data)\ndef f(x):\n    return x * 2\n"
        );
        let [warm, cold] = expect(function(&src, "f", CHECK), Verdict::RuntimeError);
        for o in [warm, cold] {
            let d = o.detail.unwrap_or_default();
            assert!(
                d.contains("unusable reply") || d.contains("malformed"),
                "{payload}: {d}"
            );
        }
    }
}

#[test]
fn writing_a_forged_result_into_the_checkers_pipes_is_denied() {
    // The checker's result pipe and the supervisor's fds belong to other
    // uids: /proc/PID/fd is closed to the program. It reports how many it
    // could open; none may be.
    let src = r#"
import marshal, os
forged = marshal.dumps({"ok": True})
frame = len(forged).to_bytes(4, "little") + forged
opened = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        try:
            w = os.open("/proc/%s/fd/%s" % (pid, fd), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        opened += 1
        try:
            os.write(w, frame)
        except OSError:
            pass
        os.close(w)
def f(x):
    return opened
"#;
    // No fd of another process opens: f reports 0, which this check wants.
    let none_opened = "def check(candidate):\n    assert candidate(2) == 0\n";
    expect(function(src, "f", none_opened), Verdict::Accepted);
    // And with a wrong answer, whatever the program wrote went nowhere.
    let wrong = src.replace("return opened", "return opened + 1");
    expect(function(&wrong, "f", none_opened), Verdict::WrongAnswer);
}

#[test]
fn modules_the_program_writes_are_never_imported_by_the_checker() {
    // The program shares the work dir (and a private /tmp) with the checker,
    // and `-c` puts the current directory first on sys.path: a `struct.py`
    // (which decoding a float reply once imported) or `typing.py`/`random.py`
    // (which the prelude and test import) written there would run in the
    // checker and forge its "ok" on fd 5. The checker leaves the work dir and
    // keeps only the interpreter's own dirs on sys.path.
    let src = r#"
import os
forge = "import os, marshal\nd = marshal.dumps({'ok': True})\nos.write(5, len(d).to_bytes(4, 'little') + d)\nos._exit(0)\n"
for name in ("struct", "typing", "random", "copy", "string", "math", "collections"):
    for d in (".", "/tmp", "/var/tmp", "/dev/shm"):
        try:
            with open(os.path.join(d, name + ".py"), "w") as f:
                f.write(forge)
        except OSError:
            pass
def f(x):
    return 1.5
"#;
    let test =
        "def check(candidate):\n    import random, copy, string\n    assert candidate(2) == 4.0\n";
    let job = function_with_prelude(src, "f", test, "from typing import List\nimport math\n");
    expect(job, Verdict::WrongAnswer);
}

//! Cold mode: every test runs in a freshly exec'd interpreter inside the
//! slot's cell, under the same confinement as warm mode. Ordinary verdicts,
//! a few hostile programs, and proof that the interpreter is fresh.

mod common;

use common::*;
use gradus_sandbox::Verdict;

fn run(job: gradus_sandbox::Job, verdict: Verdict) -> gradus_sandbox::Outcome {
    expect_in(cold_sandbox(), job, verdict)
}

#[test]
fn the_interpreter_is_fresh_not_a_fork_of_the_supervisor() {
    // The supervisor has ctypes loaded; a fresh `python -S` has not.
    let src = "import sys\nprint('_ctypes' in sys.modules, sys.argv)\n";
    run(
        stdio(src, &[("", "False ['solution.py']")]),
        Verdict::Accepted,
    );
    expect(
        stdio(src, &[("", "True ['solution.py']")]),
        Verdict::Accepted,
    );
}

#[test]
fn stdio_verdicts() {
    run(
        stdio("print(int(input()) * 2)", &[("2\n", "4\n"), ("5\n", "10")]),
        Verdict::Accepted,
    );
    let out = run(
        stdio("print(int(input()) * 2)", &[("2\n", "4\n"), ("5\n", "11")]),
        Verdict::WrongAnswer,
    );
    assert_eq!((out.passed, out.total), (1, 2));
    run(stdio("def f(:\n", &[("", "")]), Verdict::CompileError);
    let out = run(
        stdio("raise ValueError('boom')", &[("", "")]),
        Verdict::RuntimeError,
    );
    let stderr = out.cases[0].stderr.as_deref().unwrap_or("");
    assert!(stderr.contains("ValueError: boom"), "{out:?}");
    run(
        stdio("import sys\nsys.exit(0)\nprint(42)\n", &[("", "42")]),
        Verdict::WrongAnswer,
    );
}

#[test]
fn function_and_call_verdicts() {
    let test =
        "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 6\n";
    run(
        function("def f(x):\n    return x * 2\n", "f", test),
        Verdict::Accepted,
    );
    run(
        function("def f(x):\n    return x + 2\n", "f", test),
        Verdict::WrongAnswer,
    );
    run(
        function("import os\nos._exit(0)\n", "f", test),
        Verdict::RuntimeError,
    );
    let src = "class Solution:\n    def add(self, a, b):\n        return a + b\n";
    let inputs = serde_json::json!([[1, 2], [3, 4]]);
    run(
        call(src, "add", inputs.clone(), serde_json::json!([3, 7])),
        Verdict::Accepted,
    );
    let out = run(
        call(src, "add", inputs, serde_json::json!([3, 8])),
        Verdict::WrongAnswer,
    );
    assert_eq!((out.passed, out.total), (1, 2));
    let sub = "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\ndef f(x):\n    return I(0)\n";
    run(
        call(sub, "f", serde_json::json!([[1]]), serde_json::json!([1])),
        Verdict::RuntimeError,
    );
}

#[test]
fn confinement_holds_in_a_fresh_interpreter() {
    let src = r#"
import ctypes, os, shutil, subprocess
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, 1, None, None)
pt = ctypes.get_errno()
shutil.copy("/usr/bin/id", "./id")
os.chmod("./id", 0o4755)
uid = subprocess.run(["./id", "-u"], capture_output=True, text=True).stdout.strip()
try:
    open("/etc/shadow").read()
    shadow = "read"
except OSError:
    shadow = "denied"
print(r, pt, uid, shadow)
"#;
    run(stdio(src, &[("", "-1 1 1000 denied")]), Verdict::Accepted);
    let bomb =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let mut job = stdio(bomb, &[("", "")]);
    job.limits.cpu_s = Some(1.0);
    job.limits.wall_s = Some(2.0);
    run(job, Verdict::TimeLimit);
    let mut job = stdio("x = bytearray(10**10)\n", &[("", "")]);
    job.limits.memory_mb = Some(64);
    run(job, Verdict::MemoryLimit);
}

#[test]
fn compile_errors_are_told_from_the_programs_own() {
    // Cold: the fresh interpreter compiles and reports on its own fd; warm:
    // the supervisor compiles. The verdicts must agree, in every test shape.
    let test = "def check(candidate):\n    assert candidate(2) == 4\n";
    let shapes = |src: &str| {
        [
            stdio(src, &[("", "")]),
            function(src, "f", test),
            call(src, "f", serde_json::json!([[1]]), serde_json::json!([1])),
        ]
    };
    for job in shapes("def f(:\n") {
        run(job.clone(), Verdict::CompileError);
        expect(job, Verdict::CompileError);
    }
    // A SyntaxError the program raises while it runs is the program's error.
    for job in shapes("eval('(')\n") {
        run(job.clone(), Verdict::RuntimeError);
        expect(job, Verdict::RuntimeError);
    }
}

//! Ordinary programs get ordinary verdicts.

mod common;

use common::*;
use gradus_sandbox::Verdict;

#[test]
fn stdio_accepts_and_rejects() {
    expect(
        stdio("print(int(input()) * 2)", &[("2\n", "4\n"), ("5\n", "10")]),
        Verdict::Accepted,
    );
    let out = expect(
        stdio("print(int(input()) * 2)", &[("2\n", "4\n"), ("5\n", "11")]),
        Verdict::WrongAnswer,
    );
    assert_eq!((out.passed, out.total), (1, 2));
    assert_eq!(out.cases[1].expected.as_deref(), Some("11"));
    assert_eq!(out.cases[1].got.as_deref(), Some("10\n"));
}

#[test]
fn compile_and_runtime_errors() {
    expect(stdio("def f(:\n", &[("", "")]), Verdict::CompileError);
    let out = expect(
        stdio("raise ValueError('boom')", &[("", "")]),
        Verdict::RuntimeError,
    );
    assert!(
        out.cases[0]
            .stderr
            .as_deref()
            .unwrap_or("")
            .contains("ValueError: boom"),
        "{out:?}"
    );
}

#[test]
fn function_shape() {
    let test =
        "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 6\n";
    expect(
        function("def f(x):\n    return x * 2\n", "f", test),
        Verdict::Accepted,
    );
    expect(
        function("def f(x):\n    return x + 2\n", "f", test),
        Verdict::WrongAnswer,
    );
    expect(
        function("def f(x):\n    raise KeyError(x)\n", "f", test),
        Verdict::RuntimeError,
    );
}

#[test]
fn call_shape() {
    let src = "class Solution:\n    def add(self, a, b):\n        return a + b\n";
    expect(
        call(
            src,
            "add",
            serde_json::json!([[1, 2], [3, 4]]),
            serde_json::json!([3, 7]),
        ),
        Verdict::Accepted,
    );
    let out = expect(
        call(
            src,
            "add",
            serde_json::json!([[1, 2], [3, 4]]),
            serde_json::json!([3, 8]),
        ),
        Verdict::WrongAnswer,
    );
    assert_eq!((out.passed, out.total), (1, 2));
}

#[test]
fn work_root_outside_the_scratch_dirs() {
    // A host temp dir per job, with a fresh tmpfs on it in the cell; the
    // host removes the dir (and with it the mount) while the cell goes on.
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gradus-work-root");
    std::fs::create_dir_all(&root).unwrap();
    let sandbox = build_with(|c| {
        c.workers = 1;
        c.work_root = Some(root.clone());
    });
    let src = format!(
        "import os\nopen('mine', 'w').write('x')\nprint(os.getcwd().startswith({:?}), os.listdir('.'))\n",
        root.to_string_lossy()
    );
    for _ in 0..3 {
        // Each job sees only its own file: the dir is fresh every time.
        expect_in(
            &sandbox,
            stdio(&src, &[("", "True ['mine']")]),
            Verdict::Accepted,
        );
    }
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert!(left.is_empty(), "work dirs left behind: {left:?}");
}

#[test]
fn a_cancelled_job_is_our_failure_and_the_slot_goes_on() {
    const WAIT: &str = "import time\ntime.sleep(30)\n";
    for (mode, sb) in [("warm", sandbox()), ("cold", cold_sandbox())] {
        let jobs = [
            stdio(WAIT, &[("", "")]),
            function(WAIT, "f", "def check(c):\n    assert c(1) == 2\n"),
        ];
        for (k, mut job) in jobs.into_iter().enumerate() {
            job.id = format!("cancel-me-{mode}-{k}");
            assert!(!sb.cancel(&job.id), "{mode}: nothing runs yet");
            let id = job.id.clone();
            let canceller = std::thread::spawn(move || {
                let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while !sb.cancel(&id) {
                    assert!(std::time::Instant::now() < end, "the job never ran");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            });
            let out = expect_in(sb, job, Verdict::SandboxError);
            canceller.join().unwrap();
            assert!(
                out.detail.as_deref().unwrap_or("").contains("cancelled"),
                "{out:?}"
            );
            // The slot builds a new cell and runs the next job normally.
            expect_in(
                sb,
                stdio("print(input())", &[("ok\n", "ok\n")]),
                Verdict::Accepted,
            );
        }
    }
}

/// A caller that stops waiting (its future dropped, as a timeout or a killed
/// actor does) gives its slot back only when the job ends: until then the
/// sandbox counts it busy and the next job waits for it (before, the slot's
/// permit went with the caller, and the next job took a blocking thread of its
/// own to wait on: more blocking threads than workers).
#[test]
fn a_job_whose_caller_stops_waiting_keeps_its_slot_until_it_ends() {
    let one = build_with(|c| c.workers = 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let slow = stdio("import time\ntime.sleep(1.5)\nprint(1)", &[("", "1\n")]);
    let run = |j| {
        rt.block_on(async {
            let dropped =
                tokio::time::timeout(std::time::Duration::from_millis(400), one.run(slow)).await;
            assert!(dropped.is_err(), "the slow job ended within 0.4 s");
            assert_eq!(one.busy(), 1, "a dropped caller's job still holds its slot");
            let next = tokio::spawn({
                let one = one.clone();
                async move { one.run(j).await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                !next.is_finished(),
                "the next job ran beside the abandoned one"
            );
            assert_eq!(one.busy(), 1);
            let out = next.await.unwrap();
            assert_eq!(one.busy(), 0);
            out
        })
    };
    expect_via(
        &one,
        run,
        stdio("print(2)", &[("", "2\n")]),
        Verdict::Accepted,
    );
}

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

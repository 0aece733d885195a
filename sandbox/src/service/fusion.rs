//! SandboxFusion's `POST /run_code`, as verl's client speaks it.
//!
//! The request runs one program once with `stdin` and reports what it did:
//! `{status: Success|Failed|SandboxError, message, compile_result,
//! run_result: {status: Finished|Error|TimeLimitExceeded, execution_time,
//! return_code, stdout, stderr}, executor_pod_name, files}`. `Success` means
//! the program compiled, ran to its end and exited 0; anything the program
//! did wrong is `Failed` (with the run's record), and `SandboxError` is the
//! sandbox's own failure, never the program's. Here a run is one stdio case of
//! a gradus job: the same isolation, limits and verdicts as every other job.
//!
//! Only Python runs here. Every other language, and every option gradus does
//! not implement (`files` to write, `fetch_files` to read back, fields
//! SandboxFusion does not have), is refused by name rather than ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{Compare, Job, JobLimits, Language, StdioCase, Tests};
use crate::outcome::{Outcome, ProcessRecord, Verdict};

/// The languages `/run_code` accepts (SandboxFusion's name first).
pub const LANGUAGES: [&str; 2] = ["python", "python3"];

/// The request body. Field names are SandboxFusion's.
#[derive(Debug, Deserialize)]
pub struct RunCodeRequest {
    pub code: String,
    #[serde(default = "python")]
    pub language: String,
    /// Seconds; Python has no compile step, so it only has to be valid.
    #[serde(default)]
    pub compile_timeout: Option<f64>,
    /// Seconds of wall clock (and of CPU) for the run. SandboxFusion's default is 10.
    #[serde(default)]
    pub run_timeout: Option<f64>,
    /// MiB; -1 (SandboxFusion's default) keeps the server's limit.
    #[serde(default, rename = "memory_limit_MB")]
    pub memory_limit_mb: Option<i64>,
    #[serde(default)]
    pub stdin: Option<String>,
    /// Files to write before the run (path -> base64); only `{}` is supported.
    #[serde(default)]
    pub files: BTreeMap<String, Value>,
    /// Files to send back after the run; only `[]` is supported.
    #[serde(default)]
    pub fetch_files: Vec<Value>,
    /// Anything else: refused by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn python() -> String {
    "python".into()
}

/// SandboxFusion's default run timeout, seconds.
const DEFAULT_RUN_TIMEOUT: f64 = 10.0;

/// One compile or run record of the response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRunResult {
    /// `Finished`, `Error` or `TimeLimitExceeded`.
    pub status: String,
    pub execution_time: Option<f64>,
    pub return_code: Option<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// The response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunCodeResponse {
    /// `Success`, `Failed` or `SandboxError`.
    pub status: String,
    pub message: String,
    pub compile_result: Option<CommandRunResult>,
    pub run_result: Option<CommandRunResult>,
    pub executor_pod_name: Option<String>,
    pub files: BTreeMap<String, String>,
}

impl RunCodeResponse {
    /// A response for a failure of the sandbox (or a refused request).
    pub fn sandbox_error(message: String) -> Self {
        RunCodeResponse {
            status: "SandboxError".into(),
            message,
            compile_result: None,
            run_result: None,
            executor_pod_name: None,
            files: BTreeMap::new(),
        }
    }
}

/// The gradus job that runs the request, or why it cannot run (a message
/// naming the language or field).
pub fn to_job(req: RunCodeRequest) -> Result<Job, String> {
    if let Some(k) = req.other.keys().next() {
        return Err(format!(
            "unknown field `{k}`: /run_code takes code, language, compile_timeout, run_timeout, \
             memory_limit_MB, stdin, files and fetch_files"
        ));
    }
    if !LANGUAGES.contains(&req.language.as_str()) {
        return Err(format!(
            "language `{}` is not supported: gradus sandbox serve runs python (as `python` or `python3`)",
            req.language
        ));
    }
    if !req.files.is_empty() {
        return Err(format!(
            "`files` is not supported (got {}): send the program's data on stdin",
            req.files.len()
        ));
    }
    if !req.fetch_files.is_empty() {
        return Err(
            "`fetch_files` is not supported: the program's stdout and stderr come back".into(),
        );
    }
    for (name, v) in [
        ("compile_timeout", req.compile_timeout),
        ("run_timeout", req.run_timeout),
    ] {
        if let Some(t) = v
            && !(t.is_finite() && t > 0.0)
        {
            return Err(format!(
                "`{name}` must be a positive number of seconds, got {t}"
            ));
        }
    }
    let run = req.run_timeout.unwrap_or(DEFAULT_RUN_TIMEOUT);
    let memory_mb = match req.memory_limit_mb {
        None | Some(-1) => None,
        Some(m) if m > 0 => Some(m as u64),
        Some(m) => {
            return Err(format!(
                "`memory_limit_MB` must be positive or -1 (the server's limit), got {m}"
            ));
        }
    };
    Ok(Job {
        id: String::new(),
        language: Language::Python,
        source: req.code,
        tests: Tests::Stdio {
            cases: vec![StdioCase {
                input: req.stdin.unwrap_or_default(),
                output: String::new(),
            }],
            compare: Compare::Exact,
        },
        limits: JobLimits {
            cpu_s: Some(run),
            wall_s: Some(run),
            memory_mb,
            job_wall_s: Some(run + 5.0),
            ..JobLimits::default()
        },
    })
}

/// What the run did, in SandboxFusion's terms. `out` is the job's outcome and
/// `procs` its process records ([`crate::Sandbox::run_capturing`]).
pub fn from_outcome(out: &Outcome, procs: &[ProcessRecord]) -> RunCodeResponse {
    let detail = out.detail.clone().unwrap_or_default();
    match out.verdict {
        Verdict::SandboxError | Verdict::InvalidJob => {
            return RunCodeResponse::sandbox_error(detail);
        }
        Verdict::CompileError => {
            // Python's compile step is gradus's own (the program is compiled
            // before it runs): a syntax error is a failed compile, as verl reads it.
            return RunCodeResponse {
                status: "Failed".into(),
                message: String::new(),
                compile_result: Some(CommandRunResult {
                    status: "Finished".into(),
                    execution_time: None,
                    return_code: Some(1),
                    stdout: Some(String::new()),
                    stderr: Some(detail),
                }),
                run_result: None,
                executor_pod_name: None,
                files: BTreeMap::new(),
            };
        }
        _ => {}
    }
    let Some(p) = procs.iter().find(|p| p.role == "candidate") else {
        return RunCodeResponse::sandbox_error(format!(
            "no record of the run ({}): {detail}",
            out.verdict.as_str()
        ));
    };
    let case = out.cases.first();
    let case_verdict = case.and_then(|c| c.verdict).unwrap_or(out.verdict);
    let timed_out = case_verdict == Verdict::TimeLimit;
    // A signal is reported as Python's subprocess does: minus its number.
    let return_code = if timed_out {
        None
    } else {
        p.exit_code.or(p.signal.map(|s| -s))
    };
    let status = if timed_out {
        "TimeLimitExceeded"
    } else if return_code.is_some() {
        "Finished"
    } else {
        "Error"
    };
    let ok = status == "Finished" && return_code == Some(0) && case_verdict != Verdict::OutputLimit;
    // The program's own failures that have no exit code of their own are
    // named in the message (an output or memory limit, a time limit).
    let message = match case_verdict {
        Verdict::Accepted | Verdict::WrongAnswer | Verdict::RuntimeError => String::new(),
        _ => case.and_then(|c| c.detail.clone()).unwrap_or(detail),
    };
    RunCodeResponse {
        status: if ok { "Success" } else { "Failed" }.into(),
        message,
        compile_result: None,
        run_result: Some(CommandRunResult {
            status: status.into(),
            execution_time: Some(p.wall_s),
            return_code,
            stdout: Some(p.stdout.clone().unwrap_or_default()),
            stderr: Some(p.stderr.clone()),
        }),
        executor_pod_name: None,
        files: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> RunCodeRequest {
        serde_json::from_value(v).unwrap()
    }

    /// The body verl's client sends becomes one stdio run with its limits.
    #[test]
    fn verls_request_becomes_one_stdio_run() {
        let job = to_job(req(serde_json::json!({
            "compile_timeout": 3, "run_timeout": 4, "code": "print(input())",
            "stdin": "7", "language": "python", "files": {}, "fetch_files": []
        })))
        .unwrap();
        assert_eq!(job.limits.wall_s, Some(4.0));
        assert_eq!(job.limits.cpu_s, Some(4.0));
        assert_eq!(job.limits.memory_mb, None);
        match job.tests {
            Tests::Stdio { cases, .. } => assert_eq!(cases[0].input, "7"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_languages_and_options_are_refused_by_name() {
        let cases = [
            (serde_json::json!({"code": "x", "language": "cpp"}), "`cpp`"),
            (
                serde_json::json!({"code": "x", "files": {"a.txt": "aGk="}}),
                "`files`",
            ),
            (
                serde_json::json!({"code": "x", "fetch_files": ["a"]}),
                "`fetch_files`",
            ),
            (serde_json::json!({"code": "x", "gpu": true}), "`gpu`"),
            (
                serde_json::json!({"code": "x", "memory_limit_MB": 0}),
                "`memory_limit_MB`",
            ),
            (
                serde_json::json!({"code": "x", "run_timeout": -1}),
                "`run_timeout`",
            ),
        ];
        for (body, named) in cases {
            let e = to_job(req(body.clone())).unwrap_err();
            assert!(e.contains(named), "{body}: {e}");
        }
    }

    fn record(code: Option<i32>, signal: Option<i32>) -> ProcessRecord {
        ProcessRecord {
            index: 0,
            role: "candidate".into(),
            wall_s: 0.25,
            stdout: Some("out\n".into()),
            stderr: "err".into(),
            exit_code: code,
            signal,
            ..ProcessRecord::default()
        }
    }

    fn outcome(v: Verdict) -> Outcome {
        Outcome {
            id: String::new(),
            verdict: v,
            passed: 0,
            total: 1,
            cases: vec![crate::CaseResult {
                verdict: Some(v),
                detail: Some(format!("{} detail", v.as_str())),
                ..Default::default()
            }],
            wall_ms: 0.0,
            detail: Some(format!("{} detail", v.as_str())),
        }
    }

    #[test]
    fn verdicts_map_to_sandboxfusions_statuses() {
        // (verdict, record, status, run status, return code)
        let rows = [
            (
                Verdict::WrongAnswer,
                record(Some(0), None),
                "Success",
                "Finished",
                Some(0),
            ),
            (
                Verdict::RuntimeError,
                record(Some(1), None),
                "Failed",
                "Finished",
                Some(1),
            ),
            (
                Verdict::RuntimeError,
                record(None, Some(11)),
                "Failed",
                "Finished",
                Some(-11),
            ),
            (
                Verdict::MemoryLimit,
                record(None, Some(9)),
                "Failed",
                "Finished",
                Some(-9),
            ),
            (
                Verdict::TimeLimit,
                record(None, Some(9)),
                "Failed",
                "TimeLimitExceeded",
                None,
            ),
            (
                Verdict::OutputLimit,
                record(Some(0), None),
                "Failed",
                "Finished",
                Some(0),
            ),
        ];
        for (v, p, status, run, code) in rows {
            let r = from_outcome(&outcome(v), &[p]);
            assert_eq!(r.status, status, "{v:?}");
            let run_result = r.run_result.unwrap();
            assert_eq!(run_result.status, run, "{v:?}");
            assert_eq!(run_result.return_code, code, "{v:?}");
            assert_eq!(run_result.stdout.as_deref(), Some("out\n"));
            assert_eq!(run_result.execution_time, Some(0.25));
        }
        let r = from_outcome(&outcome(Verdict::SandboxError), &[]);
        assert_eq!((r.status.as_str(), r.run_result), ("SandboxError", None));
        let r = from_outcome(&outcome(Verdict::CompileError), &[]);
        assert_eq!(r.status, "Failed");
        assert_eq!(r.compile_result.unwrap().return_code, Some(1));
    }
}

//! From the supervisor's records to an [`Outcome`]. Accepting needs positive
//! evidence: a record for every case, the supervisor's final `done`, and a
//! comparison made here (stdout, returned values) or by the separate checker
//! process. A missing record is never read as a pass.

use serde_json::Value;

use crate::compare::{json_repr, stdout_matches, value_matches};
use crate::job::{Limits, Tests};
use crate::marshal::{PyValue, decode};
use crate::outcome::{CaseResult, Outcome, Verdict, truncate};

/// One record from the job's supervisor (PID 1 of the job).
#[derive(Debug, Default, Clone)]
pub struct Proc {
    pub i: i64,
    pub role: String,
    pub wall: f64,
    pub cpu: f64,
    pub killed: String,
    pub stderr: String,
    pub stdout: Option<String>,
    pub signal: Option<i32>,
    pub code: Option<i32>,
}

impl From<Proc> for crate::outcome::ProcessRecord {
    fn from(p: Proc) -> Self {
        crate::outcome::ProcessRecord {
            index: p.i,
            role: p.role,
            wall_s: p.wall,
            cpu_s: p.cpu,
            killed: p.killed,
            stdout: p.stdout,
            stderr: p.stderr,
            exit_code: p.code,
            signal: p.signal,
        }
    }
}

/// Everything the Rust side learned about one job run.
#[derive(Debug, Default)]
pub struct Evidence {
    pub applied: Vec<(String, String)>,
    pub setup_error: Option<String>,
    pub compile_error: Option<String>,
    pub procs: Vec<Proc>,
    pub calls: Vec<Vec<u8>>,
    pub checks: Vec<Vec<u8>>,
    pub done: bool,
    /// The Rust-side wall clock for the whole job ran out.
    pub job_timed_out: bool,
    /// The memory cgroup recorded an OOM kill during this job.
    pub oom: bool,
    /// Records that did not parse (a harness bug, not the program's).
    pub garbled: Option<String>,
}

impl Evidence {
    /// No record at all arrived (the job never reached a supervisor).
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty()
            && self.setup_error.is_none()
            && self.compile_error.is_none()
            && self.procs.is_empty()
            && self.calls.is_empty()
            && self.checks.is_empty()
            && !self.done
            && self.garbled.is_none()
    }

    /// Fold in one record (a marshal dict from the supervisor).
    pub fn add(&mut self, frame: &[u8]) {
        let rec = match decode(frame) {
            Ok(r) => r,
            Err(e) => {
                self.garbled = Some(format!("unreadable record: {e}"));
                return;
            }
        };
        let s = |k: &str| {
            rec.get(k)
                .and_then(PyValue::as_str)
                .unwrap_or("")
                .to_string()
        };
        match rec.get("t").and_then(PyValue::as_str) {
            Some("applied") => {
                if let Some(PyValue::Dict(items)) = rec.get("protections") {
                    for (k, v) in items {
                        if let (PyValue::Str(k), PyValue::Str(v)) = (k, v) {
                            self.applied.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
            Some("setup_error") => {
                self.setup_error = Some(format!(
                    "setup step `{}` failed: {} (errno {})",
                    s("step"),
                    s("msg"),
                    rec.get("errno").and_then(PyValue::as_i64).unwrap_or(0)
                ));
            }
            Some("compile_error") => self.compile_error = Some(s("msg")),
            Some("proc") => self.procs.push(Proc {
                i: rec.get("i").and_then(PyValue::as_i64).unwrap_or(-1),
                role: s("role"),
                wall: rec.get("wall").and_then(PyValue::as_f64).unwrap_or(0.0),
                cpu: rec.get("cpu").and_then(PyValue::as_f64).unwrap_or(0.0),
                killed: s("killed"),
                stderr: s("stderr"),
                stdout: rec
                    .get("stdout")
                    .and_then(PyValue::as_str)
                    .map(String::from),
                signal: rec
                    .get("signal")
                    .and_then(PyValue::as_i64)
                    .map(|v| v as i32),
                code: rec.get("code").and_then(PyValue::as_i64).map(|v| v as i32),
            }),
            Some("call") => self.calls.push(
                rec.get("data")
                    .and_then(PyValue::as_bytes)
                    .unwrap_or(&[])
                    .to_vec(),
            ),
            Some("check") => self.checks.push(
                rec.get("data")
                    .and_then(PyValue::as_bytes)
                    .unwrap_or(&[])
                    .to_vec(),
            ),
            Some("done") => self.done = true,
            other => self.garbled = Some(format!("unknown record type {other:?}")),
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => "",
    };
    if name.is_empty() {
        format!("signal {sig}")
    } else {
        format!("signal {sig} ({name})")
    }
}

fn last_line(s: &str) -> &str {
    s.trim_end().rsplit('\n').next().unwrap_or("")
}

/// Why a process's run failed, if it did. `cpu_budget` is its CPU limit.
fn failure(p: &Proc, lim: &Limits, cpu_budget: f64, oom: bool) -> Option<(Verdict, String)> {
    match p.killed.as_str() {
        "timeout" => {
            return Some((
                Verdict::TimeLimit,
                format!("wall time limit of {} s exceeded", lim.wall_s),
            ));
        }
        "output" => {
            return Some((
                Verdict::OutputLimit,
                format!("output limit of {} KiB exceeded", lim.output_kb),
            ));
        }
        _ => {}
    }
    if let Some(sig) = p.signal {
        if sig == libc::SIGXCPU || (sig == libc::SIGKILL && p.cpu >= cpu_budget.ceil()) {
            return Some((
                Verdict::TimeLimit,
                format!("CPU limit of {cpu_budget} s exceeded"),
            ));
        }
        if sig == libc::SIGKILL && oom {
            return Some((
                Verdict::MemoryLimit,
                format!("memory limit of {} MiB exceeded (killed)", lim.memory_mb),
            ));
        }
        if sig == libc::SIGXFSZ {
            return Some((
                Verdict::OutputLimit,
                format!("file size limit of {} KiB exceeded", lim.file_size_kb),
            ));
        }
        return Some((
            Verdict::RuntimeError,
            format!("killed by {}", signal_name(sig)),
        ));
    }
    if p.cpu > cpu_budget {
        return Some((
            Verdict::TimeLimit,
            format!("CPU limit of {cpu_budget} s exceeded"),
        ));
    }
    match p.code {
        Some(0) => None,
        Some(c) => {
            if last_line(&p.stderr).starts_with("MemoryError") {
                Some((
                    Verdict::MemoryLimit,
                    format!(
                        "memory limit of {} MiB exceeded (MemoryError)",
                        lim.memory_mb
                    ),
                ))
            } else {
                Some((
                    Verdict::RuntimeError,
                    format!("exit code {c}: {}", last_line(&p.stderr)),
                ))
            }
        }
        None => Some((
            Verdict::SandboxError,
            "the supervisor lost this process's status".into(),
        )),
    }
}

fn case_from_proc(index: usize, p: &Proc, chars: usize) -> CaseResult {
    CaseResult {
        index,
        verdict: None,
        wall_ms: p.wall * 1000.0,
        cpu_ms: p.cpu * 1000.0,
        exit_code: p.code,
        signal: p.signal,
        stderr: (!p.stderr.is_empty()).then(|| truncate(&tail(&p.stderr, chars), chars)),
        ..CaseResult::default()
    }
}

fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        s.chars().skip(count - n).collect()
    }
}

/// Judge a job from its evidence.
pub fn judge(id: &str, tests: &Tests, lim: &Limits, ev: &Evidence, chars: usize) -> Outcome {
    let total = tests.total();
    if let Some(e) = &ev.setup_error {
        return Outcome::failure(id, Verdict::SandboxError, total, e.clone());
    }
    if let Some(e) = &ev.garbled {
        return Outcome::failure(id, Verdict::SandboxError, total, e.clone());
    }
    if let Some(e) = &ev.compile_error {
        return Outcome::failure(id, Verdict::CompileError, total, e.clone());
    }
    let mut cases = match tests {
        Tests::Stdio { cases, compare } => cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let Some(p) = ev.procs.iter().find(|p| p.i == i as i64) else {
                    return missing(i, ev);
                };
                let mut c = case_from_proc(i, p, chars);
                match failure(p, lim, lim.cpu_s, ev.oom) {
                    Some((v, why)) => {
                        c.verdict = Some(v);
                        c.detail = Some(why);
                    }
                    None => {
                        let got = p.stdout.as_deref().unwrap_or("");
                        if stdout_matches(compare, &case.output, got) {
                            c.verdict = Some(Verdict::Accepted);
                        } else {
                            c.verdict = Some(Verdict::WrongAnswer);
                            c.expected = Some(truncate(&case.output, chars));
                            c.got = Some(truncate(got, chars));
                        }
                    }
                }
                c
            })
            .collect(),
        Tests::Call { outputs, .. } => judge_calls(outputs, lim, ev, chars),
        Tests::Function { .. } => vec![judge_check(lim, ev, chars)],
    };
    if !ev.done {
        // Without the supervisor's final record nothing counts as passed.
        for c in cases
            .iter_mut()
            .filter(|c| c.verdict == Some(Verdict::Accepted))
        {
            c.verdict = Some(Verdict::SandboxError);
            c.detail = Some("no completion record from the supervisor".into());
        }
    }
    let passed = cases
        .iter()
        .filter(|c| c.verdict == Some(Verdict::Accepted))
        .count();
    let first_bad = cases.iter().find(|c| c.verdict != Some(Verdict::Accepted));
    let verdict = match (total, first_bad) {
        (0, _) => Verdict::SandboxError,
        (_, Some(c)) => c.verdict.unwrap_or(Verdict::SandboxError),
        (_, None) => Verdict::Accepted,
    };
    let detail = if total == 0 {
        Some("the job has no test cases".into())
    } else {
        first_bad.and_then(|c| c.detail.clone())
    };
    Outcome {
        id: id.into(),
        verdict,
        passed,
        total,
        cases,
        wall_ms: 0.0,
        detail,
    }
}

fn missing(i: usize, ev: &Evidence) -> CaseResult {
    let (v, why) = if ev.job_timed_out {
        (
            Verdict::TimeLimit,
            "the job's wall-clock limit ran out before this case".to_string(),
        )
    } else {
        (Verdict::SandboxError, "no record for this case".to_string())
    };
    CaseResult {
        index: i,
        verdict: Some(v),
        detail: Some(why),
        ..CaseResult::default()
    }
}

fn judge_calls(outputs: &[Value], lim: &Limits, ev: &Evidence, chars: usize) -> Vec<CaseResult> {
    let cand = ev.procs.iter().find(|p| p.role == "candidate");
    let budget = lim.cpu_s * outputs.len().max(1) as f64;
    let death = cand.and_then(|p| failure(p, lim, budget, ev.oom));
    let mut results: Vec<Option<PyValue>> = vec![None; outputs.len()];
    for data in &ev.calls {
        // Untrusted bytes from the candidate's process: a record that does
        // not decode, or names no valid case, is ignored (the case then has
        // no result and fails).
        let Ok(rec) = decode(data) else { continue };
        let Some(i) = rec.get("i").and_then(PyValue::as_i64) else {
            continue;
        };
        if let Some(slot) = results.get_mut(i as usize)
            && slot.is_none()
        {
            *slot = Some(rec);
        }
    }
    outputs
        .iter()
        .enumerate()
        .map(|(i, expected)| {
            let mut c = CaseResult { index: i, ..CaseResult::default() };
            match &results[i] {
                Some(rec) => match rec.get("v") {
                    Some(v) if rec.get("exc").is_none() => {
                        if value_matches(expected, v) {
                            c.verdict = Some(Verdict::Accepted);
                        } else {
                            c.verdict = Some(Verdict::WrongAnswer);
                            c.expected = Some(truncate(&json_repr(expected), chars));
                            c.got = Some(truncate(&v.repr(), chars));
                        }
                    }
                    _ => {
                        let exc = rec.get("exc").and_then(PyValue::as_str).unwrap_or("Exception");
                        let msg = rec.get("msg").and_then(PyValue::as_str).unwrap_or("");
                        c.verdict = Some(if exc == "MemoryError" { Verdict::MemoryLimit } else { Verdict::RuntimeError });
                        c.detail = Some(truncate(&format!("{exc}: {msg}"), chars));
                    }
                },
                None => {
                    let (v, why) = death.clone().unwrap_or_else(|| {
                        if ev.job_timed_out {
                            (Verdict::TimeLimit, "the job's wall-clock limit ran out".into())
                        } else {
                            (Verdict::RuntimeError, "no result for this case: the program exited before the harness finished".into())
                        }
                    });
                    c.verdict = Some(v);
                    c.detail = Some(why);
                    if let Some(p) = cand {
                        c.stderr = (!p.stderr.is_empty()).then(|| truncate(&tail(&p.stderr, chars), chars));
                    }
                }
            }
            c
        })
        .collect()
}

fn judge_check(lim: &Limits, ev: &Evidence, chars: usize) -> CaseResult {
    let cand = ev.procs.iter().find(|p| p.role == "candidate");
    let checker = ev.procs.iter().find(|p| p.role == "checker");
    let mut c = checker
        .map(|p| case_from_proc(0, p, chars))
        .unwrap_or_default();
    c.stderr =
        cand.and_then(|p| (!p.stderr.is_empty()).then(|| truncate(&tail(&p.stderr, chars), chars)));
    // The supervisor kills the candidate once the check is over, so only a
    // limit (not a plain death) says more than the checker's own message.
    let death = cand
        .and_then(|p| failure(p, lim, lim.cpu_s, ev.oom))
        .filter(|(v, _)| *v != Verdict::RuntimeError);
    let rec = ev.checks.first().and_then(|d| decode(d).ok());
    let (v, why) = match rec {
        Some(r) if r.get("ok") == Some(&PyValue::Bool(true)) => (Verdict::Accepted, None),
        Some(r) => {
            let exc = r.get("exc").and_then(PyValue::as_str).unwrap_or("");
            let msg = r
                .get("msg")
                .and_then(PyValue::as_str)
                .unwrap_or("")
                .to_string();
            match exc {
                "AssertionError" => (
                    Verdict::WrongAnswer,
                    Some(format!("assertion failed {msg}").trim().to_string()),
                ),
                "HarnessArgError" => (
                    Verdict::SandboxError,
                    Some(format!(
                        "a test argument cannot be sent to the program: {msg}"
                    )),
                ),
                "ProblemError" => (
                    Verdict::InvalidJob,
                    Some(format!("the problem cannot be checked: {msg}")),
                ),
                "CandidateError" => match &death {
                    Some((v, why)) => (*v, Some(why.clone())),
                    None if msg.starts_with("MemoryError") => (Verdict::MemoryLimit, Some(msg)),
                    None => (Verdict::RuntimeError, Some(msg)),
                },
                "MemoryError" => (Verdict::MemoryLimit, Some(msg)),
                other => (
                    Verdict::WrongAnswer,
                    Some(format!("check raised {other}: {msg}")),
                ),
            }
        }
        None => {
            if let Some(p) = checker
                && let Some((v, why)) = failure(p, lim, lim.cpu_s, ev.oom)
                && v != Verdict::RuntimeError
            {
                (v, Some(why))
            } else if let Some((v, why)) = &death {
                (*v, Some(why.clone()))
            } else if ev.job_timed_out {
                (
                    Verdict::TimeLimit,
                    Some("the job's wall-clock limit ran out".into()),
                )
            } else {
                (
                    Verdict::SandboxError,
                    Some("the checker produced no result".into()),
                )
            }
        }
    };
    c.verdict = Some(v);
    c.detail = why.map(|w| truncate(&w, chars));
    c
}

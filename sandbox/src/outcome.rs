//! What a job earned: a verdict, per-case results and partial credit.

use serde::{Deserialize, Serialize};

/// The verdict of a job or of one case.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    WrongAnswer,
    RuntimeError,
    TimeLimit,
    MemoryLimit,
    OutputLimit,
    CompileError,
    /// A failure of the sandbox itself; never blamed on the program.
    SandboxError,
    /// The job is at fault, not the program: its line could not be parsed,
    /// or the problem's own test code cannot run (its prelude or test fails,
    /// or the test uses a helper that no prelude defines).
    InvalidJob,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::RuntimeError => "runtime_error",
            Verdict::TimeLimit => "time_limit",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::OutputLimit => "output_limit",
            Verdict::CompileError => "compile_error",
            Verdict::SandboxError => "sandbox_error",
            Verdict::InvalidJob => "invalid_job",
        }
    }
}

/// The result of one test case.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CaseResult {
    pub index: usize,
    pub verdict: Option<Verdict>,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result of one job; one line of `gradus sandbox batch` output.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub verdict: Verdict,
    pub passed: usize,
    pub total: usize,
    pub cases: Vec<CaseResult>,
    pub wall_ms: f64,
    /// Why, for compile_error, sandbox_error and invalid_job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Outcome {
    /// Fraction of cases passed (partial credit); 0 when there are none.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }

    /// An outcome that is not the program's doing.
    pub fn failure(id: &str, verdict: Verdict, total: usize, detail: String) -> Outcome {
        Outcome {
            id: id.into(),
            verdict,
            passed: 0,
            total,
            cases: Vec::new(),
            wall_ms: 0.0,
            detail: Some(detail),
        }
    }
}

/// What one process of a job did, whole (not cut to `report_chars`; its
/// output is bounded by the job's `output_kb`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ProcessRecord {
    /// The test case it ran (stdio: the case's index).
    pub index: i64,
    /// `candidate` (the program) or `checker` (a function test's check).
    pub role: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Why the supervisor killed it (`timeout`, `output`), empty if it did not.
    pub killed: String,
    pub stdout: Option<String>,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// Cut `s` to at most `n` chars, marking the cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let cut: String = s.chars().take(n).collect();
    format!("{cut}… [{} more chars]", s.chars().count() - n)
}

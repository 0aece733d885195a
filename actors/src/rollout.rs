//! Reward assembly: from graded responses to rewards, verdict labels and
//! complete groups.
//!
//! A group completes when every one of its responses has a result; only then
//! are its advantages computed (by the learner, from the rewards here). The
//! reward is binary, as in both papers: 1 for a correct math answer or a
//! program that passes every test, else 0; `partial_credit` switches code to
//! the fraction of tests passed. A response cut at the length limit keeps its
//! grade here; the stage's `mask_truncated` setting decides whether the learner
//! trains on it.

use gradus_math::Grade;
use gradus_sandbox::{Outcome, Verdict};

use crate::data::Problem;

/// One response's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseResult {
    pub reward: f32,
    pub correct: bool,
    pub truncated: bool,
    /// Label for `gradus_rollout_responses_total{verdict}` and rollouts.jsonl.
    pub verdict: &'static str,
}

/// Result of a math response.
pub fn math_result(grade: &Grade, truncated: bool) -> ResponseResult {
    ResponseResult {
        reward: if grade.correct { 1.0 } else { 0.0 },
        correct: grade.correct,
        truncated,
        verdict: if grade.correct {
            "correct"
        } else {
            grade.reason.as_str()
        },
    }
}

/// Result of a code response.
pub fn code_result(outcome: &Outcome, truncated: bool, partial_credit: bool) -> ResponseResult {
    let correct = outcome.verdict == Verdict::Accepted;
    let reward = if correct {
        1.0
    } else if partial_credit {
        outcome.fraction() as f32
    } else {
        0.0
    };
    ResponseResult {
        reward,
        correct,
        truncated,
        verdict: outcome.verdict.as_str(),
    }
}

/// Whether a result's verdict is a failure of the judging (the sandbox's or
/// the grader's), not a judgement of the response.
pub fn is_failure(verdict: &str) -> bool {
    matches!(verdict, "sandbox_error" | "grader_error")
}

/// The result recorded when grading failed twice (a grader bug, a sandbox that
/// keeps failing): no reward, and labelled so it is counted, not hidden.
pub fn failed_result(truncated: bool, verdict: &'static str) -> ResponseResult {
    ResponseResult {
        reward: 0.0,
        correct: false,
        truncated,
        verdict,
    }
}

/// The program in a code response: the last fenced block (```python ... ```
/// or ``` ... ```) when there is one, else the whole response.
pub fn extract_program(response: &str) -> &str {
    let Some(open) = response
        .rfind("```")
        .and_then(|end| response[..end].rfind("```").map(|s| (s, end)))
    else {
        return response;
    };
    let (start, end) = open;
    let block = &response[start + 3..end];
    // Drop the language tag line, if any.
    match block.split_once('\n') {
        Some((tag, body)) if !tag.contains(' ') && !tag.contains('(') => body,
        _ => block,
    }
}

/// Collects one group's results as they arrive, in any order.
#[derive(Debug, Clone)]
pub struct GroupResults {
    results: Vec<Option<ResponseResult>>,
}

impl GroupResults {
    pub fn new(size: usize) -> Self {
        Self {
            results: vec![None; size],
        }
    }

    /// Records response `i`'s result; a second result for the same response is
    /// ignored (work redone after a crash must not count twice).
    pub fn set(&mut self, i: usize, r: ResponseResult) -> bool {
        match self.results.get_mut(i) {
            Some(slot @ None) => {
                *slot = Some(r);
                true
            }
            _ => false,
        }
    }

    /// The results once every response has one.
    pub fn complete(&self) -> Option<Vec<ResponseResult>> {
        self.results.iter().cloned().collect()
    }
}

/// A sandbox job for a code response. The problem's tests mirror the
/// sandbox's schema field for field, so they convert through their JSON form.
pub fn code_job(problem: &Problem, response: &str, id: &str) -> gradus_sandbox::Job {
    let tests = problem
        .tests
        .as_ref()
        .expect("code problems carry tests (checked at load)");
    let tests = serde_json::to_value(tests)
        .and_then(serde_json::from_value)
        .expect("problem tests and sandbox tests share one schema");
    gradus_sandbox::Job {
        id: id.to_string(),
        language: gradus_sandbox::job::Language::Python,
        source: extract_program(response).to_string(),
        tests,
        limits: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_come_from_the_last_fence_or_the_whole_text() {
        assert_eq!(
            extract_program("def f(x):\n return x+3"),
            "def f(x):\n return x+3"
        );
        let r = "try:\n```python\nx=1\n```\nbetter:\n```python\ndef f(x):\n return x\n```\n";
        assert_eq!(extract_program(r), "def f(x):\n return x\n");
        assert_eq!(extract_program("```\nprint(1)\n```"), "print(1)\n");
    }

    #[test]
    fn a_group_completes_once_and_redone_work_does_not_count_twice() {
        let mut g = GroupResults::new(2);
        let r = failed_result(false, "wrong");
        assert!(g.set(1, r.clone()));
        assert!(g.complete().is_none());
        assert!(!g.set(1, r.clone()));
        assert!(g.set(0, r));
        assert_eq!(g.complete().unwrap().len(), 2);
    }
}

//! HumanEval (and MBPP-style rows converted to it): `task_id`, `prompt` (signature and
//! docstring), `test` (defines `check(candidate)`), `entry_point`, `canonical_solution`.

use super::fields::{Row, content_id, opt_id, opt_str, req_str};
use crate::data::problem::{Domain, FieldError, Problem, Tests};

/// Reads one HumanEval row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    let prompt = req_str(row, "prompt")?;
    let test = req_str(row, "test")?;
    let entry_point = req_str(row, "entry_point")?;
    if !test.contains("def check") {
        return Err(FieldError::new("test", "does not define check(candidate)"));
    }
    let id = opt_id(row, &["task_id", "id"])?.unwrap_or_else(|| content_id(source, prompt));
    Ok(Problem {
        id,
        domain: Domain::Code,
        prompt: prompt.to_string(),
        answer: None,
        tests: Some(Tests::Function {
            entry_point: entry_point.trim().to_string(),
            test: test.to_string(),
            // The prompt defines the helpers the test calls (HumanEval/32's `poly`,
            // /38's `encode_cyclic`, /50's `encode_shift`); the checker runs it itself.
            prelude: prompt.to_string(),
        }),
        solution: opt_str(row, "canonical_solution")?.map(str::to_string),
        difficulty: None,
        source: source.to_string(),
        metadata: Row::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: the prompt's helpers reach the checker as the tests' prelude, so a
    /// sandbox job built from a response never has to (and never may) supply them.
    #[test]
    fn the_prompt_is_the_checkers_prelude_in_every_job() {
        let prompt = "def enc(s):\n    return s[::-1]\n\ndef dec(s):\n    \"\"\"Undo enc.\"\"\"\n";
        let row: Row = serde_json::from_value(serde_json::json!({
            "task_id": "HumanEval/38", "prompt": prompt, "entry_point": "dec",
            "test": "def check(candidate):\n    assert candidate(enc('ab')) == 'ab'\n",
            "canonical_solution": "    return s[::-1]\n",
        }))
        .unwrap();
        let p = parse(&row, "he.jsonl").unwrap();
        let Some(Tests::Function { prelude, .. }) = &p.tests else {
            panic!("function tests")
        };
        assert_eq!(prelude, prompt);
        let job = crate::rollout::code_job(&p, "def dec(s):\n    return s\n", "j");
        let gradus_sandbox::job::Tests::Function { prelude, .. } = &job.tests else {
            panic!("a function job")
        };
        assert_eq!(prelude, prompt);
        assert_eq!(job.source, "def dec(s):\n    return s\n");
    }
}

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
        }),
        solution: opt_str(row, "canonical_solution")?.map(str::to_string),
        difficulty: None,
        source: source.to_string(),
        metadata: Row::new(),
    })
}

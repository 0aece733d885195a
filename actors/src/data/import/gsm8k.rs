//! GSM8K: `question`, and `answer` holding the worked solution followed by `#### <final answer>`.

use super::fields::{Row, content_id, opt_id, req_str};
use crate::data::problem::{Domain, FieldError, Problem};

/// Reads one GSM8K row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    let prompt = req_str(row, "question")?;
    let full = req_str(row, "answer")?;
    let (solution, answer) = full
        .rsplit_once("####")
        .ok_or_else(|| FieldError::new("answer", "no '#### <answer>' line found"))?;
    // GSM8K writes thousands separators in a few answers ("1,000"); the number is what counts.
    let answer = answer.trim().replace(',', "");
    if answer.is_empty() {
        return Err(FieldError::new("answer", "nothing after '####'"));
    }
    let id = opt_id(row, &["id"])?.unwrap_or_else(|| content_id(source, prompt));
    Ok(Problem {
        id,
        domain: Domain::Math,
        prompt: prompt.to_string(),
        answer: Some(answer),
        tests: None,
        solution: Some(solution.trim().to_string()),
        difficulty: None,
        source: source.to_string(),
        metadata: Row::new(),
    })
}

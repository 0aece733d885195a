//! MATH (Hendrycks et al.) and MATH-500: `problem`, `level`, `type`/`subject`, `solution`
//! whose final answer is the last `\boxed{...}`; MATH-500's explicit `answer` wins when present.

use serde_json::Value;

use super::fields::{Row, content_id, keep, opt_id, req_str, str_or_number, type_name};
use crate::data::problem::{Difficulty, Domain, FieldError, Problem};

/// Reads one MATH row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    let prompt = req_str(row, "problem")?;
    let solution = req_str(row, "solution")?;
    let answer = match str_or_number(row, "answer")? {
        Some(a) => a,
        None => last_boxed(solution)
            .ok_or_else(|| FieldError::new("solution", "no \\boxed{...} answer found"))?,
    };
    if answer.trim().is_empty() {
        return Err(FieldError::new("solution", "the \\boxed{} answer is empty"));
    }
    let difficulty = match row.get("level") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Difficulty::Label(s.trim().to_string())),
        Some(Value::Number(n)) => Some(Difficulty::Label(format!("Level {n}"))),
        Some(other) => {
            return Err(FieldError::new(
                "level",
                format!("expected a string or number, got {}", type_name(other)),
            ));
        }
    };
    let mut metadata = Row::new();
    keep(row, &["type", "subject", "level"], &mut metadata);
    let id = opt_id(row, &["id", "unique_id"])?.unwrap_or_else(|| content_id(source, prompt));
    Ok(Problem {
        id,
        domain: Domain::Math,
        prompt: prompt.to_string(),
        answer: Some(answer.trim().to_string()),
        tests: None,
        solution: Some(solution.to_string()),
        difficulty,
        source: source.to_string(),
        metadata,
    })
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`) in `text`, braces balanced;
/// also accepts the brace-less `\boxed 5` form.
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| (i, m.len())))
        .max_by_key(|(i, _)| *i)?;
    let rest = &text[start.0 + start.1..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(body[..i].to_string());
                    }
                }
                _ => {}
            }
        }
        None
    } else if let Some(body) = rest.strip_prefix(' ') {
        let end = body.find(['$', ' ', '\n']).unwrap_or(body.len());
        (end > 0).then(|| body[..end].to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_takes_the_last_balanced_group() {
        assert_eq!(
            last_boxed(r"so \boxed{1} or \boxed{\frac{1}{2}}.").as_deref(),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(last_boxed(r"$\boxed 5$").as_deref(), Some("5"));
        assert_eq!(last_boxed(r"\fbox{x}").as_deref(), Some("x"));
        assert_eq!(last_boxed(r"\boxed{unclosed"), None);
        assert_eq!(last_boxed("no box"), None);
    }
}

//! DeepScaleR and verl-style math rows.
//!
//! DeepScaleR: `problem`, `answer`, optional `solution`. verl's preprocessed rows: `prompt`
//! (a string or a chat message list whose last user message is the problem), `reward_model`
//! with `ground_truth`, `data_source`, `ability`, `extra_info` (a struct, or JSON text of
//! one). A top-level `ground_truth` is accepted too. Only math rows are read in this shape (verl's code rows pack their tests into
//! a string each recipe encodes differently; convert them to gradus's format instead).

use serde_json::Value;

use super::fields::{Row, content_id, keep, opt_id, opt_str, str_or_number, type_name};
use crate::data::problem::{Difficulty, Domain, FieldError, Problem};

/// Reads one DeepScaleR/verl row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    if let Some(ability) = opt_str(row, "ability")?
        && ability != "math"
    {
        return Err(FieldError::new(
            "ability",
            format!("only math rows are read in this shape, got '{ability}'"),
        ));
    }
    let prompt = prompt_text(row)?;
    let answer = answer_text(row)?;
    let difficulty = match row.get("difficulty") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Difficulty::Label(s.clone())),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => Some(Difficulty::PassRate(p)),
            _ => Some(Difficulty::Label(n.to_string())),
        },
        Some(other) => {
            return Err(FieldError::new(
                "difficulty",
                format!("expected a string or number, got {}", type_name(other)),
            ));
        }
    };
    let mut metadata = Row::new();
    keep(row, &["data_source", "extra_info"], &mut metadata);
    // verl's `extra_info` is a struct in some exports and JSON text in others: keep an object.
    if let Some(Value::String(text)) = metadata.get("extra_info")
        && let Ok(obj @ Value::Object(_)) = serde_json::from_str::<Value>(text)
    {
        metadata.insert("extra_info".into(), obj);
    }
    let source_name = opt_str(row, "data_source")?.unwrap_or(source).to_string();
    let id = opt_id(row, &["id", "unique_id"])?.unwrap_or_else(|| content_id(source, &prompt));
    Ok(Problem {
        id,
        domain: Domain::Math,
        prompt,
        answer: Some(answer),
        tests: None,
        solution: opt_str(row, "solution")?.map(str::to_string),
        difficulty,
        source: source_name,
        metadata,
    })
}

fn prompt_text(row: &Row) -> Result<String, FieldError> {
    if let Some(p) = opt_str(row, "problem")? {
        if p.trim().is_empty() {
            return Err(FieldError::new("problem", "empty"));
        }
        return Ok(p.to_string());
    }
    match row.get("prompt") {
        None | Some(Value::Null) => Err(FieldError::new("problem", "missing (and no 'prompt')")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(FieldError::new("prompt", "empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(msgs)) => {
            let last_user = msgs
                .iter()
                .enumerate()
                .rev()
                .find(|(_, m)| m.get("role").and_then(Value::as_str) == Some("user"));
            let Some((i, msg)) = last_user else {
                return Err(FieldError::new("prompt", "no message with role 'user'"));
            };
            match msg.get("content") {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(FieldError::new(
                    format!("prompt[{i}].content"),
                    "expected a non-empty string",
                )),
            }
        }
        Some(other) => Err(FieldError::new(
            "prompt",
            format!(
                "expected a string or a message list, got {}",
                type_name(other)
            ),
        )),
    }
}

fn answer_text(row: &Row) -> Result<String, FieldError> {
    if let Some(a) = str_or_number(row, "answer")? {
        return Ok(a);
    }
    if let Some(a) = str_or_number(row, "ground_truth")? {
        return Ok(a);
    }
    match row.get("reward_model") {
        Some(Value::Object(rm)) => str_or_number(rm, "ground_truth")
            .map_err(|e| FieldError::new(format!("reward_model.{}", e.field), e.reason))?
            .ok_or_else(|| FieldError::new("reward_model.ground_truth", "missing")),
        Some(other) if !other.is_null() => Err(FieldError::new(
            "reward_model",
            format!("expected an object, got {}", type_name(other)),
        )),
        _ => Err(FieldError::new(
            "answer",
            "missing (and no 'ground_truth' or 'reward_model.ground_truth')",
        )),
    }
}

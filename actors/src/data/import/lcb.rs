//! LiveCodeBench, APPS and TACO: `question` (or LiveCodeBench's `question_content`) and tests.
//!
//! APPS/TACO (and LiveCodeBench as repackaged by DeepCoder and others) put the tests in
//! `input_output`, a JSON object or a string holding one, with `inputs`, `outputs` and, for
//! call-based problems, `fn_name`. LiveCodeBench's own release puts them in
//! `public_test_cases` (a JSON string: `[{"input", "output", "testtype"}]`) with the function
//! name in `metadata.func_name`; its private tests are compressed pickles and are not read.
//! Stdio tests compare whitespace-separated tokens, as those judges do.

use serde_json::Value;

use super::fields::{Row, content_id, keep, opt_id, opt_str, type_name};
use crate::data::problem::{Compare, Difficulty, Domain, FieldError, Problem, StdioCase, Tests};

/// Reads one LiveCodeBench/APPS/TACO row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    let prompt_field = if row.contains_key("question") {
        "question"
    } else {
        "question_content"
    };
    let prompt = match opt_str(row, prompt_field)? {
        Some(p) if !p.trim().is_empty() => p,
        Some(_) => return Err(FieldError::new(prompt_field, "empty")),
        None => return Err(FieldError::new("question", "missing")),
    };
    let tests = if row.contains_key("input_output") {
        from_input_output(row)?
    } else if row.contains_key("public_test_cases") {
        from_lcb_public(row)?
    } else {
        return Err(FieldError::new(
            "input_output",
            "missing (and no 'public_test_cases')",
        ));
    };
    let difficulty = match row.get("difficulty") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(Difficulty::Label(s.trim().into())),
        _ => None,
    };
    let mut metadata = Row::new();
    keep(
        row,
        &[
            "starter_code",
            "url",
            "platform",
            "contest_id",
            "contest_date",
            "question_title",
            "source",
        ],
        &mut metadata,
    );
    let id = opt_id(row, &["problem_id", "question_id", "task_id", "id"])?
        .unwrap_or_else(|| content_id(source, prompt));
    Ok(Problem {
        id,
        domain: Domain::Code,
        prompt: prompt.to_string(),
        answer: None,
        tests: Some(tests),
        solution: first_solution(row),
        difficulty,
        source: source.to_string(),
        metadata,
    })
}

/// APPS/TACO's `input_output`.
fn from_input_output(row: &Row) -> Result<Tests, FieldError> {
    let io = match &row["input_output"] {
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|e| {
            FieldError::new(
                "input_output",
                format!("not valid JSON inside the string: {e}"),
            )
        })?,
        other => other.clone(),
    };
    let Value::Object(io) = io else {
        return Err(FieldError::new(
            "input_output",
            format!("expected an object, got {}", type_name(&io)),
        ));
    };
    let list = |name: &str| -> Result<&Vec<Value>, FieldError> {
        match io.get(name) {
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(FieldError::new(
                format!("input_output.{name}"),
                format!("expected an array, got {}", type_name(other)),
            )),
            None => Err(FieldError::new(format!("input_output.{name}"), "missing")),
        }
    };
    let (inputs, outputs) = (list("inputs")?, list("outputs")?);
    if inputs.is_empty() {
        return Err(FieldError::new("input_output.inputs", "no test cases"));
    }
    if inputs.len() != outputs.len() {
        return Err(FieldError::new(
            "input_output.outputs",
            format!(
                "{} outputs for {} inputs; they must pair up",
                outputs.len(),
                inputs.len()
            ),
        ));
    }
    match io.get("fn_name") {
        Some(Value::String(f)) if !f.trim().is_empty() => {
            let mut args = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                match input {
                    Value::Array(a) => args.push(a.clone()),
                    other => {
                        return Err(FieldError::new(
                            format!("input_output.inputs[{i}]"),
                            format!(
                                "a call-based case needs an argument list, got {}",
                                type_name(other)
                            ),
                        ));
                    }
                }
            }
            Ok(Tests::Call {
                fn_name: f.trim().to_string(),
                inputs: args,
                outputs: outputs.clone(),
            })
        }
        Some(Value::Null) | None => {
            let mut cases = Vec::with_capacity(inputs.len());
            for (i, (input, output)) in inputs.iter().zip(outputs).enumerate() {
                cases.push(StdioCase {
                    input: stdio_text(input, &format!("input_output.inputs[{i}]"))?,
                    output: stdio_text(output, &format!("input_output.outputs[{i}]"))?,
                });
            }
            Ok(Tests::Stdio {
                cases,
                compare: Compare::Tokens,
            })
        }
        Some(other) => Err(FieldError::new(
            "input_output.fn_name",
            format!("expected a non-empty string, got {}", type_name(other)),
        )),
    }
}

/// A stdio case's text: a string, or (TACO) a list of lines.
fn stdio_text(v: &Value, field: &str) -> Result<String, FieldError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(lines) if lines.iter().all(Value::is_string) => {
            let mut s = String::new();
            for line in lines {
                s.push_str(line.as_str().unwrap_or_default());
                s.push('\n');
            }
            Ok(s)
        }
        other => Err(FieldError::new(
            field,
            format!(
                "expected a string or a list of lines, got {}",
                type_name(other)
            ),
        )),
    }
}

/// LiveCodeBench's `public_test_cases`: stdin cases, or functional ones whose input holds one
/// JSON argument per line.
fn from_lcb_public(row: &Row) -> Result<Tests, FieldError> {
    let field = "public_test_cases";
    let cases: Vec<Value> = match &row[field] {
        Value::String(s) => serde_json::from_str(s).map_err(|e| {
            FieldError::new(field, format!("not a JSON list inside the string: {e}"))
        })?,
        Value::Array(a) => a.clone(),
        other => {
            return Err(FieldError::new(
                field,
                format!("expected a list, got {}", type_name(other)),
            ));
        }
    };
    if cases.is_empty() {
        return Err(FieldError::new(field, "no test cases"));
    }
    let text = |c: &Value, i: usize, k: &str| -> Result<String, FieldError> {
        c.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| FieldError::new(format!("{field}[{i}].{k}"), "missing or not a string"))
    };
    let functional = cases[0].get("testtype").and_then(Value::as_str) == Some("functional");
    if !functional {
        let mut out = Vec::with_capacity(cases.len());
        for (i, c) in cases.iter().enumerate() {
            out.push(StdioCase {
                input: text(c, i, "input")?,
                output: text(c, i, "output")?,
            });
        }
        return Ok(Tests::Stdio {
            cases: out,
            compare: Compare::Tokens,
        });
    }
    let meta: Value = match row.get("metadata") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let fn_name = meta
        .get("func_name")
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new("metadata.func_name", "missing for functional tests"))?;
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for (i, c) in cases.iter().enumerate() {
        let args = text(c, i, "input")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str::<Value>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                FieldError::new(
                    format!("{field}[{i}].input"),
                    format!("an argument line is not JSON: {e}"),
                )
            })?;
        let out = serde_json::from_str::<Value>(&text(c, i, "output")?).map_err(|e| {
            FieldError::new(format!("{field}[{i}].output"), format!("not JSON: {e}"))
        })?;
        inputs.push(args);
        outputs.push(out);
    }
    Ok(Tests::Call {
        fn_name: fn_name.to_string(),
        inputs,
        outputs,
    })
}

/// The first reference solution (`solutions` is a JSON string holding a list in APPS/TACO).
fn first_solution(row: &Row) -> Option<String> {
    let list = match row.get("solutions")? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        v => v.clone(),
    };
    list.as_array()?.first()?.as_str().map(str::to_string)
}

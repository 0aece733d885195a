//! LiveCodeBench, APPS, TACO and DeepCoder: the problem text and its tests.
//!
//! APPS/TACO put the tests in `input_output`, a JSON object or a string holding one, with
//! `inputs`, `outputs` and, for call-based problems, `fn_name`. LiveCodeBench's own release
//! puts them in `public_test_cases` (a JSON string: `[{"input", "output", "testtype"}]`) and
//! `private_test_cases` (the same list as JSON, or `base64(zlib(pickle(json)))`, read by
//! [`super::pickle`], which runs nothing), with the function name in `metadata.func_name`
//! (else the first `def` of `starter_code`). DeepCoder's `tests` column holds one of three
//! shapes by subset: LiveCodeBench's list, PrimeIntellect's list of `{"type": "stdin_stdout" |
//! "function_call", "input", "output", "fn_name"}`, or TACO's object. Stdio tests compare
//! whitespace-separated tokens, as those judges do.

use std::io::Read;

use base64::Engine;
use serde_json::Value;

use super::fields::{Row, content_id, keep, opt_id, opt_str, type_name};
use super::pickle;
use crate::data::problem::{Compare, Difficulty, Domain, FieldError, Problem, StdioCase, Tests};

/// Reads one LiveCodeBench/APPS/TACO row.
pub fn parse(row: &Row, source: &str) -> Result<Problem, FieldError> {
    let prompt_field = ["question", "question_content", "problem"]
        .into_iter()
        .find(|k| row.contains_key(*k))
        .unwrap_or("question");
    let prompt = match opt_str(row, prompt_field)? {
        Some(p) if !p.trim().is_empty() => p,
        Some(_) => return Err(FieldError::new(prompt_field, "empty")),
        None => return Err(FieldError::new("question", "missing")),
    };
    let tests = if row.contains_key("input_output") {
        from_input_output(&row["input_output"], "input_output")?
    } else if row.contains_key("public_test_cases") {
        let public = from_lcb_cases(
            row,
            "public_test_cases",
            json_list(row, "public_test_cases")?,
        )?;
        match row.get("private_test_cases") {
            None | Some(Value::Null) => public,
            Some(Value::String(s)) if s.trim().is_empty() => public,
            Some(v) => {
                let private = from_lcb_cases(row, "private_test_cases", private_cases(v)?)?;
                merge(public, private)?
            }
        }
    } else if row.contains_key("tests") {
        from_deepcoder(row)?
    } else {
        return Err(FieldError::new(
            "input_output",
            "missing (and no 'public_test_cases' or 'tests')",
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

/// APPS/TACO's `input_output` (also DeepCoder's TACO subset, in `tests`).
fn from_input_output(value: &Value, field: &str) -> Result<Tests, FieldError> {
    let io = match value {
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|e| {
            FieldError::new(field, format!("not valid JSON inside the string: {e}"))
        })?,
        other => other.clone(),
    };
    let Value::Object(io) = io else {
        return Err(FieldError::new(
            field,
            format!("expected an object, got {}", type_name(&io)),
        ));
    };
    let list = |name: &str| -> Result<&Vec<Value>, FieldError> {
        match io.get(name) {
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(FieldError::new(
                format!("{field}.{name}"),
                format!("expected an array, got {}", type_name(other)),
            )),
            None => Err(FieldError::new(format!("{field}.{name}"), "missing")),
        }
    };
    let (inputs, outputs) = (list("inputs")?, list("outputs")?);
    if inputs.is_empty() {
        return Err(FieldError::new(format!("{field}.inputs"), "no test cases"));
    }
    if inputs.len() != outputs.len() {
        return Err(FieldError::new(
            format!("{field}.outputs"),
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
                            format!("{field}.inputs[{i}]"),
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
                    input: stdio_text(input, &format!("{field}.inputs[{i}]"))?,
                    output: stdio_text(output, &format!("{field}.outputs[{i}]"))?,
                });
            }
            Ok(Tests::Stdio {
                cases,
                compare: Compare::Tokens,
            })
        }
        Some(other) => Err(FieldError::new(
            format!("{field}.fn_name"),
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

/// A list column: a JSON list, or a string holding one.
fn json_list(row: &Row, field: &str) -> Result<Vec<Value>, FieldError> {
    match &row[field] {
        Value::String(s) => serde_json::from_str(s)
            .map_err(|e| FieldError::new(field, format!("not a JSON list inside the string: {e}"))),
        Value::Array(a) => Ok(a.clone()),
        other => Err(FieldError::new(
            field,
            format!("expected a list, got {}", type_name(other)),
        )),
    }
}

/// Largest decompressed private-test blob read (LiveCodeBench's biggest are tens of MB).
const MAX_PRIVATE_BYTES: u64 = 512 << 20;

/// LiveCodeBench's `private_test_cases`: the JSON list itself, or
/// `base64(zlib(pickle(json string)))` as its release ships them.
fn private_cases(v: &Value) -> Result<Vec<Value>, FieldError> {
    const FIELD: &str = "private_test_cases";
    let s = match v {
        Value::Array(a) => return Ok(a.clone()),
        Value::String(s) => s.trim(),
        other => {
            return Err(FieldError::new(
                FIELD,
                format!(
                    "expected a list or an encoded string, got {}",
                    type_name(other)
                ),
            ));
        }
    };
    let json = if s.starts_with('[') {
        s.to_string()
    } else {
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| FieldError::new(FIELD, format!("not JSON and not base64: {e}")))?;
        let mut pickled = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .take(MAX_PRIVATE_BYTES + 1)
            .read_to_end(&mut pickled)
            .map_err(|e| FieldError::new(FIELD, format!("base64 but not zlib data: {e}")))?;
        if pickled.len() as u64 > MAX_PRIVATE_BYTES {
            return Err(FieldError::new(
                FIELD,
                format!("decompresses past {} MiB", MAX_PRIVATE_BYTES >> 20),
            ));
        }
        pickle::read_string(&pickled).map_err(|e| FieldError::new(FIELD, e.to_string()))?
    };
    serde_json::from_str(&json)
        .map_err(|e| FieldError::new(FIELD, format!("decoded, but not a JSON list: {e}")))
}

/// Public and private tests together: the same kind, and one function name.
fn merge(public: Tests, private: Tests) -> Result<Tests, FieldError> {
    match (public, private) {
        (
            Tests::Stdio { mut cases, compare },
            Tests::Stdio {
                cases: more,
                compare: _,
            },
        ) => {
            cases.extend(more);
            Ok(Tests::Stdio { cases, compare })
        }
        (
            Tests::Call {
                fn_name,
                mut inputs,
                mut outputs,
            },
            Tests::Call {
                fn_name: other,
                inputs: more_in,
                outputs: more_out,
            },
        ) if fn_name == other => {
            inputs.extend(more_in);
            outputs.extend(more_out);
            Ok(Tests::Call {
                fn_name,
                inputs,
                outputs,
            })
        }
        _ => Err(FieldError::new(
            "private_test_cases",
            "a different kind of test than public_test_cases (stdin against functional)",
        )),
    }
}

/// DeepCoder's `tests`: LiveCodeBench's list, PrimeIntellect's list, or TACO's object.
fn from_deepcoder(row: &Row) -> Result<Tests, FieldError> {
    const FIELD: &str = "tests";
    let v = match &row[FIELD] {
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|e| {
            FieldError::new(FIELD, format!("not valid JSON inside the string: {e}"))
        })?,
        other => other.clone(),
    };
    match v {
        Value::Object(_) => from_input_output(&v, FIELD),
        Value::Array(cases) => {
            let first = cases
                .first()
                .ok_or_else(|| FieldError::new(FIELD, "no test cases"))?;
            if first.get("testtype").is_some() {
                from_lcb_cases(row, FIELD, cases)
            } else if first.get("type").is_some() {
                from_prime_intellect(cases)
            } else {
                Err(FieldError::new(
                    format!("{FIELD}[0]"),
                    "neither 'testtype' (LiveCodeBench) nor 'type' (PrimeIntellect)",
                ))
            }
        }
        other => Err(FieldError::new(
            FIELD,
            format!("expected a list or an object, got {}", type_name(&other)),
        )),
    }
}

/// PrimeIntellect's cases: `stdin_stdout` text, or `function_call` with an argument list
/// and the result wrapped in a one-element list.
fn from_prime_intellect(cases: Vec<Value>) -> Result<Tests, FieldError> {
    let kind = |c: &Value| c.get("type").and_then(Value::as_str).map(str::to_string);
    let first = kind(&cases[0]).unwrap_or_default();
    if let Some((i, _)) = cases
        .iter()
        .enumerate()
        .find(|(_, c)| kind(c).as_deref() != Some(&first))
    {
        return Err(FieldError::new(
            format!("tests[{i}].type"),
            format!("mixes kinds: case 0 is {first:?}"),
        ));
    }
    match first.as_str() {
        "stdin_stdout" => {
            let mut out = Vec::with_capacity(cases.len());
            for (i, c) in cases.iter().enumerate() {
                let text = |k: &str| -> Result<String, FieldError> {
                    stdio_text(c.get(k).unwrap_or(&Value::Null), &format!("tests[{i}].{k}"))
                };
                out.push(StdioCase {
                    input: text("input")?,
                    output: text("output")?,
                });
            }
            Ok(Tests::Stdio {
                cases: out,
                compare: Compare::Tokens,
            })
        }
        "function_call" => {
            let fn_name = cases[0]
                .get("fn_name")
                .and_then(Value::as_str)
                .filter(|f| !f.trim().is_empty())
                .ok_or_else(|| {
                    FieldError::new("tests[0].fn_name", "missing for function_call tests")
                })?
                .trim()
                .to_string();
            let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
            for (i, c) in cases.iter().enumerate() {
                match c.get("input") {
                    Some(Value::Array(a)) => inputs.push(a.clone()),
                    other => {
                        return Err(FieldError::new(
                            format!("tests[{i}].input"),
                            format!(
                                "a function_call case needs an argument list, got {}",
                                other.map_or("nothing", type_name)
                            ),
                        ));
                    }
                }
                outputs.push(match c.get("output") {
                    Some(Value::Array(a)) if a.len() == 1 => a[0].clone(),
                    Some(v) => v.clone(),
                    None => return Err(FieldError::new(format!("tests[{i}].output"), "missing")),
                });
            }
            Ok(Tests::Call {
                fn_name,
                inputs,
                outputs,
            })
        }
        other => Err(FieldError::new(
            "tests[0].type",
            format!("unknown kind {other:?} (expected stdin_stdout or function_call)"),
        )),
    }
}

/// LiveCodeBench's cases (public or private): stdin cases, or functional ones whose input
/// holds one JSON argument per line.
fn from_lcb_cases(row: &Row, field: &str, cases: Vec<Value>) -> Result<Tests, FieldError> {
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
    let from_starter = row
        .get("starter_code")
        .and_then(Value::as_str)
        .and_then(first_def);
    let fn_name = meta
        .get("func_name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(from_starter)
        .ok_or_else(|| {
            FieldError::new(
                "metadata.func_name",
                "missing for functional tests (and no `def` in starter_code)",
            )
        })?;
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
        fn_name,
        inputs,
        outputs,
    })
}

/// The name of the first `def name(` in a starter code.
fn first_def(code: &str) -> Option<String> {
    code.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("def ")?;
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty() && rest[name.len()..].trim_start().starts_with('(')).then_some(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_rows(name: &str) -> Vec<Row> {
        let path = format!(
            "{}/../tests/fixtures/data/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn counts(t: &Tests) -> (&'static str, usize) {
        match t {
            Tests::Stdio { cases, .. } => ("stdio", cases.len()),
            Tests::Call { inputs, .. } => ("call", inputs.len()),
            Tests::Function { .. } => ("function", 1),
        }
    }

    #[test]
    fn livecodebench_private_tests_are_decoded_and_joined_to_the_public_ones() {
        let rows = fixture_rows("livecodebench.jsonl");
        let p = parse(&rows[0], "lcb").unwrap();
        let tests = p.tests.unwrap();
        assert_eq!(counts(&tests), ("stdio", 5));
        let Tests::Stdio { cases, .. } = &tests else {
            unreachable!()
        };
        assert_eq!(cases[4].input, "100 200\n");
        assert_eq!(cases[4].output, "300\n");
        let p = parse(&rows[1], "lcb").unwrap();
        match p.tests.unwrap() {
            Tests::Call {
                fn_name,
                inputs,
                outputs,
            } => {
                assert_eq!(fn_name, "double", "from starter_code's def");
                assert_eq!(inputs.len(), 3);
                assert_eq!(outputs[2], serde_json::json!(-8));
            }
            other => panic!("{other:?}"),
        }
        match parse(&rows[2], "lcb").unwrap().tests.unwrap() {
            Tests::Call {
                fn_name, inputs, ..
            } => {
                assert_eq!(fn_name, "add");
                assert_eq!(
                    inputs[2],
                    vec![serde_json::json!([1]), serde_json::json!([2])]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hostile_or_broken_private_blob_is_a_reject_and_nothing_runs() {
        let rows = fixture_rows("livecodebench.jsonl");
        let e = parse(&rows[3], "lcb").unwrap_err();
        assert_eq!(e.field, "private_test_cases");
        assert!(e.reason.contains("GLOBAL"), "{}", e.reason);
        assert!(!std::path::Path::new("/tmp/gradus-pwned").exists());
        for (row, says) in [
            (4, "not JSON and not base64"),
            (5, "different kind"),
            (6, "refused"),
        ] {
            let e = parse(&rows[row], "lcb").unwrap_err();
            assert_eq!(e.field, "private_test_cases", "row {row}");
            assert!(e.reason.contains(says), "row {row}: {}", e.reason);
        }
    }

    #[test]
    fn deepcoder_tests_column_in_each_subset_shape() {
        let rows = fixture_rows("deepcoder.jsonl");
        let got: Vec<(&str, usize)> = rows[..5]
            .iter()
            .map(|r| counts(&parse(r, "deepcoder").unwrap().tests.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdio", 2),
                ("call", 2),
                ("stdio", 2),
                ("call", 2),
                ("call", 2)
            ]
        );
        match parse(&rows[3], "deepcoder").unwrap().tests.unwrap() {
            Tests::Call {
                fn_name, outputs, ..
            } => {
                assert_eq!(fn_name, "is_even");
                assert_eq!(outputs, [serde_json::json!(true), serde_json::json!(false)]);
            }
            other => panic!("{other:?}"),
        }
        let fields: Vec<String> = rows[5..]
            .iter()
            .map(|r| parse(r, "deepcoder").unwrap_err().field)
            .collect();
        assert_eq!(fields, ["tests", "tests[0].fn_name", "tests"]);
    }
}

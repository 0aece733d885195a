//! Jobs: what to run (language, source), what to check it against (tests) and
//! within which limits. The JSON schema is the one `gradus sandbox batch` reads;
//! [`parse_line`] also accepts HumanEval and LiveCodeBench/APPS/TACO rows in
//! their public shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One program to judge.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Caller's id, echoed in the outcome.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub language: Language,
    /// The whole program.
    pub source: String,
    pub tests: Tests,
    /// Per-test limits; missing keys take the sandbox's defaults.
    #[serde(default)]
    pub limits: JobLimits,
}

/// Languages the sandbox can run. Python 3 only, for now; a new language adds
/// a variant and a harness.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    #[serde(alias = "python3")]
    Python,
}

/// The tests a program must pass.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tests {
    /// Run the program once per case with `input` on stdin; compare stdout.
    Stdio {
        cases: Vec<StdioCase>,
        #[serde(default)]
        compare: Compare,
    },
    /// HumanEval: `test` defines `check(candidate)`; the harness runs
    /// `check(<entry_point>)` in a checker process apart from the program.
    ///
    /// The checker takes exactly one object from the program: its entry
    /// point. Every helper the test relies on (HumanEval's `poly`,
    /// `encode_cyclic`, `encode_shift`) comes from `prelude`, problem code run
    /// in the checker's own namespace before `test` (for HumanEval, the
    /// problem's prompt), never from the program, which could redefine them.
    Function {
        entry_point: String,
        test: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prelude: String,
    },
    /// Call-based (LiveCodeBench/APPS/TACO): `fn_name(*inputs[i]) == outputs[i]`.
    Call {
        fn_name: String,
        inputs: Vec<Vec<Value>>,
        outputs: Vec<Value>,
    },
}

impl Tests {
    /// Number of cases, the denominator of partial credit.
    pub fn total(&self) -> usize {
        match self {
            Tests::Stdio { cases, .. } => cases.len(),
            Tests::Function { .. } => 1,
            Tests::Call { inputs, .. } => inputs.len(),
        }
    }
}

/// One stdio case.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StdioCase {
    pub input: String,
    pub output: String,
}

/// How stdout is compared with the expected output.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Compare {
    /// Equal after stripping trailing whitespace on each line and trailing
    /// blank lines; case-sensitive.
    #[default]
    Exact,
    /// Equal as whitespace-separated tokens.
    Tokens,
    /// Tokens; numeric tokens equal within `abs` or `rel` tolerance.
    Float {
        #[serde(default = "default_tol")]
        abs: f64,
        #[serde(default = "default_tol")]
        rel: f64,
    },
}

fn default_tol() -> f64 {
    1e-6
}

/// Limits as a job gives them: every key optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    pub cpu_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub memory_mb: Option<u64>,
    pub output_kb: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_kb: Option<u64>,
    pub open_files: Option<u64>,
    /// Wall clock for the whole job; default `wall_s` × cases + 1 s.
    pub job_wall_s: Option<f64>,
}

/// Resolved limits. Defaults suit competitive programming.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU seconds per test (RLIMIT_CPU, soft; hard one second later). Default 2.
    pub cpu_s: f64,
    /// Wall seconds per test, enforced by the job's init. Default 5.
    pub wall_s: f64,
    /// Memory per job (memory cgroup; address-space rlimit as a backstop). Default 512.
    pub memory_mb: u64,
    /// Stdout + stderr per test. Default 1024.
    pub output_kb: u64,
    /// Processes and threads per job (pids cgroup). Default 32.
    pub processes: u64,
    /// Largest file the program may write (RLIMIT_FSIZE). Default 1024.
    pub file_size_kb: u64,
    /// Open files per process (RLIMIT_NOFILE). Default 64.
    pub open_files: u64,
    /// Stack per process, MiB (RLIMIT_STACK; also the default thread stack). Default 8.
    pub stack_mb: u64,
    /// Cap on a job's whole wall clock, seconds. Default 120.
    pub max_job_wall_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_s: 2.0,
            wall_s: 5.0,
            memory_mb: 512,
            output_kb: 1024,
            processes: 32,
            file_size_kb: 1024,
            open_files: 64,
            stack_mb: 8,
            max_job_wall_s: 120.0,
        }
    }
}

impl Limits {
    /// Apply a job's overrides.
    pub fn with(&self, j: &JobLimits) -> Limits {
        Limits {
            cpu_s: j.cpu_s.unwrap_or(self.cpu_s),
            wall_s: j.wall_s.unwrap_or(self.wall_s),
            memory_mb: j.memory_mb.unwrap_or(self.memory_mb),
            output_kb: j.output_kb.unwrap_or(self.output_kb),
            processes: j.processes.unwrap_or(self.processes),
            file_size_kb: j.file_size_kb.unwrap_or(self.file_size_kb),
            open_files: j.open_files.unwrap_or(self.open_files),
            stack_mb: self.stack_mb,
            max_job_wall_s: j.job_wall_s.unwrap_or(self.max_job_wall_s),
        }
    }

    /// Range problems, each naming the field under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut errs = Vec::new();
        let mut pos = |name: &str, ok: bool, want: &str| {
            if !ok {
                errs.push(format!("{prefix}.{name} must be {want}"));
            }
        };
        pos(
            "cpu_s",
            self.cpu_s > 0.0 && self.cpu_s <= 3600.0,
            "in (0, 3600]",
        );
        pos(
            "wall_s",
            self.wall_s > 0.0 && self.wall_s <= 3600.0,
            "in (0, 3600]",
        );
        pos(
            "memory_mb",
            (16..=1 << 20).contains(&self.memory_mb),
            "in [16, 1048576]",
        );
        pos("output_kb", self.output_kb >= 1, "at least 1");
        pos("processes", self.processes >= 1, "at least 1");
        pos("file_size_kb", self.file_size_kb >= 1, "at least 1");
        pos(
            "open_files",
            (8..=1 << 20).contains(&self.open_files),
            "in [8, 1048576]",
        );
        pos("stack_mb", self.stack_mb >= 1, "at least 1");
        pos("max_job_wall_s", self.max_job_wall_s > 0.0, "positive");
        errs
    }
}

/// Parse one JSONL line: the gradus job schema, or a public dataset row.
/// The error says what is wrong, for an `invalid_job` result.
pub fn parse_line(line: &str) -> Result<Job, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    parse_value(v)
}

/// [`parse_line`] for a row already parsed as JSON.
pub fn parse_value(v: Value) -> Result<Job, String> {
    let obj = v.as_object().ok_or("a job must be a JSON object")?;
    if obj.contains_key("tests") {
        return serde_json::from_value::<Job>(v).map_err(|e| format!("bad job: {e}"));
    }
    let id = ["id", "task_id", "problem_id", "question_id"]
        .iter()
        .find_map(|k| obj.get(*k))
        .map(|v| {
            v.as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default();
    if obj.contains_key("entry_point") && obj.contains_key("test") {
        return humaneval_row(id, obj);
    }
    if let Some(io) = obj.get("input_output") {
        return call_or_stdio_row(id, obj, io);
    }
    Err("unknown row shape: expected a gradus job (with \"tests\"), a HumanEval row \
         (\"prompt\", \"test\", \"entry_point\") or a LiveCodeBench/APPS/TACO row (\"input_output\")"
        .into())
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, k: &str) -> Result<&'a str, String> {
    obj.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("field \"{k}\" must be a string"))
}

fn humaneval_row(id: String, obj: &serde_json::Map<String, Value>) -> Result<Job, String> {
    let prompt = field(obj, "prompt")?;
    let body = match obj.get("completion") {
        Some(_) => field(obj, "completion")?,
        None => field(obj, "canonical_solution").map_err(|_| {
            "a HumanEval row needs \"completion\" or \"canonical_solution\"".to_string()
        })?,
    };
    Ok(Job {
        id,
        language: Language::Python,
        source: format!("{prompt}{body}"),
        tests: Tests::Function {
            entry_point: field(obj, "entry_point")?.into(),
            test: field(obj, "test")?.into(),
            // The prompt defines the helpers the test calls (and the entry
            // point's stub, which the checker replaces by the program's).
            prelude: prompt.into(),
        },
        limits: JobLimits::default(),
    })
}

fn call_or_stdio_row(
    id: String,
    obj: &serde_json::Map<String, Value>,
    io: &Value,
) -> Result<Job, String> {
    let source = match (obj.get("solution"), obj.get("source")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
        _ => return Err("field \"solution\" (or \"source\") must be a string".into()),
    };
    let parsed;
    let io = match io {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("input_output is not JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    let inputs = io
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or("input_output.inputs must be a list")?;
    let outputs = io
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or("input_output.outputs must be a list")?;
    if inputs.len() != outputs.len() {
        return Err(format!(
            "input_output has {} inputs but {} outputs",
            inputs.len(),
            outputs.len()
        ));
    }
    let tests = match io.get("fn_name").and_then(Value::as_str) {
        Some(name) => Tests::Call {
            fn_name: name.into(),
            inputs: inputs
                .iter()
                .enumerate()
                .map(|(i, x)| call_args(i, x))
                .collect::<Result<_, _>>()?,
            outputs: outputs.iter().map(call_output).collect(),
        },
        None => Tests::Stdio {
            cases: inputs
                .iter()
                .zip(outputs)
                .enumerate()
                .map(|(i, (a, b))| {
                    Ok(StdioCase {
                        input: text(i, "inputs", a)?,
                        output: text(i, "outputs", b)?,
                    })
                })
                .collect::<Result<_, String>>()?,
            compare: Compare::Exact,
        },
    };
    Ok(Job {
        id,
        language: Language::Python,
        source,
        tests,
        limits: JobLimits::default(),
    })
}

/// APPS gives a list of arguments; LiveCodeBench a string with one JSON value
/// per line.
fn call_args(i: usize, v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::String(s) => s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| format!("inputs[{i}]: argument line is not JSON: {e}"))
            })
            .collect(),
        _ => Err(format!(
            "inputs[{i}] must be a list of arguments or a string"
        )),
    }
}

fn call_output(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

fn text(i: usize, what: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(lines) => Ok(lines
            .iter()
            .map(|l| {
                l.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| l.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err(format!("{what}[{i}] must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_job_with_defaults() {
        let j = parse_line(r#"{"id":"a","language":"python","source":"print(1)","tests":{"kind":"stdio","cases":[{"input":"","output":"1"}]}}"#).unwrap();
        assert_eq!(
            j.tests,
            Tests::Stdio {
                cases: vec![StdioCase {
                    input: "".into(),
                    output: "1".into()
                }],
                compare: Compare::Exact
            }
        );
        let j = parse_line(r#"{"id":"b","source":"","tests":{"kind":"stdio","cases":[],"compare":{"float":{"abs":1e-3,"rel":0}}},"limits":{"cpu_s":1}}"#).unwrap();
        assert_eq!(j.limits.cpu_s, Some(1.0));
        assert!(
            matches!(j.tests, Tests::Stdio { compare: Compare::Float { abs, .. }, .. } if abs == 1e-3)
        );
    }

    #[test]
    fn unknown_limit_key_is_invalid() {
        let e =
            parse_line(r#"{"source":"","tests":{"kind":"stdio","cases":[]},"limits":{"cpu":1}}"#)
                .unwrap_err();
        assert!(e.contains("cpu"), "{e}");
    }

    #[test]
    fn humaneval_row_uses_prompt_plus_solution() {
        let j = parse_line(r#"{"task_id":"HumanEval/0","prompt":"def f():\n","canonical_solution":"    return 1\n","test":"def check(c): assert c() == 1","entry_point":"f"}"#).unwrap();
        assert_eq!(j.id, "HumanEval/0");
        assert_eq!(j.source, "def f():\n    return 1\n");
        let Tests::Function { prelude, .. } = &j.tests else {
            panic!("a function job")
        };
        assert_eq!(prelude, "def f():\n");
    }

    #[test]
    fn function_prelude_is_optional_and_round_trips() {
        let j = parse_line(r#"{"source":"","tests":{"kind":"function","entry_point":"f","test":"def check(c): pass"}}"#).unwrap();
        assert!(matches!(&j.tests, Tests::Function { prelude, .. } if prelude.is_empty()));
        let j = parse_line(r#"{"source":"","tests":{"kind":"function","entry_point":"f","test":"def check(c): pass","prelude":"def g(): pass"}}"#).unwrap();
        let back = serde_json::to_value(&j.tests).unwrap();
        assert_eq!(back["prelude"], "def g(): pass");
    }

    #[test]
    fn livecodebench_row_parses_argument_lines() {
        let j = parse_line(r#"{"question_id":"7","solution":"x","input_output":{"inputs":["[1,2]\n3"],"outputs":["4"],"fn_name":"f"}}"#).unwrap();
        assert_eq!(
            j.tests,
            Tests::Call {
                fn_name: "f".into(),
                inputs: vec![vec![serde_json::json!([1, 2]), serde_json::json!(3)]],
                outputs: vec![serde_json::json!(4)]
            }
        );
    }

    #[test]
    fn apps_stdio_row_from_string() {
        let j = parse_line(r#"{"problem_id":3,"source":"x","input_output":"{\"inputs\":[\"1\\n\"],\"outputs\":[\"2\\n\"]}"}"#).unwrap();
        assert_eq!(j.id, "3");
        assert_eq!(j.tests.total(), 1);
    }
}

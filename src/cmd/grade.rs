//! `gradus grade`: grade a JSONL file of math cases with the same grader the
//! training run uses (`gradus_math::grade`), write one result per case in
//! input order, and print a summary.
//!
//! Input rows (one JSON object per line; blank lines are skipped):
//! - `{"gold", "response"}` (also `"pred"`, `"completion"` or `"output"` for the response);
//! - `{"answer", "solution"}`: the gold answer and a worked solution to grade;
//! - MATH-style `{"problem", "solution", "response"}`: the gold answer is the
//!   box in `"solution"`.
//!
//! Optional `"id"` is copied to the output; optional `"expected"` (a bool)
//! makes the summary report agreement. A malformed row is reported on stderr
//! as `file:line: problem`, gets an output line with `"reason": "malformed"`,
//! and the command exits with status 2 after grading the rest.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use gradus_math::{Grade, GradeConfig, Reason, grade};
use serde_json::{Map, Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// JSONL file of cases: {"gold","response"}, {"answer","solution"} or MATH-style rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write one JSON result per case, in input order (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Evaluation mode: also accept answers without \boxed{} ("the answer is",
    /// the last math span, the last number). Default is strict, as in training.
    #[arg(long)]
    pub lenient: bool,
    /// TOML grader config: a run config with a [grader] table, or that table alone.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Exit status when some rows were malformed (the rest were still graded).
const EXIT_MALFORMED: u8 = 2;

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = match &a.config {
        Some(path) => load_config(path)?,
        None => GradeConfig::strict(),
    };
    if a.lenient {
        cfg.fallbacks = gradus_math::Fallbacks::all();
    }
    let input =
        File::open(&a.input).with_context(|| format!("cannot open {}", a.input.display()))?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut s = Summary::default();
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", a.input.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let result = match Case::from_line(&line) {
            Ok(case) => {
                let t = Instant::now();
                let g = grade(&case.gold, &case.response, &cfg);
                s.grading += t.elapsed();
                s.record(&g, case.expected);
                result_line(case.id, &g)
            }
            Err(problem) => {
                eprintln!("{}:{}: {problem}", a.input.display(), n + 1);
                s.malformed += 1;
                json!({"id": id_of(&line), "correct": false, "extracted": null, "reason": "malformed", "error": problem})
            }
        };
        serde_json::to_writer(&mut out, &result)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("cannot write results")?;
    s.print(
        &a.input,
        if cfg.fallbacks.any() {
            "lenient"
        } else {
            "strict"
        },
    );
    Ok(if s.malformed > 0 {
        ExitCode::from(EXIT_MALFORMED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads a grader config; errors name the file (and, from toml, the line and field).
fn load_config(path: &Path) -> anyhow::Result<GradeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    // Deserialise from the text (not the parsed table) so errors keep their line numbers.
    let cfg = if table.contains_key("grader") {
        toml::from_str::<WithGrader>(&text).map(|w| w.grader)
    } else {
        toml::from_str::<GradeConfig>(&text)
    }
    .with_context(|| format!("{}: invalid grader config", path.display()))?;
    cfg.validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(cfg)
}

/// A run config: only its `[grader]` table matters here.
#[derive(serde::Deserialize)]
struct WithGrader {
    grader: GradeConfig,
}

/// One row of a cases file (shared with `gradus bench math`).
pub(crate) struct Case {
    pub id: Option<Value>,
    pub gold: String,
    pub response: String,
    pub expected: Option<bool>,
}

impl Case {
    /// Parses one JSONL row; the error says what is wrong with it.
    pub(crate) fn from_line(line: &str) -> Result<Case, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(obj) = v else {
            return Err("expected a JSON object".into());
        };
        let (gold_key, response_key) = keys(&obj)?;
        let expected = match obj.get("expected") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(format!(
                    "field \"expected\" must be true or false, got {other}"
                ));
            }
        };
        Ok(Case {
            id: obj.get("id").cloned(),
            gold: text_field(&obj, gold_key)?,
            response: text_field(&obj, response_key)?,
            expected,
        })
    }
}

/// Which fields hold the gold answer and the response.
fn keys(obj: &Map<String, Value>) -> Result<(&'static str, &'static str), String> {
    let gold = ["gold", "answer"]
        .into_iter()
        .find(|k| obj.contains_key(*k));
    let response = ["response", "pred", "completion", "output"]
        .into_iter()
        .find(|k| obj.contains_key(*k));
    let solution = obj.contains_key("solution");
    match (gold, response) {
        (Some(g), Some(r)) => Ok((g, r)),
        (Some("answer"), None) if solution => Ok(("answer", "solution")),
        (None, Some(r)) if solution => Ok(("solution", r)),
        (None, _) => {
            Err("missing field \"gold\" (or \"answer\", or a MATH-style \"solution\")".into())
        }
        (Some(_), None) => {
            Err("missing field \"response\" (or \"pred\", \"completion\", \"output\")".into())
        }
    }
}

/// A string field; numbers are accepted as their decimal text (`"answer": 42`).
fn text_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("field \"{key}\" must be a string, got {other}")),
        None => Err(format!("missing field \"{key}\"")),
    }
}

/// The id of a row that failed to parse as a case, when it still has one.
fn id_of(line: &str) -> Value {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null)
}

fn result_line(id: Option<Value>, g: &Grade) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    m.insert("correct".into(), Value::Bool(g.correct));
    m.insert(
        "extracted".into(),
        g.extracted.clone().map_or(Value::Null, Value::String),
    );
    m.insert("reason".into(), Value::String(g.reason.as_str().into()));
    Value::Object(m)
}

#[derive(Default)]
struct Summary {
    graded: u64,
    correct: u64,
    malformed: u64,
    reasons: [u64; Reason::ALL.len()],
    labelled: u64,
    agree: u64,
    grading: Duration,
}

impl Summary {
    fn record(&mut self, g: &Grade, expected: Option<bool>) {
        self.graded += 1;
        self.correct += u64::from(g.correct);
        if let Some(i) = Reason::ALL.iter().position(|r| *r == g.reason) {
            self.reasons[i] += 1;
        }
        if let Some(e) = expected {
            self.labelled += 1;
            self.agree += u64::from(e == g.correct);
        }
    }

    fn print(&self, input: &Path, mode: &str) {
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        eprintln!(
            "gradus grade: {} cases from {} ({} malformed), {mode} extraction",
            self.graded,
            input.display(),
            self.malformed
        );
        eprintln!(
            "  correct {} ({:.2}%), incorrect {}",
            self.correct,
            pct(self.correct, self.graded),
            self.graded - self.correct
        );
        let reasons: Vec<String> = Reason::ALL
            .iter()
            .zip(self.reasons)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        eprintln!("  reasons: {}", reasons.join(", "));
        if self.labelled > 0 {
            eprintln!(
                "  agreement with \"expected\": {}/{} ({:.2}%)",
                self.agree,
                self.labelled,
                pct(self.agree, self.labelled)
            );
        }
        let secs = self.grading.as_secs_f64();
        if self.graded > 0 && secs > 0.0 {
            eprintln!(
                "  throughput: {:.0} cases/s on one thread (grading only, {:.3} ms in total)",
                self.graded as f64 / secs,
                secs * 1e3
            );
        }
    }
}

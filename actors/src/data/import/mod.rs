//! Importers: one module per public dataset shape, each turning one JSON row into a
//! [`Problem`] or a [`FieldError`] naming the field at fault.
//!
//! [`Format::detect`] picks the shape of a file from the keys of its first object row (of a
//! parquet file, its schema's columns), so `--format auto` works on files as the datasets
//! publish them.

pub mod deepscaler;
pub mod fields;
pub mod gsm8k;
pub mod humaneval;
pub mod lcb;
pub mod math;
pub mod pickle;

use std::fmt;
use std::str::FromStr;

use fields::Row;

use crate::data::problem::{FieldError, Problem};

/// A dataset row shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gradus's own rows: [`Problem`] serialised as JSON.
    Gradus,
    /// MATH / MATH-500.
    Math,
    /// GSM8K.
    Gsm8k,
    /// DeepScaleR and verl-style math rows.
    DeepScaler,
    /// HumanEval.
    HumanEval,
    /// LiveCodeBench, APPS, TACO and DeepCoder.
    Lcb,
}

/// The `--format` choice: a fixed shape, or detect it per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatChoice {
    /// Detect from the first object row of each file.
    Auto,
    /// Read every row in this shape.
    Fixed(Format),
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 6] = [
        Format::Gradus,
        Format::Math,
        Format::Gsm8k,
        Format::DeepScaler,
        Format::HumanEval,
        Format::Lcb,
    ];

    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Gradus => "gradus",
            Format::Math => "math",
            Format::Gsm8k => "gsm8k",
            Format::DeepScaler => "deepscaler",
            Format::HumanEval => "humaneval",
            Format::Lcb => "lcb",
        }
    }

    /// Guesses a row's shape from its keys; `None` when no shape fits.
    ///
    /// Order matters: the most specific keys are tested first (a gradus row has `domain`, a
    /// HumanEval row `entry_point`, a code row its tests), and DeepScaleR's loose shape last.
    pub fn detect(row: &Row) -> Option<Format> {
        let has = |k: &str| row.contains_key(k);
        if has("domain") && has("id") && has("prompt") {
            Some(Format::Gradus)
        } else if has("entry_point") && has("test") {
            Some(Format::HumanEval)
        } else if has("input_output")
            || has("public_test_cases")
            || (has("tests") && (has("problem") || has("question")))
        {
            Some(Format::Lcb)
        } else if has("problem")
            && has("solution")
            && (has("level") || has("type") || has("subject"))
        {
            Some(Format::Math)
        } else if has("question") && has("answer") {
            Some(Format::Gsm8k)
        } else if (has("problem") || has("prompt"))
            && (has("answer") || has("ground_truth") || has("reward_model"))
        {
            Some(Format::DeepScaler)
        } else {
            None
        }
    }

    /// Reads one row in this shape; `source` names the dataset (the file stem).
    pub fn parse_row(self, row: &Row, source: &str) -> Result<Problem, FieldError> {
        let problem = match self {
            Format::Gradus => parse_gradus(row, source)?,
            Format::Math => math::parse(row, source)?,
            Format::Gsm8k => gsm8k::parse(row, source)?,
            Format::DeepScaler => deepscaler::parse(row, source)?,
            Format::HumanEval => humaneval::parse(row, source)?,
            Format::Lcb => lcb::parse(row, source)?,
        };
        problem.validate()?;
        Ok(problem)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--format` name.
#[derive(Debug, thiserror::Error)]
#[error("unknown format '{0}' (expected auto, gradus, math, gsm8k, deepscaler, humaneval or lcb)")]
pub struct UnknownFormat(pub String);

impl FromStr for FormatChoice {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(FormatChoice::Auto);
        }
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .map(FormatChoice::Fixed)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// A gradus row: the [`Problem`] itself, with serde's complaint turned into a field name.
///
/// `tests` and `metadata` may also come as JSON text (a parquet column cannot hold the tagged
/// `tests` union, so a parquet file stores it as a JSON string). The problem is read from the
/// row in place: each string is copied once, into the problem.
fn parse_gradus(row: &Row, source: &str) -> Result<Problem, FieldError> {
    use serde::Deserialize;
    let mut p = match Problem::deserialize(row) {
        Ok(p) => p,
        Err(e) => return Err(serde_field_error(row, &e.to_string())),
    };
    if p.source.is_empty() {
        p.source = source.to_string();
    }
    Ok(p)
}

/// serde_json's messages name the field in backquotes ("missing field `answer`", "unknown
/// field `dificulty`"); pull it out so the reject names the field like every other one.
fn serde_field_error(row: &Row, msg: &str) -> FieldError {
    let quoted = msg.split('`').nth(1).filter(|f| !f.contains(' '));
    let field = match quoted {
        Some(f) if msg.starts_with("missing field") || msg.starts_with("unknown field") => {
            f.to_string()
        }
        _ => {
            // A type error inside a field: name the first top-level field that fails alone.
            [
                "id",
                "domain",
                "prompt",
                "answer",
                "tests",
                "solution",
                "difficulty",
                "source",
                "metadata",
            ]
            .into_iter()
            .find(|k| row.contains_key(*k) && field_fails(row, k))
            .map_or_else(|| "<row>".to_string(), str::to_string)
        }
    };
    let reason = msg.split(" at line ").next().unwrap_or(msg).to_string();
    FieldError::new(field, reason)
}

fn field_fails(row: &Row, key: &str) -> bool {
    use crate::data::problem::{Difficulty, Domain, tests_or_text};
    use serde::Deserialize;
    let v = &row[key];
    match key {
        "domain" => Domain::deserialize(v).is_err(),
        "tests" => tests_or_text(v).is_err(),
        "difficulty" => Difficulty::deserialize(v).is_err(),
        "metadata" => {
            !(v.is_object()
                || v.as_str()
                    .is_some_and(|t| serde_json::from_str::<Row>(t).is_ok()))
        }
        _ => !v.is_string(),
    }
}

//! The [`Problem`]: one prompt of a training set, with what it takes to grade a response.
//!
//! A math problem carries its gold `answer` (graded by gradus-math); a code problem carries
//! `tests` in the sandbox's job schema, unchanged, so the executor can hand them over as they
//! are. The same type is gradus's own JSONL row (one problem per line, see [`crate::data::import`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Which grader scores a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// Graded by comparing the final answer with `answer`.
    Math,
    /// Graded by running the response's program against `tests` in the sandbox.
    Code,
}

impl Domain {
    /// Both domains, in their canonical order (used for stable per-domain counts).
    pub const ALL: [Domain; 2] = [Domain::Math, Domain::Code];

    /// The lowercase name used in configs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Math => "math",
            Domain::Code => "code",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a problem's difficulty before training.
///
/// A number is a prior pass rate in `[0, 1]` (what `gradus curate` writes); a string is a bucket
/// label given by the dataset (MATH's "Level 3", APPS's "interview", or your own "hard").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Difficulty {
    /// Fraction of sampled responses that were correct, in `[0, 1]`.
    PassRate(f64),
    /// A bucket label, matched against the labels of the configured buckets.
    Label(String),
}

/// One training problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// Unique within a dataset; per-prompt statistics and the sampler key on it, so it must stay
    /// the same when the data is reordered or extended.
    pub id: String,
    /// Which grader scores responses to this problem.
    pub domain: Domain,
    /// The text shown to the policy (before any chat template).
    pub prompt: String,
    /// The gold final answer (math problems only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The tests a response's program must pass (code problems only), in the sandbox's schema.
    /// Also read from JSON text holding them (a parquet column cannot hold the tagged union,
    /// so a parquet file stores it as a JSON string).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tests_or_text"
    )]
    pub tests: Option<Tests>,
    /// A reference solution, used as the target by SFT warm-up stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
    /// Prior difficulty: a bucket label or a pass rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    /// Where the problem came from (dataset name or file stem).
    #[serde(default)]
    pub source: String,
    /// Anything else worth keeping (MATH's subject, APPS's url, the starter code, ...). Also
    /// read from JSON text holding an object.
    #[serde(
        default,
        skip_serializing_if = "serde_json::Map::is_empty",
        deserialize_with = "object_or_text"
    )]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Code tests, mirroring the sandbox's job schema field for field.
///
/// Read as one JSON object whose `kind` names the variant (`stdio`, `function`, `call`),
/// with no other fields than the variant's ([`Tests`]'s `Deserialize` reads the object in one
/// pass, wherever `kind` stands, without buffering it: a code row's tests are most of a
/// dataset's bytes).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Tests {
    /// Run the program once per case with `input` on stdin; compare stdout with `output`.
    Stdio {
        /// The cases, in order.
        cases: Vec<StdioCase>,
        /// How stdout is compared with the expected output.
        #[serde(default)]
        compare: Compare,
    },
    /// HumanEval: append `test` (which defines `check(candidate)`) and call it on `entry_point`.
    Function {
        /// The function under test: the only object the checker takes from the program.
        entry_point: String,
        /// Python source defining `check`.
        test: String,
        /// Problem code run in the checker's namespace before `test`: the helpers the test
        /// relies on (HumanEval's prompt). Never taken from the program, which could
        /// redefine them to make the check trivially true.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prelude: String,
    },
    /// Call `fn_name(*inputs[i])` and compare the result with `outputs[i]` (APPS/TACO/LCB).
    Call {
        /// The function (or `Solution` method) to call.
        fn_name: String,
        /// One argument list per case.
        inputs: Vec<Vec<serde_json::Value>>,
        /// One expected result per case.
        outputs: Vec<serde_json::Value>,
    },
}

/// serde_json's message without its position (" at line 1 column 5"): the reject names the
/// field and row already.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    msg.split(" at line ").next().unwrap_or(&msg).to_string()
}

/// [`Problem::tests`]: null or missing, an object, or JSON text holding one.
pub(crate) fn tests_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Tests>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Tests>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("tests as an object, or as JSON text holding one")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| E::custom(format!("in the JSON text: {}", without_position(&e))))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            serde::de::Visitor::visit_map(TestsVisitor, map).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// [`Problem::metadata`]: an object, or JSON text holding one.
fn object_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(m) => Ok(m),
        serde_json::Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            D::Error::custom(format!(
                "a string that is not a JSON object: {}",
                without_position(&e)
            ))
        }),
        other => Err(D::Error::custom(format!(
            "expected an object (or JSON text holding one), found {}",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "an array",
            }
        ))),
    }
}

/// The fields of every [`Tests`] variant, as read before `kind` is known.
#[derive(Default)]
struct TestsFields {
    cases: Option<Vec<StdioCase>>,
    compare: Option<Compare>,
    entry_point: Option<String>,
    test: Option<String>,
    prelude: Option<String>,
    fn_name: Option<String>,
    inputs: Option<Vec<Vec<serde_json::Value>>>,
    outputs: Option<Vec<serde_json::Value>>,
}

impl<'de> Deserialize<'de> for Tests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TestsVisitor)
    }
}

struct TestsVisitor;

const TESTS_KINDS: &[&str] = &["stdio", "function", "call"];
const TESTS_FIELDS: &[&str] = &[
    "kind",
    "cases",
    "compare",
    "entry_point",
    "test",
    "prelude",
    "fn_name",
    "inputs",
    "outputs",
];

impl<'de> serde::de::Visitor<'de> for TestsVisitor {
    type Value = Tests;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `kind` of stdio, function or call")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tests, A::Error> {
        use serde::de::Error;
        fn once<E: Error, T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }
        let mut kind: Option<String> = None;
        let mut f = TestsFields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "kind" => once(&mut kind, map.next_value()?, "kind")?,
                "cases" => once(&mut f.cases, map.next_value()?, "cases")?,
                "compare" => once(&mut f.compare, map.next_value()?, "compare")?,
                "entry_point" => once(&mut f.entry_point, map.next_value()?, "entry_point")?,
                "test" => once(&mut f.test, map.next_value()?, "test")?,
                "prelude" => once(&mut f.prelude, map.next_value()?, "prelude")?,
                "fn_name" => once(&mut f.fn_name, map.next_value()?, "fn_name")?,
                "inputs" => once(&mut f.inputs, map.next_value()?, "inputs")?,
                "outputs" => once(&mut f.outputs, map.next_value()?, "outputs")?,
                other => return Err(A::Error::unknown_field(other, TESTS_FIELDS)),
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("kind"))?;
        // The case lists grew by doubling; a dataset's worth of them is kept for the run.
        if let Some(v) = f.cases.as_mut() {
            v.shrink_to_fit();
        }
        if let Some(v) = f.inputs.as_mut() {
            v.shrink_to_fit();
        }
        if let Some(v) = f.outputs.as_mut() {
            v.shrink_to_fit();
        }
        // Fields another variant has are unknown to this one, as with `deny_unknown_fields`.
        let stray = |allowed: &'static [&'static str]| -> Result<(), A::Error> {
            let present = [
                ("cases", f.cases.is_some()),
                ("compare", f.compare.is_some()),
                ("entry_point", f.entry_point.is_some()),
                ("test", f.test.is_some()),
                ("prelude", f.prelude.is_some()),
                ("fn_name", f.fn_name.is_some()),
                ("inputs", f.inputs.is_some()),
                ("outputs", f.outputs.is_some()),
            ];
            match present
                .iter()
                .find(|(name, there)| *there && !allowed.contains(name))
            {
                Some((name, _)) => Err(A::Error::unknown_field(name, allowed)),
                None => Ok(()),
            }
        };
        match kind.as_str() {
            "stdio" => {
                stray(&["cases", "compare"])?;
                Ok(Tests::Stdio {
                    cases: f.cases.ok_or_else(|| A::Error::missing_field("cases"))?,
                    compare: f.compare.unwrap_or_default(),
                })
            }
            "function" => {
                stray(&["entry_point", "test", "prelude"])?;
                Ok(Tests::Function {
                    entry_point: f
                        .entry_point
                        .ok_or_else(|| A::Error::missing_field("entry_point"))?,
                    test: f.test.ok_or_else(|| A::Error::missing_field("test"))?,
                    prelude: f.prelude.unwrap_or_default(),
                })
            }
            "call" => {
                stray(&["fn_name", "inputs", "outputs"])?;
                Ok(Tests::Call {
                    fn_name: f
                        .fn_name
                        .ok_or_else(|| A::Error::missing_field("fn_name"))?,
                    inputs: f.inputs.ok_or_else(|| A::Error::missing_field("inputs"))?,
                    outputs: f
                        .outputs
                        .ok_or_else(|| A::Error::missing_field("outputs"))?,
                })
            }
            other => Err(A::Error::unknown_variant(other, TESTS_KINDS)),
        }
    }
}

impl Tests {
    /// How many separate cases the tests hold (a HumanEval `check` counts as one).
    pub fn case_count(&self) -> usize {
        match self {
            Tests::Stdio { cases, .. } => cases.len(),
            Tests::Function { .. } => 1,
            Tests::Call { inputs, .. } => inputs.len(),
        }
    }
}

/// One stdin/stdout case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioCase {
    /// Bytes written to the program's stdin.
    pub input: String,
    /// Expected stdout.
    pub output: String,
}

/// How a stdio case's output is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Byte for byte, after trimming trailing whitespace of the whole output.
    #[default]
    Exact,
    /// Whitespace-separated tokens must be equal (APPS/TACO/LCB judges).
    Tokens,
    /// Tokens equal, or both numbers within `abs` or relative `rel` tolerance.
    Float {
        /// Absolute tolerance.
        abs: f64,
        /// Relative tolerance.
        rel: f64,
    },
}

/// Why a problem is not usable, and which field is at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Dotted path of the field at fault (`tests.cases[2].output`), or `<row>` for the row.
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Problem {
    /// Keeps at most `max` test cases, those with the longest inputs (as rllm caps
    /// DeepCoder's tests: long inputs are the ones that catch slow or partial solutions),
    /// in their original order. Returns how many were dropped. HumanEval-style
    /// `Function` tests are one check and are never cut.
    pub fn cap_tests(&mut self, max: usize) -> usize {
        /// Which cases to keep: the `max` longest (ties keep the earlier case).
        fn longest(lens: &[usize], max: usize) -> Vec<bool> {
            let mut order: Vec<usize> = (0..lens.len()).collect();
            order.sort_by(|&a, &b| lens[b].cmp(&lens[a]).then(a.cmp(&b)));
            let mut keep = vec![false; lens.len()];
            for &i in order.iter().take(max) {
                keep[i] = true;
            }
            keep
        }
        fn retain_by<T>(items: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            items.retain(|_| {
                i += 1;
                keep.get(i - 1).copied().unwrap_or(false)
            });
        }
        match &mut self.tests {
            Some(Tests::Stdio { cases, .. }) if cases.len() > max => {
                let before = cases.len();
                let lens: Vec<usize> = cases.iter().map(|c| c.input.len()).collect();
                retain_by(cases, &longest(&lens, max));
                before - cases.len()
            }
            Some(Tests::Call {
                inputs, outputs, ..
            }) if inputs.len() > max => {
                let before = inputs.len();
                let lens: Vec<usize> = inputs
                    .iter()
                    .map(|args| args.iter().map(|a| a.to_string().len()).sum())
                    .collect();
                let keep = longest(&lens, max);
                retain_by(inputs, &keep);
                retain_by(outputs, &keep);
                before - inputs.len()
            }
            _ => 0,
        }
    }

    /// Checks what serde cannot: the fields each domain needs are there and make sense.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.id.trim().is_empty() {
            return Err(FieldError::new("id", "must not be empty"));
        }
        if self.prompt.trim().is_empty() {
            return Err(FieldError::new("prompt", "must not be empty"));
        }
        match self.domain {
            Domain::Math => {
                match &self.answer {
                    None => {
                        return Err(FieldError::new("answer", "a math problem needs an answer"));
                    }
                    Some(a) if a.trim().is_empty() => {
                        return Err(FieldError::new("answer", "must not be empty"));
                    }
                    Some(_) => {}
                }
                if self.tests.is_some() {
                    return Err(FieldError::new("tests", "a math problem has no tests"));
                }
            }
            Domain::Code => {
                let Some(tests) = &self.tests else {
                    return Err(FieldError::new("tests", "a code problem needs tests"));
                };
                validate_tests(tests)?;
                if self.answer.is_some() {
                    return Err(FieldError::new(
                        "answer",
                        "a code problem is graded by its tests, not an answer",
                    ));
                }
            }
        }
        if let Some(Difficulty::PassRate(p)) = self.difficulty
            && !(0.0..=1.0).contains(&p)
        {
            return Err(FieldError::new(
                "difficulty",
                format!("a pass rate must be in [0, 1], got {p}"),
            ));
        }
        self.model_pass_rates()?;
        Ok(())
    }

    /// The reference models' measured pass rates, `metadata.curate.pass_rates.NAME =
    /// {correct, attempts}` as `gradus curate --model NAME` writes them: model name →
    /// `(correct, attempts)`. Empty when the problem was never curated that way.
    pub fn model_pass_rates(&self) -> Result<BTreeMap<String, (u64, u64)>, FieldError> {
        let mut out = BTreeMap::new();
        let Some(curate) = self.metadata.get("curate") else {
            return Ok(out);
        };
        let Some(rates) = curate.get("pass_rates") else {
            return Ok(out);
        };
        let base = "metadata.curate.pass_rates";
        let rates = rates.as_object().ok_or_else(|| {
            FieldError::new(
                base,
                "must be an object of model name → {correct, attempts}",
            )
        })?;
        for (name, v) in rates {
            let field = format!("{base}.{name}");
            let count = |k: &str| {
                v.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| {
                    FieldError::new(
                        format!("{field}.{k}"),
                        "must be a whole number ≥ 0 ({correct, attempts} counts)",
                    )
                })
            };
            let (correct, attempts) = (count("correct")?, count("attempts")?);
            if attempts == 0 || correct > attempts {
                return Err(FieldError::new(
                    field,
                    format!(
                        "needs 0 ≤ correct ≤ attempts and attempts ≥ 1, got {correct}/{attempts}"
                    ),
                ));
            }
            out.insert(name.clone(), (correct, attempts));
        }
        Ok(out)
    }
}

fn validate_tests(tests: &Tests) -> Result<(), FieldError> {
    match tests {
        Tests::Stdio { cases, compare } => {
            if cases.is_empty() {
                return Err(FieldError::new("tests.cases", "needs at least one case"));
            }
            if let Compare::Float { abs, rel } = compare
                && !(abs.is_finite() && *abs >= 0.0 && rel.is_finite() && *rel >= 0.0)
            {
                return Err(FieldError::new(
                    "tests.compare.float",
                    "tolerances must be finite and ≥ 0",
                ));
            }
        }
        Tests::Function {
            entry_point, test, ..
        } => {
            if entry_point.trim().is_empty() {
                return Err(FieldError::new("tests.entry_point", "must not be empty"));
            }
            if test.trim().is_empty() {
                return Err(FieldError::new("tests.test", "must not be empty"));
            }
        }
        Tests::Call {
            fn_name,
            inputs,
            outputs,
        } => {
            if fn_name.trim().is_empty() {
                return Err(FieldError::new("tests.fn_name", "must not be empty"));
            }
            if inputs.is_empty() {
                return Err(FieldError::new("tests.inputs", "needs at least one case"));
            }
            if inputs.len() != outputs.len() {
                return Err(FieldError::new(
                    "tests.outputs",
                    format!(
                        "{} outputs for {} inputs; they must pair up",
                        outputs.len(),
                        inputs.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tests_serialise_in_the_sandbox_schema() {
        let t = Tests::Stdio {
            cases: vec![StdioCase {
                input: "1 2\n".into(),
                output: "3\n".into(),
            }],
            compare: Compare::Float {
                abs: 1e-6,
                rel: 0.0,
            },
        };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}],
                   "compare": {"float": {"abs": 1e-6, "rel": 0.0}}})
        );
        let t: Tests =
            serde_json::from_value(json!({"kind": "stdio", "cases": [], "compare": "tokens"}))
                .unwrap();
        assert!(matches!(
            t,
            Tests::Stdio {
                compare: Compare::Tokens,
                ..
            }
        ));
        let t: Tests = serde_json::from_value(
            json!({"kind": "call", "fn_name": "f", "inputs": [[1, 2]], "outputs": [3]}),
        )
        .unwrap();
        assert_eq!(t.case_count(), 1);
    }

    #[test]
    fn tests_read_in_one_pass_wherever_kind_stands_and_refuse_other_variants_fields() {
        // `kind` last, as some writers order keys.
        let t: Tests = serde_json::from_str(
            r#"{"cases": [{"input": "1\n", "output": "2\n"}], "compare": "tokens", "kind": "stdio"}"#,
        )
        .unwrap();
        assert!(
            matches!(t, Tests::Stdio { ref cases, compare: Compare::Tokens } if cases.len() == 1)
        );
        let t: Tests = serde_json::from_value(
            json!({"entry_point": "f", "kind": "function", "test": "def check(c): pass"}),
        )
        .unwrap();
        assert!(matches!(t, Tests::Function { ref prelude, .. } if prelude.is_empty()));
        let err =
            |v: serde_json::Value| serde_json::from_value::<Tests>(v).unwrap_err().to_string();
        assert!(
            err(json!({"kind": "stdio", "cases": [], "fn_name": "f"}))
                .starts_with("unknown field `fn_name`")
        );
        assert!(
            err(json!({"kind": "call", "fn_name": "f", "inputs": []}))
                .contains("missing field `outputs`")
        );
        assert!(err(json!({"cases": []})).contains("missing field `kind`"));
        assert!(err(json!({"kind": "shell", "cases": []})).contains("unknown variant `shell`"));
        assert!(
            err(json!({"kind": "stdio", "cases": [], "colour": 1}))
                .starts_with("unknown field `colour`")
        );
        assert!(
            serde_json::from_str::<Tests>(r#"{"kind": "stdio", "cases": [], "cases": []}"#)
                .unwrap_err()
                .to_string()
                .contains("duplicate field `cases`")
        );
        // What is written reads back.
        let t = Tests::Call {
            fn_name: "g".into(),
            inputs: vec![vec![json!(1)]],
            outputs: vec![json!(2)],
        };
        assert_eq!(
            serde_json::from_value::<Tests>(serde_json::to_value(&t).unwrap()).unwrap(),
            t
        );
    }

    #[test]
    fn a_problem_takes_tests_and_metadata_as_json_text_too() {
        let p: Problem = serde_json::from_value(json!({
            "id": "c1", "domain": "code", "prompt": "add",
            "tests": "{\"kind\": \"stdio\", \"cases\": [{\"input\": \"1\", \"output\": \"1\"}]}",
            "metadata": "{\"topic\": \"sums\"}"
        }))
        .unwrap();
        assert_eq!(p.tests.as_ref().map(Tests::case_count), Some(1));
        assert_eq!(p.metadata["topic"], "sums");
        let e = serde_json::from_value::<Problem>(json!({
            "id": "c1", "domain": "code", "prompt": "add", "tests": "{\"kind\": \"stdio\""
        }))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("in the JSON text: EOF while parsing"), "{e}");
        let e = serde_json::from_value::<Problem>(json!({
            "id": "c1", "domain": "code", "prompt": "add", "metadata": "[1]"
        }))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("a string that is not a JSON object"), "{e}");
        let p: Problem = serde_json::from_value(json!({
            "id": "m1", "domain": "math", "prompt": "1+1", "answer": "2", "tests": null
        }))
        .unwrap();
        assert!(p.tests.is_none());
    }

    #[test]
    fn validate_names_the_field() {
        let p: Problem = serde_json::from_value(json!({
            "id": "c1", "domain": "code", "prompt": "add",
            "tests": {"kind": "call", "fn_name": "f", "inputs": [[1], [2]], "outputs": [1]}
        }))
        .unwrap();
        assert_eq!(p.validate().unwrap_err().field, "tests.outputs");
        let p: Problem = serde_json::from_value(json!({
            "id": "m1", "domain": "math", "prompt": "1+1", "answer": "2", "difficulty": 1.5
        }))
        .unwrap();
        assert_eq!(p.validate().unwrap_err().field, "difficulty");
    }

    #[test]
    fn model_pass_rates_are_read_and_checked() {
        let row = |rates: serde_json::Value| -> Problem {
            serde_json::from_value(json!({
                "id": "m1", "domain": "math", "prompt": "1+1", "answer": "2",
                "metadata": {"curate": {"pass_rates": rates}}
            }))
            .unwrap()
        };
        let p = row(
            json!({"a-1.5b": {"correct": 0, "attempts": 8}, "b": {"correct": 3, "attempts": 4}}),
        );
        p.validate().unwrap();
        let r = p.model_pass_rates().unwrap();
        assert_eq!(r["a-1.5b"], (0, 8));
        assert_eq!(r["b"], (3, 4));
        let bad = row(json!({"b": {"correct": 5, "attempts": 4}}));
        assert_eq!(
            bad.validate().unwrap_err().field,
            "metadata.curate.pass_rates.b"
        );
        let bad = row(json!({"b": {"correct": -1, "attempts": 4}}));
        assert_eq!(
            bad.validate().unwrap_err().field,
            "metadata.curate.pass_rates.b.correct"
        );
        let bad = row(json!([1]));
        assert_eq!(
            bad.validate().unwrap_err().field,
            "metadata.curate.pass_rates"
        );
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    fn stdio(inputs: &[&str]) -> Problem {
        Problem {
            id: "p".into(),
            domain: Domain::Code,
            prompt: "x".into(),
            answer: None,
            tests: Some(Tests::Stdio {
                cases: inputs
                    .iter()
                    .map(|i| StdioCase {
                        input: i.to_string(),
                        output: format!("out {i}"),
                    })
                    .collect(),
                compare: Compare::Tokens,
            }),
            solution: None,
            difficulty: None,
            source: "t".into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn the_longest_inputs_are_kept_in_their_order() {
        let mut p = stdio(&["a", "bbbb", "cc", "dddd", "e"]);
        assert_eq!(p.cap_tests(3), 2);
        let Some(Tests::Stdio { cases, .. }) = &p.tests else {
            unreachable!()
        };
        let kept: Vec<&str> = cases.iter().map(|c| c.input.as_str()).collect();
        assert_eq!(kept, ["bbbb", "cc", "dddd"]);
        assert_eq!(cases[1].output, "out cc", "outputs stay with their inputs");
        assert_eq!(p.cap_tests(10), 0);
    }

    #[test]
    fn call_cases_keep_inputs_and_outputs_paired() {
        let mut p = stdio(&[]);
        p.tests = Some(Tests::Call {
            fn_name: "f".into(),
            inputs: vec![
                vec![1.into()],
                vec!["long argument".into()],
                vec![22.into()],
            ],
            outputs: vec![1.into(), 2.into(), 3.into()],
        });
        assert_eq!(p.cap_tests(2), 1);
        let Some(Tests::Call {
            inputs, outputs, ..
        }) = &p.tests
        else {
            unreachable!()
        };
        assert_eq!(
            inputs,
            &[
                vec![serde_json::json!("long argument")],
                vec![serde_json::json!(22)]
            ]
        );
        assert_eq!(outputs, &[serde_json::json!(2), serde_json::json!(3)]);
    }
}

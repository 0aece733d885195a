//! Comparisons done on the Rust side, outside the candidate's interpreter:
//! stdout against expected text, and returned values against expected JSON.

use serde_json::Value;

use crate::job::Compare;
use crate::marshal::PyValue;

/// Does `got` (the program's stdout) match `expected` under `mode`?
pub fn stdout_matches(mode: &Compare, expected: &str, got: &str) -> bool {
    match mode {
        Compare::Exact => normalize(expected) == normalize(got),
        Compare::Tokens => expected.split_whitespace().eq(got.split_whitespace()),
        Compare::Float { abs, rel } => {
            let (e, g): (Vec<_>, Vec<_>) = (
                expected.split_whitespace().collect(),
                got.split_whitespace().collect(),
            );
            e.len() == g.len() && e.iter().zip(&g).all(|(a, b)| token_close(a, b, *abs, *rel))
        }
    }
}

/// Trailing whitespace stripped on each line, trailing blank lines dropped.
fn normalize(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.split('\n').map(|l| l.trim_end()).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

fn token_close(a: &str, b: &str, abs: f64, rel: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let d = (x - y).abs();
            d <= abs || d <= rel * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// Python `==` between a returned value and an expected JSON value (numbers
/// compare by value across bool/int/float; lists and tuples alike). APPS wraps
/// single results in a list, so `[x]` also accepts `x`.
pub fn value_matches(expected: &Value, got: &PyValue) -> bool {
    py_eq(expected, got) || matches!(expected, Value::Array(a) if a.len() == 1 && py_eq(&a[0], got))
}

fn py_eq(e: &Value, g: &PyValue) -> bool {
    match (e, g) {
        (Value::Null, PyValue::None) => true,
        (
            Value::Bool(_) | Value::Number(_),
            PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_),
        ) => num_eq(e, g),
        (Value::String(a), PyValue::Str(b)) => a == b,
        (Value::Array(a), PyValue::List(b) | PyValue::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| py_eq(x, y))
        }
        (Value::Object(m), PyValue::Dict(items)) => {
            m.len() == items.len()
                && items.iter().all(|(k, v)| match k {
                    PyValue::Str(k) => m.get(k).is_some_and(|e| py_eq(e, v)),
                    _ => false,
                })
        }
        _ => false,
    }
}

fn num_eq(e: &Value, g: &PyValue) -> bool {
    let e_int: Option<i128> = match e {
        Value::Bool(b) => Some(*b as i128),
        Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        _ => None,
    };
    let g_int = match g {
        PyValue::Bool(b) => Some(*b as i128),
        PyValue::Int(i) => Some(*i),
        _ => None,
    };
    if let (Some(a), Some(b)) = (e_int, g_int) {
        return a == b;
    }
    let ef = e_int.map(|i| i as f64).or_else(|| e.as_f64());
    let gf = match g {
        PyValue::Float(f) => Some(*f),
        _ => g_int.map(|i| i as f64),
    };
    matches!((ef, gf), (Some(a), Some(b)) if a == b)
}

/// Render an expected JSON value the way Python would print it.
pub fn json_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(json_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k:?}: {}", json_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Number(n) => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_ignores_trailing_space_and_blank_lines_only() {
        assert!(stdout_matches(
            &Compare::Exact,
            "1 2\n3\n",
            "1 2   \n3\n\n\n"
        ));
        assert!(!stdout_matches(&Compare::Exact, "1 2\n3\n", "1  2\n3\n"));
        assert!(!stdout_matches(&Compare::Exact, "Yes", "yes"));
        assert!(!stdout_matches(&Compare::Exact, "1\n2", "\n1\n2"));
    }

    #[test]
    fn tokens_and_floats() {
        assert!(stdout_matches(&Compare::Tokens, "1 2\n3", "1\n2 3"));
        let f = Compare::Float {
            abs: 1e-6,
            rel: 1e-6,
        };
        assert!(stdout_matches(&f, "0.3333333", "0.33333331"));
        assert!(!stdout_matches(&f, "0.3333", "0.3334"));
        assert!(!stdout_matches(&f, "nan", "1"));
    }

    #[test]
    fn values_compare_like_python() {
        assert!(value_matches(&json!(3), &PyValue::Float(3.0)));
        assert!(value_matches(
            &json!([1, [2]]),
            &PyValue::Tuple(vec![PyValue::Int(1), PyValue::List(vec![PyValue::Int(2)])])
        ));
        assert!(value_matches(&json!([true]), &PyValue::Bool(true)));
        assert!(!value_matches(&json!("1"), &PyValue::Int(1)));
        assert!(!value_matches(
            &json!({"a": 1}),
            &PyValue::Dict(vec![(PyValue::Str("a".into()), PyValue::Int(2))])
        ));
    }
}

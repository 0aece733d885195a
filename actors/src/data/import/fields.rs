//! Small readers for JSON row fields that turn a missing or mistyped field into a
//! [`FieldError`] naming it, and the fallback id for rows that carry none.

use serde_json::{Map, Value};

use crate::data::problem::FieldError;

/// A JSON object row.
pub type Row = Map<String, Value>;

/// The required string field `name`.
pub fn req_str<'a>(row: &'a Row, name: &str) -> Result<&'a str, FieldError> {
    match row.get(name) {
        None | Some(Value::Null) => Err(FieldError::new(name, "missing")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(FieldError::new(name, "empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldError::new(
            name,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

/// The optional string field `name` (absent or null is `None`; another type is an error).
pub fn opt_str<'a>(row: &'a Row, name: &str) -> Result<Option<&'a str>, FieldError> {
    match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FieldError::new(
            name,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

/// A field that may hold a string or a number, as text (answers are often bare numbers).
pub fn str_or_number(row: &Row, name: &str) -> Result<Option<String>, FieldError> {
    match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(FieldError::new(name, "empty")),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(FieldError::new(
            name,
            format!("expected a string or number, got {}", type_name(other)),
        )),
    }
}

/// An id taken from the first of `names` present (string or integer), if any.
pub fn opt_id(row: &Row, names: &[&str]) -> Result<Option<String>, FieldError> {
    for name in names {
        match row.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if !s.trim().is_empty() => return Ok(Some(s.trim().into())),
            Some(Value::Number(n)) => return Ok(Some(n.to_string())),
            Some(other) => {
                return Err(FieldError::new(
                    *name,
                    format!(
                        "expected a non-empty string or number, got {}",
                        type_name(other)
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// The id for a row without one: `{source}-{hash of the prompt}`.
///
/// Derived from content rather than the line number so that per-prompt statistics survive
/// reordering or extending the file; two rows with the same prompt get the same id and are
/// reported as duplicates, which is what a curriculum wants (one prompt, one set of statistics).
pub fn content_id(source: &str, prompt: &str) -> String {
    format!("{source}-{:016x}", fnv1a64(prompt.as_bytes()))
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// JSON's name for a value's type, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Copies the listed fields (when present and not null) into `metadata`.
pub fn keep(row: &Row, names: &[&str], metadata: &mut Row) {
    for name in names {
        if let Some(v) = row.get(*name)
            && !v.is_null()
        {
            metadata.insert((*name).to_string(), v.clone());
        }
    }
}

//! The wire format between Rust and the Python harness: CPython's `marshal`.
//!
//! Why marshal and not JSON: it is built into the interpreter (importing `json`
//! costs the cold path ~9 ms), and its type codes are exact type tags. CPython's
//! `marshal.dumps` refuses subclasses (an `int` subclass with a lying `__eq__`
//! cannot be sent), so a value decoded here is the plain value the program
//! returned. Bytes that come from the candidate are untrusted: the decoder
//! bounds depth and sizes and rejects code objects.

use std::fmt::Write as _;

use serde_json::Value;

/// A plain Python value as decoded from marshal bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    /// An integer beyond i128, kept as its sign and base-2^15 digits.
    BigInt(bool, Vec<u16>),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    Set(Vec<PyValue>),
    FrozenSet(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

/// Why marshal bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("marshal data ends early")]
    Eof,
    #[error("unsupported marshal type code {0:#04x}")]
    Type(u8),
    #[error("bad marshal reference {0}")]
    Ref(i64),
    #[error("marshal value nested deeper than {MAX_DEPTH}")]
    Depth,
    #[error("invalid utf-8 in a marshal string")]
    Utf8,
    #[error("marshal length {0} out of range")]
    Len(i64),
}

const MAX_DEPTH: usize = 256;
const FLAG_REF: u8 = 0x80;

impl PyValue {
    /// Look up a string key in a dict value.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(items) => items.iter().find_map(|(k, v)| match k {
                PyValue::Str(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => i64::try_from(*i).ok(),
            PyValue::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Float(f) => Some(*f),
            PyValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            PyValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Python's `repr`, for reports of what a program returned.
    pub fn repr(&self) -> String {
        let mut s = String::new();
        self.write_repr(&mut s);
        s
    }

    fn write_repr(&self, s: &mut String) {
        let seq = |s: &mut String, items: &[PyValue], open: &str, close: &str| {
            s.push_str(open);
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                v.write_repr(s);
            }
            s.push_str(close);
        };
        match self {
            PyValue::None => s.push_str("None"),
            PyValue::Bool(true) => s.push_str("True"),
            PyValue::Bool(false) => s.push_str("False"),
            PyValue::Int(i) => {
                let _ = write!(s, "{i}");
            }
            PyValue::BigInt(neg, d) => {
                let _ = write!(
                    s,
                    "{}<int with {} digits>",
                    if *neg { "-" } else { "" },
                    d.len() * 15 / 3
                );
            }
            PyValue::Float(f) => s.push_str(&float_repr(*f)),
            PyValue::Complex(r, i) => {
                let _ = write!(s, "({}+{}j)", float_repr(*r), float_repr(*i));
            }
            PyValue::Str(v) => {
                let _ = write!(s, "{:?}", v);
            }
            PyValue::Bytes(b) => {
                let _ = write!(s, "b{:?}", String::from_utf8_lossy(b));
            }
            PyValue::List(v) => seq(s, v, "[", "]"),
            PyValue::Tuple(v) if v.len() == 1 => seq(s, v, "(", ",)"),
            PyValue::Tuple(v) => seq(s, v, "(", ")"),
            PyValue::Set(v) | PyValue::FrozenSet(v) => seq(s, v, "{", "}"),
            PyValue::Dict(items) => {
                s.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    k.write_repr(s);
                    s.push_str(": ");
                    v.write_repr(s);
                }
                s.push('}');
            }
        }
    }
}

fn float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Decode one marshal value (any version up to 4, refs included).
pub fn decode(data: &[u8]) -> Result<PyValue, DecodeError> {
    let mut r = Reader {
        data,
        pos: 0,
        refs: Vec::new(),
    };
    r.value(0)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    refs: Vec<Option<PyValue>>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Eof)?;
        let s = self.data.get(self.pos..end).ok_or(DecodeError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.i32()?;
        let left = self.data.len() - self.pos;
        if n < 0 || n as usize > left * 8 + 8 {
            return Err(DecodeError::Len(n as i64));
        }
        Ok(n as usize)
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8)
    }

    fn items(&mut self, n: usize, depth: usize) -> Result<Vec<PyValue>, DecodeError> {
        let mut v = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Depth);
        }
        let code = self.byte()?;
        let flag = code & FLAG_REF != 0;
        let slot = if flag {
            self.refs.push(None);
            Some(self.refs.len() - 1)
        } else {
            None
        };
        let v = match code & !FLAG_REF {
            b'N' => PyValue::None,
            b'F' => PyValue::Bool(false),
            b'T' => PyValue::Bool(true),
            b'i' => PyValue::Int(self.i32()? as i128),
            b'l' => self.long()?,
            b'g' => PyValue::Float(self.f64()?),
            b'y' => PyValue::Complex(self.f64()?, self.f64()?),
            b's' => {
                let n = self.len()?;
                PyValue::Bytes(self.take(n)?.to_vec())
            }
            b'u' | b't' | b'a' | b'A' => {
                let n = self.len()?;
                PyValue::Str(self.string(n)?)
            }
            b'z' | b'Z' => {
                let n = self.byte()? as usize;
                PyValue::Str(self.string(n)?)
            }
            b'(' => {
                let n = self.len()?;
                PyValue::Tuple(self.items(n, depth)?)
            }
            b')' => {
                let n = self.byte()? as usize;
                PyValue::Tuple(self.items(n, depth)?)
            }
            b'[' => {
                let n = self.len()?;
                PyValue::List(self.items(n, depth)?)
            }
            b'<' => {
                let n = self.len()?;
                PyValue::Set(self.items(n, depth)?)
            }
            b'>' => {
                let n = self.len()?;
                PyValue::FrozenSet(self.items(n, depth)?)
            }
            b'{' => {
                let mut items = Vec::new();
                loop {
                    if self.data.get(self.pos) == Some(&b'0') {
                        self.pos += 1;
                        break;
                    }
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                }
                PyValue::Dict(items)
            }
            b'r' => {
                let i = self.i32()? as i64;
                return self
                    .refs
                    .get(i as usize)
                    .and_then(|v| v.clone())
                    .ok_or(DecodeError::Ref(i));
            }
            other => return Err(DecodeError::Type(other)),
        };
        if let Some(i) = slot {
            self.refs[i] = Some(v.clone());
        }
        Ok(v)
    }

    fn long(&mut self) -> Result<PyValue, DecodeError> {
        let n = self.i32()?;
        let neg = n < 0;
        let count = n.unsigned_abs() as usize;
        if count > (self.data.len() - self.pos) / 2 {
            return Err(DecodeError::Len(n as i64));
        }
        let mut digits = Vec::with_capacity(count);
        for _ in 0..count {
            let b = self.take(2)?;
            digits.push(u16::from_le_bytes([b[0], b[1]]));
        }
        if count <= 8 {
            let mut v: i128 = 0;
            for d in digits.iter().rev() {
                v = (v << 15) | *d as i128;
            }
            return Ok(PyValue::Int(if neg { -v } else { v }));
        }
        Ok(PyValue::BigInt(neg, digits))
    }
}

/// Encode a request value for the harness (version-2 style, no refs).
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn none(&mut self) {
        self.buf.push(b'N');
    }

    pub fn bool(&mut self, b: bool) {
        self.buf.push(if b { b'T' } else { b'F' });
    }

    pub fn int(&mut self, v: i128) {
        if let Ok(small) = i32::try_from(v) {
            self.buf.push(b'i');
            self.buf.extend_from_slice(&small.to_le_bytes());
            return;
        }
        let mut digits = Vec::new();
        let mut m = v.unsigned_abs();
        while m > 0 {
            digits.push((m & 0x7fff) as u16);
            m >>= 15;
        }
        let n = digits.len() as i32;
        self.buf.push(b'l');
        self.buf
            .extend_from_slice(&(if v < 0 { -n } else { n }).to_le_bytes());
        for d in digits {
            self.buf.extend_from_slice(&d.to_le_bytes());
        }
    }

    pub fn float(&mut self, f: f64) {
        self.buf.push(b'g');
        self.buf.extend_from_slice(&f.to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.buf.push(b'u');
        self.buf.extend_from_slice(&(s.len() as i32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.push(b's');
        self.buf.extend_from_slice(&(b.len() as i32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    pub fn list(&mut self, n: usize) {
        self.buf.push(b'[');
        self.buf.extend_from_slice(&(n as i32).to_le_bytes());
    }

    pub fn tuple(&mut self, n: usize) {
        self.buf.push(b'(');
        self.buf.extend_from_slice(&(n as i32).to_le_bytes());
    }

    /// Start a dict; write key/value pairs, then call `end_dict`.
    pub fn dict(&mut self) {
        self.buf.push(b'{');
    }

    pub fn end_dict(&mut self) {
        self.buf.push(b'0');
    }

    /// A JSON value as the Python value `json.loads` would give.
    pub fn json(&mut self, v: &Value) {
        match v {
            Value::Null => self.none(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    self.int(u as i128)
                } else {
                    self.float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.list(items.len());
                for x in items {
                    self.json(x);
                }
            }
            Value::Object(map) => {
                self.dict();
                for (k, x) in map {
                    self.str(k);
                    self.json(x);
                }
                self.end_dict();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json_shaped_values() {
        let v: Value =
            serde_json::json!({"a": [1, -2, 3.5, "x", null, true], "big": 12345678901234_i64});
        let mut e = Encoder::default();
        e.json(&v);
        let d = decode(&e.buf).unwrap();
        assert_eq!(d.get("big"), Some(&PyValue::Int(12345678901234)));
        assert_eq!(
            d.get("a"),
            Some(&PyValue::List(vec![
                PyValue::Int(1),
                PyValue::Int(-2),
                PyValue::Float(3.5),
                PyValue::Str("x".into()),
                PyValue::None,
                PyValue::Bool(true)
            ]))
        );
    }

    #[test]
    fn rejects_code_objects_and_truncation() {
        assert_eq!(decode(b"c\x00\x00"), Err(DecodeError::Type(b'c')));
        assert_eq!(decode(b"u\x05\x00\x00\x00ab"), Err(DecodeError::Eof));
        assert!(decode(b"r\x07\x00\x00\x00").is_err());
    }

    #[test]
    fn reads_refs_and_short_forms() {
        // marshal.dumps(("ab", "ab")) in CPython 3.11: a small tuple whose
        // second item refers back to the first.
        let data = b"\xa9\x02\xda\x02abr\x01\x00\x00\x00";
        assert_eq!(
            decode(data).unwrap(),
            PyValue::Tuple(vec![PyValue::Str("ab".into()), PyValue::Str("ab".into())])
        );
    }
}

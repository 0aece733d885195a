//! Chat templates: a checkpoint's own Jinja `chat_template`, rendered as
//! transformers' `apply_chat_template(messages, tokenize=False, ...)` renders
//! it, so the prompt the policy is trained on is byte for byte the one the
//! checkpoint's authors (and vLLM/SGLang serving it) produce.
//!
//! transformers renders with Jinja2 in a sandbox with `trim_blocks` and
//! `lstrip_blocks` on, the `loopcontrols` extension, the functions
//! `raise_exception` and `strftime_now`, a `tojson` filter that is Python's
//! `json.dumps` (non-ASCII kept, `", "`/`": "` separators), the tokenizer's
//! special tokens (`bos_token`, `eos_token`, ...) as variables, and `tools`
//! and `documents` defined as `None` when not given. MiniJinja with Python's
//! string, list and dict methods (`minijinja-contrib`'s pycompat) implements
//! the same language; what differs from Jinja2 by default is aligned here:
//! Python's spelling of `None`, `True`, `False` and floats when printed.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind, State, Value};
use serde_json::Value as Json;

/// A compiled chat template and the special tokens it sees.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, ... as the template sees them.
    specials: Vec<(String, String)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("specials", &self.specials)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`. `specials` are the variables transformers passes
    /// from the tokenizer's special tokens (`("bos_token", "<s>")`, ...);
    /// leave out the ones the tokenizer does not set.
    pub fn new(source: &str, specials: Vec<(String, String)>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| e.to_string())?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(describe)?;
        Ok(Self { env, specials })
    }

    /// Renders `messages` (a JSON array of `{"role", "content", ...}`
    /// objects, passed to the template as they are), with the assistant's
    /// header appended when `add_generation_prompt`.
    pub fn render(&self, messages: &Json, add_generation_prompt: bool) -> Result<String, String> {
        let mut ctx: Vec<(String, Value)> = self
            .specials
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        ctx.push(("messages".into(), to_value(messages)));
        ctx.push((
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        ));
        ctx.push(("tools".into(), Value::from(())));
        ctx.push(("documents".into(), Value::from(())));
        let tmpl = self.env.get_template(NAME).map_err(describe)?;
        tmpl.render(Value::from_pairs(ctx)).map_err(describe)
    }

    /// One user turn, after an optional system turn.
    pub fn render_prompt(&self, system: Option<&str>, user: &str) -> Result<String, String> {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(serde_json::json!({"role": "system", "content": s}));
        }
        messages.push(serde_json::json!({"role": "user", "content": user}));
        self.render(&Json::Array(messages), true)
    }
}

/// A template error with its line, and the message a template raised.
fn describe(e: JinjaError) -> String {
    let mut s = match e.line() {
        Some(line) => format!("chat template line {line}: {}", e.kind()),
        None => format!("chat template: {}", e.kind()),
    };
    if let Some(d) = e.detail() {
        let _ = write!(s, ": {d}");
    }
    s
}

/// A JSON value as the template sees it (objects keep their key order).
pub fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(o) => Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), to_value(v)))),
    }
}

/// Prints values as Jinja2 does under Python: `None`, `True`, `False`, and
/// floats in Python's `repr`.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut State,
    value: &Value,
) -> Result<(), JinjaError> {
    let text = match value.kind() {
        ValueKind::None => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => py_float(f),
            Err(_) => return minijinja::escape_formatter(out, state, value),
        },
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(&text)
        .map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "cannot write"))
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {message}"),
    ))
}

/// Python's `repr` of a float: shortest digits that round-trip, fixed
/// notation for exponents in -4..16, else `1e-05` / `1.5e+16`.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`, the
/// `tojson` filter transformers installs (Jinja2's own would HTML-escape).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump(&value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn dump(
    v: &Value,
    indent: Option<usize>,
    sort: bool,
    level: usize,
    out: &mut String,
) -> Result<(), JinjaError> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                out.push_str(&py_float(f64::try_from(v.clone())?));
            }
        }
        ValueKind::String => quote(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                dump(item, indent, sort, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                match k.as_str() {
                    Some(s) => quote(s, out),
                    None => quote(&k.to_string(), out),
                }
                out.push_str(": ");
                dump(&v.get_item(k)?, indent, sort, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        other => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {other} is not JSON"),
            ));
        }
    }
    Ok(())
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `strftime_now(format)`: the current UTC time in C's `strftime` codes
/// (the ones chat templates use for "Today Date": `%d %b %B %Y %y %m %e %j
/// %H %M %S %A %a %p %I %%`).
fn strftime_now(format: String) -> Result<Value, JinjaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs).map(Value::from)
}

/// `format` applied to the UTC time `secs` after the Unix epoch.
pub fn strftime(format: &str, secs: i64) -> Result<String, JinjaError> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let wd = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(code) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match code {
            'd' => write!(out, "{d:02}"),
            'e' => write!(out, "{d:>2}"),
            'm' => write!(out, "{m:02}"),
            'Y' => write!(out, "{y}"),
            'y' => write!(out, "{:02}", y.rem_euclid(100)),
            'b' => write!(out, "{}", &MONTHS[m as usize - 1][..3]),
            'B' => write!(out, "{}", MONTHS[m as usize - 1]),
            'a' => write!(out, "{}", &DAYS[wd][..3]),
            'A' => write!(out, "{}", DAYS[wd]),
            'j' => write!(out, "{yday:03}"),
            'H' => write!(out, "{hh:02}"),
            'I' => write!(out, "{:02}", (hh + 11) % 12 + 1),
            'p' => write!(out, "{}", if hh < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{mm:02}"),
            'S' => write!(out, "{ss:02}"),
            '%' => write!(out, "%"),
            other => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: %{other} is not supported"),
                ));
            }
        };
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_as_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ [] | tojson }}",
            vec![],
        )
        .unwrap();
        // Through a message's content: the template sees messages only.
        let t2 = ChatTemplate::new("{{ messages[0] | tojson }}", vec![]).unwrap();
        let got = t2
            .render(
                &json!([{"b": [1, 2.5, true, null], "a": "é\n\"<>&"}]),
                false,
            )
            .unwrap();
        assert_eq!(got, r#"{"b": [1, 2.5, true, null], "a": "é\n\"<>&"}"#);
        let got = t.render(&json!([]), false).unwrap();
        assert_eq!(got, "null|null|[]");
        let t3 = ChatTemplate::new("{{ messages[0] | tojson(indent=2) }}", vec![]).unwrap();
        let got = t3.render(&json!([{"a": [1, {}], "b": {}}]), false).unwrap();
        assert_eq!(got, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {}\n}");
    }

    #[test]
    fn python_spellings_methods_and_raised_errors() {
        let t = ChatTemplate::new(
            "{{ none }} {{ true }} {{ 0.5 }} {{ messages[0].content.split('</think>')[-1].strip() }}\
             {% if messages[0].content.startswith('a') %}!{% endif %}{{ bos_token }}",
            vec![("bos_token".into(), "<s>".into())],
        )
        .unwrap();
        let got = t
            .render(
                &json!([{"role": "user", "content": "a <think>x</think>  y "}]),
                false,
            )
            .unwrap();
        assert_eq!(got, "None True 0.5 y!<s>");
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'system' %}{{ raise_exception('roles must alternate') }}{% endif %}",
            vec![],
        )
        .unwrap();
        let e = t.render(&json!([{"role": "user"}]), false).unwrap_err();
        assert!(
            e.contains("roles must alternate") && e.contains("line 1"),
            "{e}"
        );
        let e = ChatTemplate::new("{% if %}", vec![]).unwrap_err();
        assert!(e.contains("chat template line 1"), "{e}");
    }

    #[test]
    fn strftime_formats_utc_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday; 2000-02-29, a Tuesday.
        let t = 1_721_999_109;
        assert_eq!(strftime("%d %b %Y", t).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %e, %y %H:%M:%S %I%p day %j %%", t).unwrap(),
            "Friday July 26, 24 13:05:09 01PM day 208 %"
        );
        assert_eq!(
            strftime("%a %Y-%m-%d", 951_782_400).unwrap(),
            "Tue 2000-02-29"
        );
        assert!(strftime("%Q", t).is_err());
    }
}

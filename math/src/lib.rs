//! gradus-math: strict, exact, bounded-time grading of math answers.
//!
//! [`grade`] takes a gold answer (bare, or a full solution with a `\boxed{}`),
//! a model response and a [`GradeConfig`], and returns a [`Grade`]. It is a
//! pure function: no threads, no signals, no I/O, no global state, so the
//! grader actor can call it inline and a restart changes nothing.
//!
//! # Layout
//! - [`extract`]: finds the answer in a response (last box; optional fallbacks).
//! - [`clean`]: string clean-up (delimiters, spacing, units, unicode).
//! - [`lex`], [`parse`]: tokens and a depth-capped recursive-descent parser
//!   into the typed tree of [`ast`].
//! - [`eval`]: exact rational evaluation and complex evaluation at points,
//!   both on a fuel budget.
//! - [`equiv`]: the equivalence rules between answer forms.
//! - [`config`]: [`GradeConfig`], serde-deserialisable as a `[grader]` table.
//!
//! # Bounded time
//! Input length, nesting depth, list sizes, exponents, integer sizes and the
//! total evaluation work are all capped ([`Limits`]); hitting a cap makes the
//! answer "unparseable" at once. The fuzz example (`cargo run --release -p
//! gradus-math --example fuzz`) checks that no input panics or takes long.

pub mod ast;
pub mod clean;
pub mod config;
pub mod equiv;
pub mod eval;
pub mod extract;
pub mod lex;
pub mod parse;

use serde::Serialize;

pub use config::{ConfigError, Fallbacks, GradeConfig, Limits, PercentMode};
pub use parse::ParseError;

use ast::Expr;
use extract::Source;

/// The verdict on one response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grade {
    /// Whether the extracted answer is equivalent to the gold answer.
    pub correct: bool,
    /// The answer text taken from the response, before clean-up; `None` when
    /// nothing was found.
    pub extracted: Option<String>,
    pub reason: Reason,
}

/// Why a grade came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The answers are equivalent.
    Equivalent,
    /// Both parsed; they differ.
    NotEquivalent,
    /// The response has no answer to extract (strict mode: no `\boxed{}`).
    NoAnswer,
    /// The extracted answer could not be parsed, or hit a cap.
    Unparseable,
    /// The gold answer could not be parsed (and the texts differ).
    GoldUnparseable,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Equivalent,
        Reason::NotEquivalent,
        Reason::NoAnswer,
        Reason::Unparseable,
        Reason::GoldUnparseable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Equivalent => "equivalent",
            Reason::NotEquivalent => "not_equivalent",
            Reason::NoAnswer => "no_answer",
            Reason::Unparseable => "unparseable",
            Reason::GoldUnparseable => "gold_unparseable",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed answer and its whitespace-free cleaned text (for the identical-text
/// shortcut and for plain-text comparison).
#[derive(Debug)]
pub struct Parsed {
    pub expr: Expr,
    pub key: String,
}

/// Cleans and parses one answer string.
pub fn parse_answer(raw: &str, cfg: &GradeConfig) -> Result<Parsed, ParseError> {
    if raw.len() > cfg.limits.max_answer_bytes {
        return Err(ParseError::TooLong(cfg.limits.max_answer_bytes));
    }
    let cleaned = clean::clean(raw);
    let key: String = cleaned.chars().filter(|c| !c.is_whitespace()).collect();
    if key.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(c) = choice(&key) {
        return Ok(Parsed {
            expr: Expr::Choice(c),
            key,
        });
    }
    let text = norm_text(strip_article(&cleaned));
    if matches!(
        text.as_str(),
        "allrealnumbers" | "allreals" | "realnumbers" | "allrealx"
    ) {
        return Ok(Parsed {
            expr: Expr::Reals,
            key,
        });
    }
    match parse::parse(&cleaned, &cfg.limits) {
        Ok(expr) => Ok(Parsed { expr, key }),
        Err(ParseError::TextLike) if !text.is_empty() => Ok(match number_words(&cleaned) {
            // "five", "twenty-one", "one hundred and five": the number.
            Some(v) => Parsed {
                expr: Expr::int(v),
                key,
            },
            None => Parsed {
                expr: Expr::Text(text),
                key,
            },
        }),
        Err(e) => Err(e),
    }
}

/// `A`, `(B)`: a multiple-choice letter.
fn choice(key: &str) -> Option<char> {
    let inner = key
        .strip_prefix('(')
        .and_then(|k| k.strip_suffix(')'))
        .unwrap_or(key);
    let mut c = inner.chars();
    match (c.next(), c.next()) {
        (Some(l @ 'A'..='J'), None) => Some(l),
        _ => None,
    }
}

/// Lower-case letters and digits only: the plain-text comparison form.
fn norm_text(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// An English cardinal written in words (`five`, `twenty-one`, `one hundred
/// and five`, `two thousand twenty`), below a trillion; `None` for any other
/// text, and for a lone "a" or "and".
fn number_words(s: &str) -> Option<i64> {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    let lower = strip_article(s).to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() || words.len() > 12 {
        return None;
    }
    let (mut total, mut group, mut any) = (0i64, 0i64, false);
    for w in words {
        if let Some(v) = ONES.iter().position(|x| *x == w) {
            group += v as i64;
        } else if let Some(t) = TENS.iter().position(|x| *x == w) {
            group += 20 + 10 * t as i64;
        } else if w == "hundred" {
            group = group.max(1) * 100;
        } else if let Some(p) = clean::scale_word(w) {
            total += group.max(1) * 10i64.pow(p);
            group = 0;
        } else if w == "and" {
            continue;
        } else {
            return None;
        }
        any = true;
    }
    any.then_some(total + group)
}

/// The digits of a base-n numeral `D_b` / `D_{b}` (b in 2..=36, not 10).
fn base_digits(key: &str) -> Option<&str> {
    let (digits, base) = key.rsplit_once('_')?;
    let base = base.trim_start_matches('{').trim_end_matches('}');
    let b: u32 = base.parse().ok()?;
    let ok = (2..=36).contains(&b)
        && b != 10
        && !digits.is_empty()
        && digits
            .chars()
            .all(|c| c == '.' || c.to_digit(36).is_some_and(|d| d < b));
    ok.then_some(digits)
}

/// A leading article of a worded answer ("a parabola", "the circle") is not
/// part of it; only when words follow it.
fn strip_article(s: &str) -> &str {
    let t = s.trim_start();
    for a in ["a ", "an ", "the ", "A ", "An ", "The "] {
        if let Some(rest) = t.strip_prefix(a)
            && rest.trim_start().starts_with(|c: char| c.is_alphabetic())
        {
            return rest;
        }
    }
    t
}

/// The key two unparseable answers are compared by: braces that only group
/// one token (`0.0011_{2}` and `0.0011_2`) are left out.
fn loose_key(key: &str) -> String {
    key.chars().filter(|c| *c != '{' && *c != '}').collect()
}

/// What a worded answer is compared by: its normalised words (articles
/// dropped), or the letters and digits of its key.
fn text_of(p: &Parsed) -> String {
    match &p.expr {
        Expr::Text(t) => t.clone(),
        _ => norm_text(&p.key),
    }
}

fn is_textual(e: &Expr) -> bool {
    matches!(e, Expr::Text(_) | Expr::Choice(_))
}

/// Grades `response` against `gold`. Never panics; bounded time for any input.
pub fn grade(gold: &str, response: &str, cfg: &GradeConfig) -> Grade {
    let lim = &cfg.limits;
    let verdict = |correct, extracted: Option<&str>, reason| Grade {
        correct,
        extracted: extracted.map(str::to_string),
        reason,
    };
    if response.len() > lim.max_response_bytes {
        return verdict(false, None, Reason::Unparseable);
    }
    let cands = extract::candidates(response, &cfg.fallbacks);
    let Some(first) = cands.first() else {
        return verdict(false, None, Reason::NoAnswer);
    };
    // The first candidate that parses wins; plain text from a weak fallback
    // (the whole response, the last math span) only when nothing else parses.
    let mut chosen = None;
    let mut text_fallback = None;
    for (raw, src) in &cands {
        if let Ok(p) = parse_answer(raw, cfg) {
            let weak = matches!(
                src,
                Source::WholeResponse | Source::LastNumber | Source::LastLatex
            );
            if weak && is_textual(&p.expr) {
                text_fallback = text_fallback.or(Some((raw.as_str(), p)));
            } else {
                chosen = Some((raw.as_str(), p));
                break;
            }
        }
    }
    let chosen = chosen.or(text_fallback);
    let Some((raw, pred)) = chosen else {
        return verdict(false, Some(first.0.as_str()), Reason::Unparseable);
    };
    if gold.len() > lim.max_response_bytes {
        return verdict(false, Some(raw), Reason::GoldUnparseable);
    }
    let mut gold_parsed = None;
    for (g_raw, src) in extract::gold_candidates(gold) {
        if let Ok(g) = parse_answer(&g_raw, cfg) {
            // Prose is a gold answer only when short ("Evelyn"), not a whole solution.
            if !(src == Source::WholeResponse && is_textual(&g.expr) && g_raw.len() > 40) {
                gold_parsed = Some((g, g_raw));
                break;
            }
        }
    }
    let Some((gold, gold_raw)) = gold_parsed else {
        // A gold answer the parser cannot read (a notation it does not know)
        // still equals a response that writes it the same way.
        let same = extract::gold_candidates(gold)
            .into_iter()
            .any(|(g_raw, _)| {
                let g: String = clean::clean(&g_raw)
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                !g.is_empty() && loose_key(&g) == loose_key(&pred.key)
            });
        if same {
            return verdict(true, Some(raw), Reason::Equivalent);
        }
        return verdict(false, Some(raw), Reason::GoldUnparseable);
    };
    // Both carry a unit this knows, and they differ: `5 m` is not `5 m^2`.
    if let (Some(gu), Some(pu)) = (clean::physical_unit(&gold_raw), clean::physical_unit(raw))
        && gu != pu
    {
        return verdict(false, Some(raw), Reason::NotEquivalent);
    }
    // `(C) 7` for gold `C`: the letter is the answer, the value its label.
    if let Expr::Choice(c) = gold.expr
        && pred.key.starts_with(&format!("({c})"))
        && pred.key.len() > 3
    {
        return verdict(true, Some(raw), Reason::Equivalent);
    }
    // `52` for gold `52_8`: the digits asked for, the base left implicit.
    if let Some(digits) = base_digits(&gold.key)
        && pred.key == digits
    {
        return verdict(true, Some(raw), Reason::Equivalent);
    }
    let correct = if gold.key == pred.key {
        Ok(true)
    } else if is_textual(&gold.expr) || is_textual(&pred.expr) {
        Ok(text_of(&gold) == text_of(&pred))
    } else {
        equiv::Cmp::new(cfg).eq(&gold.expr, &pred.expr)
    };
    match correct {
        Ok(true) => verdict(true, Some(raw), Reason::Equivalent),
        Ok(false) => verdict(false, Some(raw), Reason::NotEquivalent),
        Err(eval::Limit) => verdict(false, Some(raw), Reason::Unparseable),
    }
}

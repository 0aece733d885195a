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
#[derive(Clone, Debug)]
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
    // `\mathrm{E}`, `\mathbf{(B)}`: a letter set upright or bold.
    let key = ["\\mathrm{", "\\mathbf{", "\\textsf{"]
        .iter()
        .find_map(|w| key.strip_prefix(w).and_then(|k| k.strip_suffix('}')))
        .unwrap_or(key);
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

/// `1000,99`, `1,22`, `0,111` (a cleaned key) with the comma read as a decimal
/// point: one comma between digits, and not a thousands group (three digits
/// after a leading digit other than 0).
fn decimal_comma(key: &str) -> Option<String> {
    let body = key.strip_prefix('-').unwrap_or(key);
    let (int, frac) = body.split_once(',')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || (frac.len() == 3 && !int.starts_with('0')) {
        return None;
    }
    Some(key.replacen(',', ".", 1))
}

/// The identity (`\mathbf{I}`, `I_n`) or zero matrix (`\mathbf{0}`,
/// `\mathbf{O}`), with a sign, as the `n`-by-`n` matrix it names; a size
/// written as a subscript must be `n`.
fn named_matrix(key: &str, n: usize) -> Option<Expr> {
    let (neg, k) = match key.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, key),
    };
    let (name, sub) = match k.split_once('_') {
        Some((a, b)) => (a, Some(b.trim_start_matches('{').trim_end_matches('}'))),
        None => (k, None),
    };
    if sub.is_some_and(|s| s.parse::<usize>().ok() != Some(n)) {
        return None;
    }
    let one = match name {
        "\\mathbf{I}" | "\\mathbb{I}" | "\\mathrm{I}" => true,
        "I" if sub.is_some() => true,
        "\\mathbf{0}" | "\\mathbf{O}" | "\\mathbb{0}" => false,
        _ => return None,
    };
    if n == 0 || n > 16 {
        return None;
    }
    let diag = Expr::int(if !one {
        0
    } else if neg {
        -1
    } else {
        1
    });
    Some(Expr::Matrix(
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| if i == j { diag.clone() } else { Expr::int(0) })
                    .collect()
            })
            .collect(),
    ))
}

/// The answer up to its first top-level `\approx`, when something precedes it.
fn before_approx(raw: &str) -> Option<&str> {
    let at = raw.find("\\approx")?;
    let head = &raw[..at];
    let depth = head.bytes().fold(0i32, |d, c| match c {
        b'{' => d + 1,
        b'}' => d - 1,
        _ => d,
    });
    let t = head.trim().trim_end_matches('$').trim();
    (depth == 0 && !t.is_empty()).then_some(t)
}

/// `(C) 27`: the value after a multiple-choice label, for a gold that is
/// the value rather than the letter.
fn after_choice_label(raw: &str) -> Option<String> {
    let c = clean::clean(raw);
    let t = c.trim_start();
    let b = t.as_bytes();
    if b.len() > 3 && b[0] == b'(' && (b'A'..=b'J').contains(&b[1]) && b[2] == b')' {
        let rest = t[3..].trim();
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    None
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
    let t = match &p.expr {
        Expr::Text(t) => t.clone(),
        _ => norm_text(&p.key),
    };
    full_name(&t).map_or(t, str::to_string)
}

/// Day and month names written short (`Tues`, `Sept`): the full name.
fn full_name(t: &str) -> Option<&'static str> {
    const SHORT: &[(&[&str], &str)] = &[
        (&["mon"], "monday"),
        (&["tue", "tues"], "tuesday"),
        (&["wed"], "wednesday"),
        (&["thu", "thur", "thurs"], "thursday"),
        (&["fri"], "friday"),
        (&["sat"], "saturday"),
        (&["sun"], "sunday"),
        (&["jan"], "january"),
        (&["feb"], "february"),
        (&["mar"], "march"),
        (&["apr"], "april"),
        (&["jun"], "june"),
        (&["jul"], "july"),
        (&["aug"], "august"),
        (&["sep", "sept"], "september"),
        (&["oct"], "october"),
        (&["nov"], "november"),
        (&["dec"], "december"),
    ];
    SHORT
        .iter()
        .find(|(short, _)| short.contains(&t))
        .map(|(_, full)| *full)
}

fn is_textual(e: &Expr) -> bool {
    matches!(e, Expr::Text(_) | Expr::Choice(_))
}

/// How many parts an answer has: a list's items, else one.
fn parts_of(e: &Expr) -> usize {
    match e {
        Expr::List(v) => v.len(),
        _ => 1,
    }
}

/// Whether two parsed answers are the same answer.
fn same_answer(gold: &Parsed, pred: &Parsed, cfg: &GradeConfig) -> Result<bool, eval::Limit> {
    if gold.key == pred.key {
        Ok(true)
    } else if let (Expr::Choice(a), Expr::Choice(b)) = (&gold.expr, &pred.expr) {
        Ok(a == b)
    } else if is_textual(&gold.expr) || is_textual(&pred.expr) {
        Ok(text_of(gold) == text_of(pred))
    } else {
        equiv::Cmp::new(cfg).eq(&gold.expr, &pred.expr)
    }
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
    // A response escaped twice (`\\\\boxed{5}`, as JSON inside JSON leaves it).
    let unescaped;
    let response = if response.contains("\\\\boxed") || response.contains("\\\\fbox") {
        unescaped = clean::collapse_double_escapes(response);
        unescaped.as_str()
    } else {
        response
    };
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
                text_fallback = text_fallback.or(Some((raw.as_str(), p, *src)));
            } else {
                chosen = Some((raw.as_str(), p, *src));
                break;
            }
        }
    }
    let chosen = chosen.or(text_fallback);
    let chosen_src = chosen.as_ref().map(|c| c.2);
    let Some((raw, pred, _)) = chosen else {
        return verdict(false, Some(first.0.as_str()), Reason::Unparseable);
    };
    // A box taken back after it ("so it should be $3158$"): training has no
    // committed answer left; evaluation reads the replacement.
    let retracted = (chosen_src == Some(Source::Boxed))
        .then(|| extract::retraction(response))
        .flatten()
        .and_then(|v| parse_answer(&v, cfg).ok().map(|p| (v, p)))
        .filter(|(_, p)| !matches!(same_answer(&pred, p, cfg), Ok(true)));
    let replaced;
    let (raw, pred) = match retracted {
        Some(_) if !cfg.fallbacks.answer_phrase => {
            return verdict(false, Some(raw), Reason::NotEquivalent);
        }
        Some((v, p)) => {
            replaced = v;
            (replaced.as_str(), p)
        }
        None => (raw, pred),
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
    let mut correct = same_answer(&gold, &pred, cfg);
    // `-\mathbf{I}`, `\mathbf{0}`, `I_3` for a square gold matrix: that
    // multiple of the identity at the gold's size.
    if matches!(correct, Ok(false))
        && let Expr::Matrix(m) = &gold.expr
        && let Some(named) = named_matrix(&pred.key, m.len())
        && m.iter().all(|r| r.len() == m.len())
        && matches!(equiv::Cmp::new(cfg).eq(&gold.expr, &named), Ok(true))
    {
        correct = Ok(true);
    }
    // `x = \frac13 \approx 0.33`: the exact value before the approximation.
    if matches!(correct, Ok(false))
        && let Some(exact) = before_approx(raw)
        && let Ok(p) = parse_answer(exact, cfg)
        && matches!(same_answer(&gold, &p, cfg), Ok(true))
    {
        correct = Ok(true);
    }
    // `1000,99` against `1000.99`: a decimal comma, read as one when the
    // other side is a decimal (a comma before 3 digits groups thousands).
    if matches!(correct, Ok(false)) {
        let is_decimal = |e: &Expr| equiv::bare_decimal(e).is_some();
        let swapped = match (decimal_comma(&gold.key), decimal_comma(&pred.key)) {
            (Some(g), None) if is_decimal(&pred.expr) => {
                parse_answer(&g, cfg).map(|g| (g, pred.clone()))
            }
            (None, Some(p)) if is_decimal(&gold.expr) => {
                parse_answer(&p, cfg).map(|p| (gold.clone(), p))
            }
            _ => Err(ParseError::Empty),
        };
        if let Ok((g, p)) = swapped
            && matches!(same_answer(&g, &p, cfg), Ok(true))
        {
            correct = Ok(true);
        }
    }
    if matches!(correct, Ok(false))
        && !matches!(gold.expr, Expr::Choice(_))
        && let Some(value) = after_choice_label(raw)
        && let Ok(p) = parse_answer(&value, cfg)
        && matches!(same_answer(&gold, &p, cfg), Ok(true))
    {
        correct = Ok(true);
    }
    // A gold of k parts, boxed one part at a time with words between the
    // boxes: the last k boxes together are the answer.
    if matches!(correct, Ok(false))
        && chosen_src == Some(Source::Boxed)
        && let Expr::List(parts) = &gold.expr
        && parts_of(&pred.expr) < parts.len()
        && let Some(joined) = extract::last_boxes(response, parts.len())
        && let Ok(p) = parse_answer(&joined, cfg)
        && let Expr::List(pp) = &p.expr
        && pp.len() == parts.len()
    {
        // In the order the response gives them: `\boxed{4}` goats and
        // `\boxed{7}` helicopters is not gold `7, 4`.
        let tuple = |v: &[Expr]| Expr::Tuple {
            items: v.to_vec(),
            paren: false,
        };
        if matches!(equiv::Cmp::new(cfg).eq(&tuple(parts), &tuple(pp)), Ok(true)) {
            correct = Ok(true);
        }
    }
    match correct {
        Ok(true) => verdict(true, Some(raw), Reason::Equivalent),
        Ok(false) => verdict(false, Some(raw), Reason::NotEquivalent),
        Err(eval::Limit) => verdict(false, Some(raw), Reason::Unparseable),
    }
}

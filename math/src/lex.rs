//! Tokens of a cleaned answer string.
//!
//! Numbers become exact rationals here (decimals, `3e5`, `0.\overline{3}`,
//! thousands separators outside brackets), letter runs become known words or
//! single-letter variables, and `\name` becomes a command token.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

use crate::clean::MATH_WORDS;
use crate::parse::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Num {
        value: BigRational,
        decimal: bool,
    },
    Letter(char),
    /// A multi-letter run: a known word (`sqrt`, `and`) or plain text.
    Word(String),
    /// `\name`.
    Cmd(String),
    Sym(char),
    /// `\\`, the matrix row separator.
    RowSep,
    /// `\{` and `\}`.
    SetOpen,
    SetClose,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub space_before: bool,
}

/// Largest power of ten a literal may carry (`1e400` is fine, `1e99999` is not).
const MAX_LITERAL_EXP10: i64 = 4096;

pub fn lex(s: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::with_capacity(chars.len() / 2 + 1);
    let mut i = 0;
    let mut depth: i32 = 0;
    let mut space = false;
    // `(1,000, 2)`: where list items are set apart by ", ", a comma with no
    // space before three digits groups thousands, inside brackets too.
    let spaced_lists = s.contains(", ");
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let (tok, next) = number(&chars, i, depth == 0, spaced_lists)?;
            i = next;
            tok
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            if run.len() >= 3 || MATH_WORDS.contains(&run.as_str()) {
                Tok::Word(run)
            } else {
                i = start + 1;
                Tok::Letter(c)
            }
        } else if c == '\\' {
            let next = chars.get(i + 1).copied();
            match next {
                Some('\\') => {
                    i += 2;
                    Tok::RowSep
                }
                Some('{') => {
                    i += 2;
                    depth += 1;
                    Tok::SetOpen
                }
                Some('}') => {
                    i += 2;
                    depth -= 1;
                    Tok::SetClose
                }
                Some(n) if n.is_ascii_alphabetic() => {
                    let start = i + 1;
                    i = start;
                    while i < chars.len() && chars[i].is_ascii_alphabetic() {
                        i += 1;
                    }
                    Tok::Cmd(chars[start..i].iter().collect())
                }
                Some('|') => {
                    i += 2;
                    Tok::Sym('|')
                }
                Some(_) => {
                    i += 2;
                    continue;
                }
                None => {
                    i += 1;
                    continue;
                }
            }
        } else {
            let next = chars.get(i + 1).copied();
            i += 1;
            match (c, next) {
                ('<', Some('=')) => {
                    i += 1;
                    Tok::Cmd("le".into())
                }
                ('>', Some('=')) => {
                    i += 1;
                    Tok::Cmd("ge".into())
                }
                ('!', Some('=')) => {
                    i += 1;
                    Tok::Cmd("ne".into())
                }
                ('=', Some('=')) => {
                    i += 1;
                    Tok::Sym('=')
                }
                ('*', Some('*')) => {
                    i += 1;
                    Tok::Sym('^')
                }
                _ => {
                    // Group braces (`\frac{1}{29,322,216}`) never hold a list.
                    match c {
                        '(' | '[' => depth += 1,
                        ')' | ']' => depth -= 1,
                        _ => {}
                    }
                    if c.is_alphabetic() {
                        Tok::Letter(c)
                    } else {
                        Tok::Sym(c)
                    }
                }
            }
        };
        out.push(Token {
            tok,
            space_before: space,
        });
        space = false;
    }
    Ok(out)
}

fn digits(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Whether exactly three digits start at `i` and no digit follows them.
fn group3(chars: &[char], i: usize) -> bool {
    digits(chars, i) == i + 3
}

fn number(
    chars: &[char],
    start: usize,
    top: bool,
    spaced_lists: bool,
) -> Result<(Tok, usize), ParseError> {
    let mut int = String::new();
    let mut i = digits(chars, start);
    int.extend(&chars[start..i]);
    // Thousands separators: "7,425,000" and "1 000", outside brackets; inside
    // them only commas, where the list itself is spaced (`(1,000, 2)`).
    if (top || spaced_lists) && (1..=3).contains(&int.len()) && int != "0" {
        let sep_ok = |sep: char, i: usize| chars.get(i) == Some(&sep) && group3(chars, i + 1);
        let seps: &[char] = if top { &[',', ' '] } else { &[','] };
        for &sep in seps {
            if sep_ok(sep, i) {
                let after_groups = |mut j: usize| {
                    while sep_ok(sep, j) {
                        j += 4;
                    }
                    j
                };
                let end = after_groups(i);
                let blocked = sep == ' ' && matches!(chars.get(end), Some('/' | '.'));
                if !blocked {
                    while i < end {
                        int.extend(&chars[i + 1..i + 4]);
                        i += 4;
                    }
                }
                break;
            }
        }
    }
    let mut frac = String::new();
    let mut repeat = String::new();
    let mut decimal = false;
    if chars.get(i) == Some(&'.') {
        let after = &chars[i + 1..];
        if after.first().is_some_and(|d| d.is_ascii_digit()) {
            let end = digits(chars, i + 1);
            frac.extend(&chars[i + 1..end]);
            i = end;
            decimal = true;
        }
        let ov: Vec<char> = "\\overline{".chars().collect();
        let at = if decimal { i } else { i + 1 };
        if chars[at.min(chars.len())..].starts_with(&ov) {
            let d0 = at + ov.len();
            let d1 = digits(chars, d0);
            if d1 > d0 && chars.get(d1) == Some(&'}') {
                repeat.extend(&chars[d0..d1]);
                i = d1 + 1;
                decimal = false; // a repeating decimal is exact
            }
        } else if !decimal
            && at == i + 1
            && !after.first().is_some_and(|c| c.is_ascii_alphanumeric())
        {
            i += 1; // "4." is 4
        }
    }
    let mut exp10: i64 = 0;
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        let neg = chars.get(j) == Some(&'-');
        if matches!(chars.get(j), Some('-' | '+')) {
            j += 1;
        }
        let end = digits(chars, j);
        if end > j && end - j <= 6 && !chars.get(end).is_some_and(|c| c.is_ascii_alphabetic()) {
            let e: i64 = chars[j..end]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(i64::MAX);
            exp10 = if neg { -e } else { e };
            i = end;
        }
    }
    if exp10.abs() > MAX_LITERAL_EXP10 {
        return Err(ParseError::TooLarge);
    }
    let ten = BigInt::from(10u32);
    let all: String = format!("{int}{frac}");
    let mantissa: BigInt = if all.is_empty() {
        BigInt::zero()
    } else {
        all.parse().map_err(|_| ParseError::TooLarge)?
    };
    let mut value = BigRational::new(mantissa, num_traits::pow(ten.clone(), frac.len()));
    if !repeat.is_empty() {
        let r: BigInt = repeat.parse().map_err(|_| ParseError::TooLarge)?;
        let den = num_traits::pow(ten.clone(), frac.len())
            * (num_traits::pow(ten.clone(), repeat.len()) - BigInt::one());
        value += BigRational::new(r, den);
    }
    if exp10 != 0 {
        let p = BigRational::from_integer(num_traits::pow(ten, exp10.unsigned_abs() as usize));
        value = if exp10 > 0 { value * p } else { value / p };
        decimal = true;
    }
    Ok((Tok::Num { value, decimal }, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> BigRational {
        match &lex(s).unwrap()[0].tok {
            Tok::Num { value, .. } => value.clone(),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn numbers_are_exact() {
        let q = |a: i64, b: i64| BigRational::new(a.into(), b.into());
        assert_eq!(num("0.25"), q(1, 4));
        assert_eq!(num(".4"), q(2, 5));
        assert_eq!(num("7,425,000"), q(7_425_000, 1));
        assert_eq!(num("1 000"), q(1000, 1));
        assert_eq!(num("3e5"), q(300_000, 1));
        assert_eq!(num("1e-3"), q(1, 1000));
        assert_eq!(num("0.\\overline{3}"), q(1, 3));
        assert_eq!(num("0.1\\overline{6}"), q(1, 6));
        assert_eq!(lex("(1,000)").unwrap().len(), 5);
    }
}

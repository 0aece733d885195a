//! Recursive-descent parser from a cleaned answer string to an [`Expr`].
//!
//! Precedence, loosest first: answer lists (`;` then `,`/"and"/"or"),
//! relations (`=`, `<`, `\le`, `\in`, chained), ratios (`1:2`), unions
//! (`\cup`), sums (`+`, `-`, `\pm`), products (`\cdot`, `\times`, `/`,
//! juxtaposition, mixed numbers), signs, powers, postfix (`!`, `%`, `_base`),
//! primaries. Every recursion counts against `max_depth` and every list
//! against `max_items`, so no input can recurse without bound.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};

use crate::ast::{Constant, Expr, Func, RelOp};
use crate::config::Limits;
use crate::lex::{Tok, Token, lex};

mod commands;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("answer longer than {0} bytes")]
    TooLong(usize),
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} items")]
    TooManyItems(usize),
    #[error("number too large")]
    TooLarge,
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("plain text")]
    TextLike,
    #[error("empty answer")]
    Empty,
}

type R<T> = Result<T, ParseError>;

/// Parses a cleaned answer.
pub fn parse(s: &str, lim: &Limits) -> R<Expr> {
    if s.len() > lim.max_answer_bytes {
        return Err(ParseError::TooLong(lim.max_answer_bytes));
    }
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        lim,
    };
    let e = p.top()?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Unexpected(format!("{:?}", p.toks[p.pos].tok)));
    }
    Ok(e)
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    lim: &'a Limits,
}

fn cmd_is(t: Option<&Tok>, names: &[&str]) -> bool {
    matches!(t, Some(Tok::Cmd(c)) if names.contains(&c.as_str()))
}

const FUNCS: &[(&str, Func)] = &[
    ("sin", Func::Sin),
    ("cos", Func::Cos),
    ("tan", Func::Tan),
    ("sec", Func::Sec),
    ("csc", Func::Csc),
    ("cot", Func::Cot),
    ("arcsin", Func::Asin),
    ("arccos", Func::Acos),
    ("arctan", Func::Atan),
    ("sinh", Func::Sinh),
    ("cosh", Func::Cosh),
    ("tanh", Func::Tanh),
    ("exp", Func::Exp),
    ("ln", Func::Ln),
];

fn func_of(name: &str) -> Option<Func> {
    FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> R<()> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(Tok::Word(w)) if !is_known_word(w) => ParseError::TextLike,
            Some(t) => ParseError::Unexpected(format!("{t:?}")),
            None => ParseError::Unexpected("end of answer".into()),
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.lim.max_depth {
            Err(ParseError::TooDeep(self.lim.max_depth))
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn check_items(&self, n: usize) -> R<()> {
        if n > self.lim.max_items {
            Err(ParseError::TooManyItems(self.lim.max_items))
        } else {
            Ok(())
        }
    }

    fn at_list_sep(&self) -> bool {
        matches!(self.peek(), Some(Tok::Sym(',' | ';')))
            || matches!(self.peek(), Some(Tok::Word(w)) if w == "and" || w == "or")
    }

    /// The whole answer: `;` separates groups, `,`/"and"/"or" items.
    fn top(&mut self) -> R<Expr> {
        let mut groups: Vec<Vec<Expr>> = vec![vec![]];
        let mut semis = false;
        loop {
            while self.at_list_sep() {
                if self.bump() == Some(Tok::Sym(';')) {
                    semis = true;
                    groups.push(vec![]);
                }
            }
            if self.pos >= self.toks.len() {
                break;
            }
            let item = self.relation()?;
            if let Some(g) = groups.last_mut() {
                g.push(item);
            }
            self.check_items(groups.iter().map(Vec::len).sum())?;
            if !self.at_list_sep() {
                break;
            }
        }
        groups.retain(|g| !g.is_empty());
        let nested = semis && groups.len() > 1 && groups.iter().any(|g| g.len() > 1);
        let mut items: Vec<Expr> = if nested {
            groups
                .into_iter()
                .map(|mut g| {
                    if g.len() == 1 {
                        g.remove(0)
                    } else {
                        Expr::List(g)
                    }
                })
                .collect()
        } else {
            groups.into_iter().flatten().collect()
        };
        match items.len() {
            0 => Err(ParseError::Empty),
            1 => Ok(items.remove(0)),
            _ => Ok(Expr::List(items)),
        }
    }

    fn relop(&self) -> Option<RelOp> {
        match self.peek()? {
            Tok::Sym('=') => Some(RelOp::Eq),
            Tok::Sym('<') => Some(RelOp::Lt),
            Tok::Sym('>') => Some(RelOp::Gt),
            Tok::Cmd(c) => match c.as_str() {
                "le" => Some(RelOp::Le),
                "ge" => Some(RelOp::Ge),
                "ne" => Some(RelOp::Ne),
                "in" => Some(RelOp::In),
                "approx" | "equiv" | "coloneqq" => Some(RelOp::Eq),
                _ => None,
            },
            _ => None,
        }
    }

    fn relation(&mut self) -> R<Expr> {
        let first = self.ratio()?;
        let mut terms = vec![first];
        let mut ops = vec![];
        while let Some(op) = self.relop() {
            self.pos += 1;
            ops.push(op);
            terms.push(self.ratio()?);
            self.check_items(terms.len())?;
        }
        Ok(if ops.is_empty() {
            terms.remove(0)
        } else {
            Expr::Rel { terms, ops }
        })
    }

    fn ratio(&mut self) -> R<Expr> {
        let first = self.union()?;
        if self.peek() != Some(&Tok::Sym(':')) {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.eat_sym(':') {
            parts.push(self.union()?);
            self.check_items(parts.len())?;
        }
        Ok(Expr::Ratio(parts))
    }

    fn union(&mut self) -> R<Expr> {
        let first = self.sum()?;
        if matches!(first, Expr::Reals) && cmd_is(self.peek(), &["setminus", "backslash"]) {
            self.pos += 1;
            let removed = self.sum()?;
            return complement(removed);
        }
        if !cmd_is(self.peek(), &["cup"]) {
            return Ok(first);
        }
        let mut parts = vec![first];
        while cmd_is(self.peek(), &["cup"]) {
            self.pos += 1;
            parts.push(self.sum()?);
            self.check_items(parts.len())?;
        }
        Ok(Expr::Union(parts))
    }

    fn sum(&mut self) -> R<Expr> {
        let mut acc = self.term()?;
        let mut pms = 0;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym('+')) => '+',
                Some(Tok::Sym('-')) => '-',
                Some(Tok::Cmd(c)) if c == "pm" || c == "mp" => '±',
                _ => break,
            };
            self.pos += 1;
            let rhs = self.term()?;
            acc = match op {
                '+' => add(acc, rhs),
                '-' => add(acc, Expr::Neg(Box::new(rhs))),
                _ => {
                    pms += 1;
                    if pms > self.lim.max_depth {
                        return Err(ParseError::TooDeep(self.lim.max_depth));
                    }
                    Expr::PlusMinus(Box::new(acc), Box::new(rhs))
                }
            };
            if let Expr::Add(v) = &acc {
                self.check_items(v.len())?;
            }
        }
        Ok(acc)
    }

    /// Whether the next token can start an implicitly multiplied factor.
    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Tok::Num { .. } | Tok::Letter(_) | Tok::Sym('(')) => true,
            Some(Tok::Word(w)) => w != "and" && w != "or",
            Some(Tok::Cmd(c)) => !matches!(
                c.as_str(),
                "cdot"
                    | "times"
                    | "div"
                    | "pm"
                    | "mp"
                    | "le"
                    | "ge"
                    | "ne"
                    | "in"
                    | "cup"
                    | "setminus"
                    | "backslash"
                    | "to"
                    | "gets"
                    | "approx"
                    | "equiv"
                    | "end"
                    | "rfloor"
                    | "rceil"
                    | "rangle"
                    | "coloneqq"
                    | "ldots"
                    | "cdots"
                    | "dots"
            ),
            _ => false,
        }
    }

    fn term(&mut self) -> R<Expr> {
        let mut acc = self.unary()?;
        let mut factors = 1;
        let mut divisions = 0;
        loop {
            factors += 1;
            self.check_items(factors)?;
            // `a/b/c/...` nests to the left without recursing here; cap it like recursion.
            if divisions > self.lim.max_depth {
                return Err(ParseError::TooDeep(self.lim.max_depth));
            }
            match self.peek() {
                Some(Tok::Sym('*')) => {
                    self.pos += 1;
                    acc = mul(acc, self.unary()?);
                }
                Some(Tok::Cmd(c)) if c == "cdot" || c == "times" => {
                    self.pos += 1;
                    acc = mul(acc, self.unary()?);
                }
                Some(Tok::Sym('/')) => {
                    self.pos += 1;
                    divisions += 1;
                    acc = Expr::Div(Box::new(acc), Box::new(self.unary()?));
                }
                Some(Tok::Cmd(c)) if c == "div" => {
                    self.pos += 1;
                    divisions += 1;
                    acc = Expr::Div(Box::new(acc), Box::new(self.unary()?));
                }
                _ if self.starts_factor() => {
                    if let Some(m) = self.mixed_number(&acc)? {
                        acc = m;
                        continue;
                    }
                    if matches!(acc, Expr::Num { .. })
                        && matches!(self.peek(), Some(Tok::Num { .. }))
                    {
                        return Err(ParseError::Unexpected("two numbers in a row".into()));
                    }
                    acc = mul(acc, self.power()?);
                }
                _ => break,
            }
        }
        Ok(acc)
    }

    /// `2\frac{1}{2}` and `4 4/9` are mixed numbers, not products.
    fn mixed_number(&mut self, acc: &Expr) -> R<Option<Expr>> {
        if let Expr::Neg(inner) = acc {
            // `-2\frac{1}{2}` is -(2 + 1/2).
            return Ok(self.mixed_number(inner)?.map(|m| match m {
                Expr::Add(_) => Expr::Neg(Box::new(m)),
                other => Expr::Mul(vec![Expr::int(-1), other]),
            }));
        }
        let Expr::Num {
            value: whole,
            decimal: false,
        } = acc
        else {
            return Ok(None);
        };
        if !whole.is_integer() || whole.is_negative() {
            return Ok(None);
        }
        let is_int = |t: Option<&Tok>| matches!(t, Some(Tok::Num { value, decimal: false }) if value.is_integer());
        let frac = if cmd_is(self.peek(), &["frac"]) {
            let save = self.pos;
            let f = self.power()?;
            match &f {
                Expr::Div(a, b) if is_int_lit(a) && is_int_lit(b) => f,
                _ => {
                    self.pos = save;
                    return Ok(None);
                }
            }
        } else if is_int(self.peek())
            && self.peek_at(1) == Some(&Tok::Sym('/'))
            && is_int(self.peek_at(2))
        {
            let a = self.primary()?;
            self.pos += 1;
            let b = self.primary()?;
            Expr::Div(Box::new(a), Box::new(b))
        } else {
            return Ok(None);
        };
        let Expr::Div(a, b) = &frac else {
            return Ok(None);
        };
        let (Some(n), Some(d)) = (lit(a), lit(b)) else {
            return Ok(None);
        };
        if d.is_zero() || n >= d {
            return Ok(Some(mul(acc.clone(), frac)));
        }
        Ok(Some(Expr::Add(vec![acc.clone(), frac])))
    }

    fn unary(&mut self) -> R<Expr> {
        self.enter()?;
        let r = match self.peek() {
            Some(Tok::Sym('-')) => {
                self.pos += 1;
                self.unary().map(|e| Expr::Neg(Box::new(e)))
            }
            Some(Tok::Sym('+')) => {
                self.pos += 1;
                self.unary()
            }
            Some(Tok::Cmd(c)) if c == "pm" || c == "mp" => {
                self.pos += 1;
                self.unary()
                    .map(|e| Expr::PlusMinus(Box::new(Expr::int(0)), Box::new(e)))
            }
            _ => self.power(),
        };
        self.leave();
        r
    }

    fn power(&mut self) -> R<Expr> {
        let base = self.postfix()?;
        if self.eat_sym('^') {
            self.enter()?;
            let exp = self.exponent();
            self.leave();
            let e = Expr::Pow(Box::new(base), Box::new(exp?));
            return self.postfix_ops(e);
        }
        Ok(base)
    }

    /// A superscript: a braced group, a parenthesised group, a signed atom, or a number.
    fn exponent(&mut self) -> R<Expr> {
        match self.peek() {
            Some(Tok::Sym('{')) => {
                self.pos += 1;
                let e = self.group_until('}')?;
                Ok(e)
            }
            Some(Tok::Sym('-' | '+')) => {
                let neg = self.peek() == Some(&Tok::Sym('-'));
                self.pos += 1;
                self.enter()?;
                let e = self.exponent();
                self.leave();
                Ok(if neg { Expr::Neg(Box::new(e?)) } else { e? })
            }
            _ => self.power(),
        }
    }

    fn postfix(&mut self) -> R<Expr> {
        let p = self.primary()?;
        self.postfix_ops(p)
    }

    fn postfix_ops(&mut self, mut e: Expr) -> R<Expr> {
        for _ in 0..=self.lim.max_depth {
            match self.peek() {
                Some(Tok::Sym('!')) => {
                    self.pos += 1;
                    e = Expr::Factorial(Box::new(e));
                }
                Some(Tok::Sym('%')) => {
                    self.pos += 1;
                    e = Expr::Percent(Box::new(e));
                }
                Some(Tok::Sym('\'')) => {
                    self.pos += 1;
                    if let Expr::Var { name, .. } = &mut e {
                        name.push('\'');
                    }
                }
                Some(Tok::Sym('_')) if matches!(e, Expr::Num { .. }) => {
                    self.pos += 1;
                    let base = self.single_arg()?;
                    e = to_base(&e, &base)?;
                }
                _ => return Ok(e),
            }
        }
        Err(ParseError::TooDeep(self.lim.max_depth))
    }

    /// A `{...}` group, or a single token (`\frac12`, `\sqrt3`, `x_1`).
    fn single_arg(&mut self) -> R<Expr> {
        match self.peek().cloned() {
            Some(Tok::Sym('{')) => {
                self.pos += 1;
                self.group_until('}')
            }
            Some(Tok::Num {
                value,
                decimal: false,
            }) if value.is_integer() && value.to_integer() >= BigInt::from(10) => {
                // Split a digit run: `\frac94` is 9 over 4.
                let s = value.to_integer().to_string();
                let (first, rest) = s.split_at(1);
                let rest_v: BigInt = rest.parse().map_err(|_| ParseError::TooLarge)?;
                self.toks[self.pos].tok = Tok::Num {
                    value: BigRational::from_integer(rest_v),
                    decimal: false,
                };
                Ok(Expr::int(first.parse().unwrap_or(0)))
            }
            Some(Tok::Num { .. } | Tok::Letter(_)) => self.primary(),
            Some(Tok::Cmd(_)) => self.primary(),
            _ => Err(self.unexpected()),
        }
    }

    /// Items up to `close`; one item is a grouping, several a list.
    fn group_until(&mut self, close: char) -> R<Expr> {
        let (mut items, _) = self.seq(&[close])?;
        match items.len() {
            0 => Err(ParseError::Empty),
            1 => Ok(items.remove(0)),
            _ => Ok(Expr::List(items)),
        }
    }

    /// Comma/semicolon separated relations up to one of `closers`; returns the closer.
    fn seq(&mut self, closers: &[char]) -> R<(Vec<Expr>, char)> {
        self.enter()?;
        let mut items = vec![];
        let r = loop {
            if let Some(Tok::Sym(c)) = self.peek()
                && closers.contains(c)
            {
                let c = *c;
                self.pos += 1;
                break Ok((items, c));
            }
            if self.peek().is_none() {
                break Err(ParseError::Unexpected("unclosed bracket".into()));
            }
            if self.eat_sym(',') || self.eat_sym(';') {
                continue;
            }
            match self.relation() {
                Ok(e) => items.push(e),
                Err(e) => break Err(e),
            }
            if let Err(e) = self.check_items(items.len()) {
                break Err(e);
            }
            if !matches!(self.peek(), Some(Tok::Sym(',' | ';')))
                && !matches!(self.peek(), Some(Tok::Sym(c)) if closers.contains(c))
            {
                break Err(self.unexpected());
            }
        };
        self.leave();
        r
    }

    fn set_until_close(&mut self) -> R<Vec<Expr>> {
        self.enter()?;
        let mut items = vec![];
        let r = loop {
            match self.peek() {
                Some(Tok::SetClose) => {
                    self.pos += 1;
                    break Ok(items);
                }
                None => break Err(ParseError::Unexpected("unclosed set".into())),
                Some(Tok::Sym(',' | ';')) => {
                    self.pos += 1;
                }
                _ => match self.relation() {
                    Ok(e) => items.push(e),
                    Err(e) => break Err(e),
                },
            }
            if let Err(e) = self.check_items(items.len()) {
                break Err(e);
            }
        };
        self.leave();
        r
    }

    fn primary(&mut self) -> R<Expr> {
        self.enter()?;
        let r = self.primary_inner();
        self.leave();
        r
    }

    fn primary_inner(&mut self) -> R<Expr> {
        let Some(tok) = self.bump() else {
            return Err(ParseError::Unexpected("end of answer".into()));
        };
        match tok {
            Tok::Num { value, decimal } => Ok(Expr::Num { value, decimal }),
            Tok::Letter(c) => self.letter(c),
            Tok::Word(w) => self.word(&w),
            Tok::Cmd(c) => self.command(&c),
            Tok::Sym('(') => {
                let (items, close) = self.seq(&[')', ']'])?;
                bracketed(items, true, close == ']')
            }
            Tok::Sym('[') => {
                let (items, close) = self.seq(&[']', ')'])?;
                match (items.len(), close) {
                    (1, ']') => Ok(items.into_iter().next().unwrap_or(Expr::Ellipsis)),
                    _ => bracketed(items, false, close == ']'),
                }
            }
            Tok::Sym('{') => {
                let (mut items, _) = self.seq(&['}'])?;
                match items.len() {
                    1 => Ok(items.remove(0)),
                    _ => Ok(Expr::Set(items)),
                }
            }
            Tok::SetOpen => Ok(Expr::Set(self.set_until_close()?)),
            Tok::Sym('|') => {
                let e = self.sum()?;
                self.expect_sym('|')?;
                Ok(Expr::Abs(Box::new(e)))
            }
            t => {
                self.pos -= 1;
                Err(match t {
                    Tok::Word(_) => ParseError::TextLike,
                    t => ParseError::Unexpected(format!("{t:?}")),
                })
            }
        }
    }

    fn subscript(&mut self) -> R<Option<Box<Expr>>> {
        if !self.eat_sym('_') {
            return Ok(None);
        }
        Ok(Some(Box::new(self.single_arg()?)))
    }

    fn letter(&mut self, c: char) -> R<Expr> {
        let sub = self.subscript()?;
        if sub.is_none() {
            if c == 'e' {
                return Ok(Expr::Const(Constant::E));
            }
            if c == 'i' {
                return Ok(Expr::Const(Constant::I));
            }
        }
        Ok(var(c.to_string(), sub))
    }

    fn word(&mut self, w: &str) -> R<Expr> {
        match w {
            "pi" => Ok(Expr::Const(Constant::Pi)),
            "infinity" | "inf" | "infty" => Ok(Expr::Inf),
            "sqrt" => {
                let arg = self.func_arg()?;
                Ok(Expr::Root(Box::new(Expr::int(2)), Box::new(arg)))
            }
            "log" => self.log(),
            _ => match func_of(w) {
                Some(f) => self.apply(f),
                None => Err(ParseError::TextLike),
            },
        }
    }
}

fn is_known_word(w: &str) -> bool {
    crate::clean::MATH_WORDS.contains(&w) || func_of(w).is_some()
}

fn var(name: String, sub: Option<Box<Expr>>) -> Expr {
    // `y_{max}`: a letters-only subscript is part of the name.
    match sub.as_deref() {
        Some(Expr::Var { name: s, sub: None }) => Expr::Var {
            name: format!("{name}_{s}"),
            sub: None,
        },
        Some(Expr::Mul(v)) if v.iter().all(|e| matches!(e, Expr::Var { sub: None, .. })) => {
            let s: String = v
                .iter()
                .filter_map(|e| {
                    if let Expr::Var { name, .. } = e {
                        Some(name.as_str())
                    } else {
                        None
                    }
                })
                .collect();
            Expr::Var {
                name: format!("{name}_{s}"),
                sub: None,
            }
        }
        _ => Expr::Var { name, sub },
    }
}

/// A literal, or a negated one.
fn signed_lit(e: &Expr) -> Option<BigRational> {
    match e {
        Expr::Neg(x) => lit(x).map(|v| -v),
        e => lit(e),
    }
}

fn lit(e: &Expr) -> Option<BigRational> {
    match e {
        Expr::Num { value, .. } => Some(value.clone()),
        _ => None,
    }
}

fn is_int_lit(e: &Expr) -> bool {
    matches!(e, Expr::Num { value, decimal: false } if value.is_integer())
}

fn add(a: Expr, b: Expr) -> Expr {
    match a {
        Expr::Add(mut v) => {
            v.push(b);
            Expr::Add(v)
        }
        a => Expr::Add(vec![a, b]),
    }
}

fn mul(a: Expr, b: Expr) -> Expr {
    match a {
        Expr::Mul(mut v) => {
            v.push(b);
            Expr::Mul(v)
        }
        a => Expr::Mul(vec![a, b]),
    }
}

/// `(a, b)`, `[a, b)`, `(a, b, c)`: intervals, tuples, or a grouping.
fn bracketed(mut items: Vec<Expr>, open_round: bool, close_square: bool) -> R<Expr> {
    match items.len() {
        0 => Err(ParseError::Empty),
        1 if open_round && !close_square => Ok(items.remove(0)),
        2 if open_round && !close_square => Ok(Expr::Tuple { items, paren: true }),
        2 => {
            let hi = items.pop().unwrap_or(Expr::Inf);
            let lo = items.pop().unwrap_or(Expr::Inf);
            Ok(Expr::Interval {
                lo: Box::new(lo),
                hi: Box::new(hi),
                lo_closed: !open_round,
                hi_closed: close_square,
            })
        }
        _ if open_round != close_square => Ok(Expr::Tuple {
            items,
            paren: open_round,
        }),
        _ => Err(ParseError::Unexpected("mismatched brackets".into())),
    }
}

/// `\mathbb{R} \setminus S` for a finite set of numbers or one interval with
/// numeric ends: the union of the open (or half-open) pieces left.
fn complement(removed: Expr) -> R<Expr> {
    let bad = || ParseError::Unexpected("setminus".into());
    let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
    let piece = Expr::interval;
    let (lo, hi, lc, hc) = match removed {
        Expr::Set(items) => {
            let mut pts: Vec<(BigRational, Expr)> = items
                .into_iter()
                .map(|e| signed_lit(&e).map(|v| (v, e)).ok_or_else(bad))
                .collect::<R<_>>()?;
            if pts.is_empty() {
                return Ok(Expr::Reals);
            }
            pts.sort_by(|a, b| a.0.cmp(&b.0));
            pts.dedup_by(|a, b| a.0 == b.0);
            let mut parts = Vec::with_capacity(pts.len() + 1);
            let mut prev = neg_inf();
            for (_, e) in pts {
                parts.push(piece(prev, e.clone(), false, false));
                prev = e;
            }
            parts.push(piece(prev, Expr::Inf, false, false));
            return Ok(Expr::Union(parts));
        }
        Expr::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        } => (*lo, *hi, lo_closed, hi_closed),
        Expr::Tuple { items, paren: true } if items.len() == 2 => {
            let mut it = items.into_iter();
            let (a, b) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
            (a, b, false, false)
        }
        _ => return Err(bad()),
    };
    match (signed_lit(&lo), signed_lit(&hi)) {
        (Some(a), Some(b)) if a < b => Ok(Expr::Union(vec![
            piece(neg_inf(), lo, false, !lc),
            piece(hi, Expr::Inf, !hc, false),
        ])),
        _ => Err(bad()),
    }
}

/// `204_5`: digits in base 2..=36.
fn to_base(n: &Expr, base: &Expr) -> R<Expr> {
    let (Some(v), Some(b)) = (lit(n), lit(base)) else {
        return Err(ParseError::Unexpected("base".into()));
    };
    let b = b
        .to_integer()
        .to_u32()
        .filter(|b| (2..=36).contains(b))
        .ok_or(ParseError::Unexpected("base".into()))?;
    if v.is_negative() {
        return Err(ParseError::Unexpected("base".into()));
    }
    // The digits as written: `0.0011_2` was read as 11/10000; k digits after
    // the point make it (all digits in base b) / b^k.
    let ten = BigInt::from(10u32);
    let mut scaled = v.clone();
    let mut k = 0usize;
    while !scaled.is_integer() {
        if k == 64 {
            return Err(ParseError::Unexpected("base".into()));
        }
        scaled *= BigRational::from_integer(ten.clone());
        k += 1;
    }
    let digits = scaled.to_integer().to_string();
    let parsed = BigInt::parse_bytes(digits.as_bytes(), b)
        .ok_or(ParseError::Unexpected("digit for base".into()))?;
    let den = num_traits::pow(BigInt::from(b), k);
    Ok(Expr::Num {
        value: BigRational::new(parsed, den),
        decimal: false,
    })
}

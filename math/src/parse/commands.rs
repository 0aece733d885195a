//! Backslash commands: fractions, roots, functions, `\\sum`/`\\prod`,
//! environments (matrices), font wrappers and Greek letters. A second `impl`
//! block of the same [`Parser`](super::Parser), kept apart so each file holds
//! one idea: `parse.rs` the precedence climb, this file the command table.

use super::{ParseError, Parser, R, cmd_is, func_of, mul, var};
use crate::ast::{Constant, Expr, Func, RelOp};
use crate::lex::Tok;
use num_traits::One;

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Font and decoration commands whose argument is the value.
const WRAPPERS: &[&str] = &[
    "mathbf",
    "mathit",
    "mathrm",
    "boldsymbol",
    "bm",
    "vec",
    "hat",
    "bar",
    "tilde",
    "overline",
    "mathcal",
    "operatorname",
    "textbf",
    "text",
    "boxed",
    "fbox",
    "underline",
    "mathsf",
    "textit",
    "mbox",
];

impl Parser<'_> {
    pub(super) fn command(&mut self, c: &str) -> R<Expr> {
        match c {
            "frac" => {
                let a = self.single_arg()?;
                let b = self.single_arg()?;
                Ok(Expr::Div(Box::new(a), Box::new(b)))
            }
            "binom" | "choose" => {
                let a = self.single_arg()?;
                let b = self.single_arg()?;
                Ok(Expr::Binom(Box::new(a), Box::new(b)))
            }
            "sqrt" => {
                let index = if self.eat_sym('[') {
                    self.group_until(']')?
                } else {
                    Expr::int(2)
                };
                let arg = self.single_arg()?;
                Ok(Expr::Root(Box::new(index), Box::new(arg)))
            }
            "pi" => Ok(Expr::Const(Constant::Pi)),
            "infty" | "infin" => Ok(Expr::Inf),
            "imath" => Ok(Expr::Const(Constant::I)),
            "emptyset" | "varnothing" => Ok(Expr::Set(vec![])),
            "ldots" | "cdots" | "dots" => Ok(Expr::Ellipsis),
            "log" | "lg" => self.log(),
            "mathbb" => {
                let a = self.single_arg()?;
                match a {
                    Expr::Var { name, .. } if name == "R" => Ok(Expr::Reals),
                    e => Ok(e),
                }
            }
            "lfloor" | "lceil" => {
                let e = self.sum()?;
                let close = if c == "lfloor" { "rfloor" } else { "rceil" };
                if !cmd_is(self.peek(), &[close]) {
                    return Err(self.unexpected());
                }
                self.pos += 1;
                Ok(Expr::Apply(
                    if c == "lfloor" {
                        Func::Floor
                    } else {
                        Func::Ceil
                    },
                    Box::new(e),
                ))
            }
            "langle" => {
                let mut items = vec![];
                loop {
                    if cmd_is(self.peek(), &["rangle"]) {
                        self.pos += 1;
                        break;
                    }
                    if self.peek().is_none() {
                        return Err(ParseError::Unexpected("unclosed angle bracket".into()));
                    }
                    if self.eat_sym(',') {
                        continue;
                    }
                    items.push(self.relation()?);
                    self.check_items(items.len())?;
                }
                Ok(Expr::Tuple {
                    items,
                    paren: false,
                })
            }
            "begin" => self.environment(),
            "sum" | "prod" => self.big_operator(c == "prod"),
            _ if GREEK.contains(&c) => {
                let sub = self.subscript()?;
                Ok(var(c.to_string(), sub))
            }
            _ if WRAPPERS.contains(&c) => {
                let a = self.single_arg()?;
                // `\mathrm{e}` is Euler's number and `\mathrm{i}` the imaginary unit.
                let upright = matches!(c, "mathrm" | "operatorname" | "text" | "textbf" | "mbox");
                if upright && let Expr::Var { name, sub: None } = &a {
                    return Ok(match name.as_str() {
                        "e" => Expr::Const(Constant::E),
                        "i" => Expr::Const(Constant::I),
                        _ => a,
                    });
                }
                Ok(a)
            }
            _ => match func_of(c) {
                Some(f) => self.apply(f),
                None => Err(ParseError::Unexpected(format!("\\{c}"))),
            },
        }
    }

    /// `\sin^2 x`, `\sin(2x)`, `\sin 2x`, `\sin^{-1} x`.
    pub(super) fn apply(&mut self, f: Func) -> R<Expr> {
        let mut power = None;
        if self.eat_sym('^') {
            power = Some(self.exponent()?);
        }
        let arg = self.func_arg()?;
        let inverse = matches!(&power, Some(Expr::Neg(b)) if matches!(&**b, Expr::Num { value, .. } if value.is_one()));
        let f = match (inverse, f) {
            (true, Func::Sin) => Func::Asin,
            (true, Func::Cos) => Func::Acos,
            (true, Func::Tan) => Func::Atan,
            (_, f) => f,
        };
        let applied = Expr::Apply(f, Box::new(arg));
        Ok(match power {
            Some(p) if !inverse => Expr::Pow(Box::new(applied), Box::new(p)),
            _ => applied,
        })
    }

    pub(super) fn log(&mut self) -> R<Expr> {
        let base = if self.eat_sym('_') {
            Some(Box::new(self.single_arg()?))
        } else {
            None
        };
        let arg = self.func_arg()?;
        Ok(Expr::Log(base, Box::new(arg)))
    }

    /// A function's argument: a parenthesised group, or the factors that follow
    /// up to the next operator or function (`\sin 2x \cos x`).
    pub(super) fn func_arg(&mut self) -> R<Expr> {
        if matches!(self.peek(), Some(Tok::Sym('(' | '{'))) {
            return self.power();
        }
        let mut acc = self.power()?;
        while self.starts_factor() && !self.at_function() {
            acc = mul(acc, self.power()?);
        }
        Ok(acc)
    }

    pub(super) fn at_function(&self) -> bool {
        match self.peek() {
            Some(Tok::Cmd(c) | Tok::Word(c)) => func_of(c).is_some() || c == "log" || c == "sqrt",
            _ => false,
        }
    }

    /// `\sum_{k=0}^{n} body`.
    pub(super) fn big_operator(&mut self, product: bool) -> R<Expr> {
        self.expect_sym('_')?;
        let lower = self.single_arg()?;
        let Expr::Rel { mut terms, ops } = lower else {
            return Err(ParseError::Unexpected("sum without index".into()));
        };
        if ops != [RelOp::Eq] {
            return Err(ParseError::Unexpected("sum bounds".into()));
        }
        let lo = terms.pop().unwrap_or(Expr::int(0));
        let Some(Expr::Var { name, sub: None }) = terms.pop() else {
            return Err(ParseError::Unexpected("sum index".into()));
        };
        self.expect_sym('^')?;
        let hi = self.exponent()?;
        let body = self.term()?;
        Ok(Expr::Sum {
            var: name,
            lo: Box::new(lo),
            hi: Box::new(hi),
            body: Box::new(body),
            product,
        })
    }

    /// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (also bmatrix, array, ...).
    pub(super) fn environment(&mut self) -> R<Expr> {
        let name = self.env_name()?;
        if name == "array" && self.peek() == Some(&Tok::Sym('{')) {
            while !matches!(self.bump(), Some(Tok::Sym('}')) | None) {}
        }
        let mut rows: Vec<Vec<Expr>> = vec![vec![]];
        loop {
            match self.peek() {
                None => return Err(ParseError::Unexpected("unclosed environment".into())),
                Some(Tok::Cmd(c)) if c == "end" => {
                    self.pos += 1;
                    self.env_name()?;
                    break;
                }
                Some(Tok::Sym('&')) => {
                    self.pos += 1;
                }
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(vec![]);
                }
                _ => {
                    let cell = self.relation()?;
                    if let Some(r) = rows.last_mut() {
                        r.push(cell);
                    }
                    self.check_items(rows.iter().map(Vec::len).sum())?;
                }
            }
        }
        rows.retain(|r| !r.is_empty());
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError::Unexpected("ragged matrix".into()));
        }
        Ok(Expr::Matrix(rows))
    }

    pub(super) fn env_name(&mut self) -> R<String> {
        self.expect_sym('{')?;
        let mut name = String::new();
        loop {
            match self.bump() {
                Some(Tok::Sym('}')) => return Ok(name),
                Some(Tok::Word(w)) => name.push_str(&w),
                Some(Tok::Letter(c)) => name.push(c),
                Some(Tok::Sym('*')) => name.push('*'),
                _ => return Err(ParseError::Unexpected("environment name".into())),
            }
        }
    }
}

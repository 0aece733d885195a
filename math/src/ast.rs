//! The typed answer tree that the parser builds and the comparer reads.
//!
//! One enum covers scalars (numbers, constants, variables and arithmetic on
//! them) and the compound answer forms (tuples, sets, intervals, matrices,
//! relations, lists). Arithmetic on a compound is an evaluation error, never a
//! panic; the comparer decides which pairs of forms can be equivalent.

use num_rational::BigRational;

/// Irrational or complex constants that rule out exact comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constant {
    Pi,
    E,
    I,
}

/// Named one-argument functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Sec,
    Csc,
    Cot,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Exp,
    Ln,
    Floor,
    Ceil,
}

/// Relation operators; `In` is set membership (`x \in [0, 1]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Ne,
    In,
}

impl RelOp {
    /// The operator with its sides swapped (`<` becomes `>`).
    pub fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Gt => RelOp::Lt,
            RelOp::Le => RelOp::Ge,
            RelOp::Ge => RelOp::Le,
            o => o,
        }
    }

    pub fn is_inequality(self) -> bool {
        matches!(self, RelOp::Lt | RelOp::Le | RelOp::Gt | RelOp::Ge)
    }
}

/// A parsed answer or sub-expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// An exact rational literal; `decimal` records that it was written with a
    /// decimal point, which permits a tolerance comparison against exact values.
    Num {
        value: BigRational,
        decimal: bool,
    },
    /// A variable, with an optional subscript (`y_1`, `F_{n-k}`).
    Var {
        name: String,
        sub: Option<Box<Expr>>,
    },
    Const(Constant),
    Inf,
    Neg(Box<Expr>),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    /// `\sqrt[index]{radicand}`.
    Root(Box<Expr>, Box<Expr>),
    /// `f^power(arg)`; `power` is the `\sin^2 x` exponent.
    Apply(Func, Box<Expr>),
    /// `\log_base(arg)`; no base means the natural logarithm.
    Log(Option<Box<Expr>>, Box<Expr>),
    Factorial(Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
    Abs(Box<Expr>),
    /// `50\%`: its meaning depends on [`crate::PercentMode`] at the top level.
    Percent(Box<Expr>),
    /// `a \pm b` (a unary `\pm b` has `a = 0`).
    PlusMinus(Box<Expr>, Box<Expr>),
    /// `\sum_{var=lo}^{hi} body` (or `\prod` when `product`).
    Sum {
        var: String,
        lo: Box<Expr>,
        hi: Box<Expr>,
        body: Box<Expr>,
        product: bool,
    },
    /// `\ldots`: only equal to itself.
    Ellipsis,
    /// `(a, b, ...)`: `paren` marks round brackets, so a pair may still be an open interval.
    Tuple {
        items: Vec<Expr>,
        paren: bool,
    },
    Set(Vec<Expr>),
    /// A multi-answer list ("1, 2 and 3", adjacent boxes): unordered.
    List(Vec<Expr>),
    Interval {
        lo: Box<Expr>,
        hi: Box<Expr>,
        lo_closed: bool,
        hi_closed: bool,
    },
    Union(Vec<Expr>),
    Matrix(Vec<Vec<Expr>>),
    /// `1:2:3` (also clock times `12:00`): ordered.
    Ratio(Vec<Expr>),
    /// A chain `a op b op c ...`; `terms.len() == ops.len() + 1`.
    Rel {
        terms: Vec<Expr>,
        ops: Vec<RelOp>,
    },
    /// The real line (`\mathbb{R}`, "all real numbers").
    Reals,
    /// A multiple-choice letter, upper case.
    Choice(char),
    /// A plain-text answer, normalised (lower case, letters and digits only).
    Text(String),
}

impl Expr {
    /// An interval from `lo` to `hi` with the given closedness of each end.
    pub fn interval(lo: Expr, hi: Expr, lo_closed: bool, hi_closed: bool) -> Expr {
        Expr::Interval {
            lo: Box::new(lo),
            hi: Box::new(hi),
            lo_closed,
            hi_closed,
        }
    }

    pub fn int(v: i64) -> Expr {
        Expr::Num {
            value: BigRational::from_integer(v.into()),
            decimal: false,
        }
    }

    /// Whether the tree mentions a variable (a free one, or a summation index).
    pub fn has_vars(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            if matches!(e, Expr::Var { .. }) {
                found = true;
            }
        });
        found
    }

    /// Whether a decimal literal appears anywhere.
    pub fn has_decimal(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            if let Expr::Num { decimal: true, .. } = e {
                found = true;
            }
        });
        found
    }

    /// Whether a `\pm` appears anywhere.
    pub fn has_pm(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            if matches!(e, Expr::PlusMinus(..)) {
                found = true;
            }
        });
        found
    }

    /// Whether this is a scalar form (arithmetic), as opposed to a compound answer.
    pub fn is_scalar(&self) -> bool {
        !matches!(
            self,
            Expr::Tuple { .. }
                | Expr::Set(_)
                | Expr::List(_)
                | Expr::Interval { .. }
                | Expr::Union(_)
                | Expr::Matrix(_)
                | Expr::Ratio(_)
                | Expr::Rel { .. }
                | Expr::Reals
                | Expr::Choice(_)
                | Expr::Text(_)
                | Expr::Ellipsis
        )
    }

    /// Children in order, for generic walks.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Num { .. }
            | Expr::Const(_)
            | Expr::Inf
            | Expr::Ellipsis
            | Expr::Reals
            | Expr::Choice(_)
            | Expr::Text(_) => vec![],
            Expr::Var { sub, .. } => sub.iter().map(|b| &**b).collect(),
            Expr::Neg(a)
            | Expr::Factorial(a)
            | Expr::Abs(a)
            | Expr::Percent(a)
            | Expr::Apply(_, a) => {
                vec![a]
            }
            Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Root(a, b)
            | Expr::Binom(a, b)
            | Expr::PlusMinus(a, b) => vec![a, b],
            Expr::Log(base, a) => base
                .iter()
                .map(|b| &**b)
                .chain(std::iter::once(&**a))
                .collect(),
            Expr::Sum { lo, hi, body, .. } => vec![lo, hi, body],
            Expr::Add(v)
            | Expr::Mul(v)
            | Expr::Set(v)
            | Expr::List(v)
            | Expr::Union(v)
            | Expr::Ratio(v) => v.iter().collect(),
            Expr::Tuple { items, .. } => items.iter().collect(),
            Expr::Rel { terms, .. } => terms.iter().collect(),
            Expr::Interval { lo, hi, .. } => vec![lo, hi],
            Expr::Matrix(rows) => rows.iter().flatten().collect(),
        }
    }

    /// Pre-order walk. Trees are depth-limited by the parser, so recursion is bounded.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        for c in self.children() {
            c.visit(f);
        }
    }
}

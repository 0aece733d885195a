//! Equivalence of a gold answer and a predicted answer.
//!
//! Rules, in the order they apply:
//! - a label assignment (`x = 3`, `(p, q) = (3, 2)`, `x \in [0, 1]`) compares
//!   by its value against a bare answer; two equations compare as equations
//!   (same label: right-hand sides; otherwise `L - R` proportional at every
//!   point), so `x + y = 1` matches `2x + 2y = 2` but `a + 3z = 0` is not `0`;
//! - inequalities in one variable become intervals (`x > 0` is `(0, \infty)`);
//! - intervals compare endpoints and openness; tuples, ratios and matrices in
//!   order; sets and multi-answer lists as multisets;
//! - scalars compare exactly when both are rational; a decimal side or an
//!   irrational one (`\pi`, `\sqrt2`, functions, `i`) uses the relative
//!   tolerance; expressions with variables are evaluated at several points.

use num_traits::Zero;

use crate::ast::{Expr, RelOp};
use crate::config::{GradeConfig, PercentMode};
use crate::eval::{C, Ctx, Limit, NumError, Point, Q, exact, num};

pub struct Cmp<'a> {
    pub cfg: &'a GradeConfig,
    pub cx: Ctx<'a>,
}

type R = Result<bool, Limit>;

/// Most variants a `\pm` expansion may produce.
const MAX_PM_VARIANTS: usize = 16;

impl<'a> Cmp<'a> {
    pub fn new(cfg: &'a GradeConfig) -> Self {
        Cmp {
            cfg,
            cx: Ctx {
                lim: &cfg.limits,
                fuel: crate::eval::Fuel::new(cfg.limits.fuel),
            },
        }
    }

    pub fn eq(&mut self, g: &Expr, p: &Expr) -> R {
        self.cx.fuel.spend(1)?;
        if let Expr::List(v) = g
            && v.len() == 1
        {
            return self.eq(&v[0], p);
        }
        if let Expr::List(v) = p
            && v.len() == 1
        {
            return self.eq(g, &v[0]);
        }
        if g.has_pm() || p.has_pm() {
            // Only expansions that remove every `\pm` from a side that had one
            // are used; anything else (a `\pm` under a root, say) would expand
            // to itself and recurse forever.
            let full = |e: &Expr| {
                if e.has_pm() {
                    expand_pm(e).filter(|x| !x.has_pm())
                } else {
                    None
                }
            };
            let (ge, pe) = (full(g), full(p));
            if ge.is_some() || pe.is_some() {
                return self.eq(ge.as_ref().unwrap_or(g), pe.as_ref().unwrap_or(p));
            }
        }
        // A solution region written as a disjunction (`x < 3 \text{ or } x > 4`,
        // `x \neq 2`) is the union of its intervals.
        if let Some(r) = region(g, self)? {
            return self.eq(&r, p);
        }
        if let Some(r) = region(p, self)? {
            return self.eq(g, &r);
        }
        // `c M`, `A + B`, `A B` with explicit matrices: the matrix they make.
        if let Some(m) = matrix_expr(g) {
            return self.eq(&m, p);
        }
        if let Some(m) = matrix_expr(p) {
            return self.eq(g, &m);
        }
        // `x \in [-2, 7]` and `-2 \le x \le 7`: the set and the inequality.
        if let Some(set) = membership(g)
            && is_inequality(p)
        {
            return self.eq(set, p);
        }
        if let Some(set) = membership(p)
            && is_inequality(g)
        {
            return self.eq(g, set);
        }
        // Set braces around a single value: `\{5\}` and `5` are one answer.
        if let Expr::Set(v) = g
            && v.len() == 1
            && !matches!(p, Expr::Set(_) | Expr::List(_))
        {
            return self.eq(&v[0], p);
        }
        if let Expr::Set(v) = p
            && v.len() == 1
            && !matches!(g, Expr::Set(_) | Expr::List(_))
        {
            return self.eq(g, &v[0]);
        }
        // `b = 1, a = -2` for gold `(-2, 1)`: named values in the order of their names.
        if let (Expr::Tuple { items, .. }, Expr::List(v)) = (g, p)
            && items.len() == v.len()
            && let Some(values) = sorted_assignments(v)
        {
            return self.ordered(items, &values);
        }
        let (g_rel, p_rel) = (matches!(g, Expr::Rel { .. }), matches!(p, Expr::Rel { .. }));
        // `x \in \{5\}` and `x = 5`: the same label, a set against a value.
        for (a, b, flip) in [(g, p, false), (p, g, true)] {
            if let (Some(v), Some(set @ (Expr::Set(_) | Expr::List(_)))) =
                (assignment_value(a), membership(b))
                && let (Expr::Rel { terms: ta, .. }, Expr::Rel { terms: tb, .. }) = (a, b)
                && label_key(&ta[0]) == label_key(&tb[0])
            {
                return if flip {
                    self.eq(set, v)
                } else {
                    self.eq(v, set)
                };
            }
        }
        if g_rel && p_rel {
            return self.relations(g, p);
        }
        if let Some(v) = assignment_value(g)
            && !p_rel
        {
            return self.eq(v, p);
        }
        if let Some(v) = assignment_value(p)
            && !g_rel
        {
            return self.eq(g, v);
        }
        // `m + n = 33` for gold `33`: a chain of equalities ending in the
        // value, naming a quantity of two or more unknowns (`-x = 3` or
        // `2x = 6` is an equation still to solve, not an answer).
        if let Expr::Rel { terms, ops } = p
            && !g_rel
            && !g.has_vars()
            && ops.iter().all(|o| *o == RelOp::Eq)
            && var_names(&terms[0]).len() >= 2
            && let Some(last) = terms.last()
            && !last.has_vars()
        {
            return self.eq(g, last);
        }
        match (g, p) {
            (Expr::Rel { .. }, _) => match ineq_interval(g, self)? {
                Some(i) => self.eq(&i, p),
                None => Ok(false),
            },
            (_, Expr::Rel { .. }) => match ineq_interval(p, self)? {
                Some(i) => self.eq(g, &i),
                None => Ok(false),
            },
            (Expr::Reals, Expr::Reals) => Ok(true),
            (Expr::Reals, x) | (x, Expr::Reals) => {
                let all = Expr::Interval {
                    lo: Box::new(Expr::Neg(Box::new(Expr::Inf))),
                    hi: Box::new(Expr::Inf),
                    lo_closed: false,
                    hi_closed: false,
                };
                if matches!(x, Expr::Interval { .. } | Expr::Tuple { paren: true, .. }) {
                    self.eq(&all, x)
                } else {
                    Ok(false)
                }
            }
            (Expr::Interval { .. }, Expr::Interval { .. } | Expr::Tuple { paren: true, .. })
            | (Expr::Tuple { paren: true, .. }, Expr::Interval { .. }) => self.intervals(g, p),
            (Expr::Union(a), Expr::Union(b)) => self.unordered(a, b),
            (Expr::Union(a), x) | (x, Expr::Union(a))
                if a.len() == 1 && matches!(x, Expr::Interval { .. } | Expr::Tuple { .. }) =>
            {
                self.eq(&a[0], x)
            }
            (Expr::Tuple { items: a, .. }, Expr::Tuple { items: b, .. })
            | (Expr::Ratio(a), Expr::Ratio(b))
            | (Expr::Tuple { items: a, .. }, Expr::List(b))
            | (Expr::List(a), Expr::Tuple { items: b, .. }) => self.ordered(a, b),
            (Expr::Matrix(a), Expr::Matrix(b)) => {
                if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
                    return Ok(false);
                }
                let (fa, fb): (Vec<Expr>, Vec<Expr>) = (
                    a.iter().flatten().cloned().collect(),
                    b.iter().flatten().cloned().collect(),
                );
                self.ordered(&fa, &fb)
            }
            (Expr::Matrix(m), Expr::Tuple { items, .. })
            | (Expr::Tuple { items, .. }, Expr::Matrix(m)) => match vector(m) {
                Some(v) => self.ordered(&v, items),
                None => Ok(false),
            },
            (Expr::Set(a) | Expr::List(a), Expr::Set(b) | Expr::List(b)) => self.unordered(a, b),
            (Expr::Ellipsis, Expr::Ellipsis) => Ok(true),
            (Expr::Choice(a), Expr::Choice(b)) => Ok(a == b),
            (Expr::Text(a), Expr::Text(b)) => Ok(a == b),
            (a, b) if a.is_scalar() && b.is_scalar() => self.scalar(a, b),
            _ => Ok(false),
        }
    }

    fn ordered(&mut self, a: &[Expr], b: &[Expr]) -> R {
        if a.len() != b.len() {
            return Ok(false);
        }
        for (x, y) in a.iter().zip(b) {
            if !self.eq(x, y)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Multiset equality by greedy matching (equivalence is an equivalence relation
    /// on exact values; with tolerances greedy is the usual approximation).
    fn unordered(&mut self, a: &[Expr], b: &[Expr]) -> R {
        if b.len() > a.len() {
            // The same solution written twice (`(3,17,3,7)` and `(3, 17, 3, 7)`)
            // is one solution; only the response's repeats are merged, so a
            // gold that lists a double root twice still needs both.
            let mut seen: Vec<String> = Vec::with_capacity(b.len());
            let mut distinct: Vec<Expr> = Vec::with_capacity(b.len());
            for y in b {
                let k = label_key(y);
                if !seen.contains(&k) {
                    seen.push(k);
                    distinct.push(y.clone());
                }
            }
            if distinct.len() == a.len() {
                return self.unordered(a, &distinct);
            }
        }
        if a.len() != b.len() {
            return Ok(false);
        }
        let mut used = vec![false; b.len()];
        'outer: for x in a {
            for (j, y) in b.iter().enumerate() {
                if !used[j] && self.eq(x, y)? {
                    used[j] = true;
                    continue 'outer;
                }
            }
            return Ok(false);
        }
        Ok(true)
    }

    fn intervals(&mut self, g: &Expr, p: &Expr) -> R {
        let (Some((gl, gh, glc, ghc)), Some((pl, ph, plc, phc))) =
            (interval_parts(g), interval_parts(p))
        else {
            return Ok(false);
        };
        let lo_inf = infinity_sign(gl).is_some();
        let hi_inf = infinity_sign(gh).is_some();
        if (!lo_inf && glc != plc) || (!hi_inf && ghc != phc) {
            return Ok(false);
        }
        Ok(self.scalar(gl, pl)? && self.scalar(gh, ph)?)
    }

    fn relations(&mut self, g: &Expr, p: &Expr) -> R {
        let (Expr::Rel { terms: gt, ops: go }, Expr::Rel { terms: pt, ops: po }) = (g, p) else {
            return Ok(false);
        };
        let all_eq = |ops: &[RelOp]| ops.iter().all(|o| *o == RelOp::Eq);
        let all_in = |ops: &[RelOp]| ops.len() == 1 && ops[0] == RelOp::In;
        if (all_eq(go) && all_eq(po)) || (all_in(go) && all_in(po)) {
            let (gl, gr, pl, pr) = (&gt[0], &gt[gt.len() - 1], &pt[0], &pt[pt.len() - 1]);
            if is_label(gl) && is_label(pl) && label_key(gl) == label_key(pl) {
                return self.eq(gr, pr);
            }
            if all_eq(go) && [gl, gr, pl, pr].iter().all(|e| e.is_scalar()) {
                return self.proportional(gl, gr, pl, pr);
            }
            return Ok(false);
        }
        if go.iter().all(|o| o.is_inequality()) && po.iter().all(|o| o.is_inequality()) {
            return match (ineq_interval(g, self)?, ineq_interval(p, self)?) {
                (Some(a), Some(b)) => self.eq(&a, &b),
                _ => Ok(false),
            };
        }
        Ok(false)
    }

    /// `gl - gr` and `pl - pr` are non-zero multiples of each other at every point.
    fn proportional(&mut self, gl: &Expr, gr: &Expr, pl: &Expr, pr: &Expr) -> R {
        let f = Expr::Add(vec![gl.clone(), Expr::Neg(Box::new(gr.clone()))]);
        let h = Expr::Add(vec![pl.clone(), Expr::Neg(Box::new(pr.clone()))]);
        if !f.has_vars() && !h.has_vars() {
            return Ok(false);
        }
        let mut ratio: Option<C> = None;
        let mut seen = 0;
        for pt in points(self.cfg) {
            let (a, b) = match (self.value(&f, pt), self.value(&h, pt)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(NumError::Limit), _) | (_, Err(NumError::Limit)) => return Err(Limit),
                _ => continue,
            };
            let tiny = |z: C| z.abs() <= 1e-9;
            match (tiny(a), tiny(b)) {
                (true, true) => continue,
                (true, false) | (false, true) => return Ok(false),
                _ => {}
            }
            let r = C {
                re: (a.re * b.re + a.im * b.im) / (b.re * b.re + b.im * b.im),
                im: (a.im * b.re - a.re * b.im) / (b.re * b.re + b.im * b.im),
            };
            match ratio {
                None => ratio = Some(r),
                Some(r0) if !self.close(r0, r) => return Ok(false),
                _ => {}
            }
            seen += 1;
        }
        Ok(seen >= 2)
    }

    fn value(&mut self, e: &Expr, pt: Point) -> Result<C, NumError> {
        num(e, &mut self.cx, pt, &mut Vec::new())
    }

    fn close(&self, a: C, b: C) -> bool {
        let d = C {
            re: a.re - b.re,
            im: a.im - b.im,
        }
        .abs();
        d <= self.cfg.rel_tol * a.abs().max(b.abs()) || d <= 1e-12
    }

    /// Scalars, with the percent convention applied at the top level.
    fn scalar(&mut self, g: &Expr, p: &Expr) -> R {
        let gp = if let Expr::Percent(x) = g {
            Some(&**x)
        } else {
            None
        };
        let pp = if let Expr::Percent(x) = p {
            Some(&**x)
        } else {
            None
        };
        match self.cfg.percent {
            PercentMode::Fraction => self.value_eq(g, p),
            PercentMode::Number => self.value_eq(gp.unwrap_or(g), pp.unwrap_or(p)),
            PercentMode::Either => match (gp, pp) {
                (Some(a), Some(b)) => self.value_eq(a, b),
                (Some(a), None) => Ok(self.value_eq(g, p)? || self.value_eq(a, p)?),
                (None, Some(b)) => Ok(self.value_eq(g, p)? || self.value_eq(g, b)?),
                (None, None) => self.value_eq(g, p),
            },
        }
    }

    fn value_eq(&mut self, a: &Expr, b: &Expr) -> R {
        let (ia, ib) = (infinity_sign(a), infinity_sign(b));
        if ia.is_some() || ib.is_some() {
            return Ok(ia == ib);
        }
        let ea = exact(a, &mut self.cx, &[])?;
        let eb = exact(b, &mut self.cx, &[])?;
        if let (Some(x), Some(y)) = (&ea, &eb) {
            if x == y {
                return Ok(true);
            }
            // Both exact and different. A decimal is allowed the tolerance only
            // against a value no decimal can write exactly (`0.3333333333` for
            // `1/3`), never against one it could (`1000000.5` is not `1000000`).
            let other = match (a.has_decimal(), b.has_decimal()) {
                (true, false) => y,
                (false, true) => x,
                _ => return Ok(false),
            };
            return Ok(!terminates(other) && (self.close(to_c(x), to_c(y)) || rounded_gold(a, y)));
        }
        // A gold answer that is itself a rounded decimal (`3.14`, three or
        // more significant digits) accepts the exact value it rounds (`\pi`).
        if ea.is_some()
            && eb.is_none()
            && let Some(g) = bare_decimal(a)
            && !b.has_vars()
            && let Ok(v) = self.value(
                b,
                Point {
                    seed: 0,
                    integer: false,
                },
            )
            && v.is_real()
            && rounds_to(&g, v.re)
        {
            return Ok(true);
        }
        // A bare decimal against a value no decimal writes exactly (`\pi`,
        // `\sqrt 2`) must be written finely enough to pin it within the
        // tolerance: `6366.2` is not `20000/\pi` (6366.1977...) even though
        // it happens to lie within 1e-6 of it; `3.14159265` is `\pi`.
        for (side, other) in [(a, &eb), (b, &ea)] {
            if other.is_none()
                && let Some(v) = bare_decimal(side)
                && !v.is_zero()
            {
                let digits = decimal_places(&v);
                let half_ulp = 0.5 * 10f64.powi(-(digits as i32));
                let mag = num_traits::ToPrimitive::to_f64(&v).map_or(f64::INFINITY, f64::abs);
                if half_ulp / mag > self.cfg.rel_tol {
                    return Ok(false);
                }
            }
        }
        let vars = a.has_vars() || b.has_vars();
        let mut agree = 0;
        for pt in points(self.cfg) {
            let va = match &ea {
                Some(x) => Ok(to_c(x)),
                None => self.value(a, pt),
            };
            let vb = match &eb {
                Some(y) => Ok(to_c(y)),
                None => self.value(b, pt),
            };
            match (va, vb) {
                (Ok(x), Ok(y)) => {
                    if !self.close(x, y) {
                        return Ok(false);
                    }
                    agree += 1;
                }
                (Err(NumError::Limit), _) | (_, Err(NumError::Limit)) => return Err(Limit),
                _ => {}
            }
            if !vars && agree > 0 {
                break;
            }
        }
        Ok(agree > 0)
    }
}

/// Whether the gold side `g` is a rounded decimal of at least three
/// significant digits that the exact value `v` rounds to (`33.3` and
/// `\frac{100}{3}`); the gold is always the first side.
fn rounded_gold(g: &Expr, v: &Q) -> bool {
    match (bare_decimal(g), num_traits::ToPrimitive::to_f64(v)) {
        (Some(d), Some(f)) => rounds_to(&d, f),
        _ => false,
    }
}

fn rounds_to(d: &Q, v: f64) -> bool {
    let places = decimal_places(d);
    let Some(df) = num_traits::ToPrimitive::to_f64(d) else {
        return false;
    };
    let scaled = d * Q::from_integer(num_traits::pow(
        num_bigint::BigInt::from(10),
        places as usize,
    ));
    let digits = scaled
        .to_integer()
        .to_string()
        .trim_start_matches('-')
        .len();
    if places == 0 || digits < 3 || !v.is_finite() {
        return false;
    }
    let scale = 10f64.powi(places as i32);
    ((v * scale).round() - df * scale).abs() < 0.5
}

/// The value of a literal written with a decimal point (or its negation).
pub(crate) fn bare_decimal(e: &Expr) -> Option<Q> {
    match e {
        Expr::Num {
            value,
            decimal: true,
        } => Some(value.clone()),
        Expr::Neg(x) => bare_decimal(x).map(|v| -v),
        _ => None,
    }
}

/// Digits after the point of a terminating decimal (at most 40).
fn decimal_places(q: &Q) -> u32 {
    let ten = Q::from_integer(10.into());
    let mut x = q.clone();
    let mut k = 0;
    while !x.is_integer() && k < 40 {
        x *= &ten;
        k += 1;
    }
    k
}

/// Whether `q` has a finite decimal expansion (its denominator is 2^a 5^b).
/// Linear in the size of the denominator: twos go by a shift, fives in chunks.
fn terminates(q: &Q) -> bool {
    use num_traits::One;
    /// 5^27, the largest power of five below 2^63.
    const FIVE_27: u64 = 7_450_580_596_923_828_125;
    let mut d = q.denom().magnitude().clone();
    if let Some(z) = d.trailing_zeros() {
        d >>= z;
    }
    for chunk in [FIVE_27, 5] {
        while (&d % chunk).is_zero() {
            d /= chunk;
        }
    }
    d.is_one()
}

fn to_c(q: &Q) -> C {
    use num_traits::ToPrimitive;
    C {
        re: q.to_f64().unwrap_or(f64::NAN),
        im: 0.0,
    }
}

/// The evaluation points: `eval_points` real ones, then three integer ones.
fn points(cfg: &GradeConfig) -> impl Iterator<Item = Point> {
    let n = cfg.limits.eval_points as u64;
    (0..n)
        .map(|s| Point {
            seed: s,
            integer: false,
        })
        .chain((0..3).map(|s| Point {
            seed: 1000 + s,
            integer: true,
        }))
}

fn infinity_sign(e: &Expr) -> Option<i8> {
    match e {
        Expr::Inf => Some(1),
        Expr::Neg(a) => infinity_sign(a).map(|s| -s),
        Expr::Add(v) if v.len() == 1 => infinity_sign(&v[0]),
        _ => None,
    }
}

fn interval_parts(e: &Expr) -> Option<(&Expr, &Expr, bool, bool)> {
    match e {
        Expr::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        } => Some((lo, hi, *lo_closed, *hi_closed)),
        Expr::Tuple { items, paren: true } if items.len() == 2 => {
            Some((&items[0], &items[1], false, false))
        }
        _ => None,
    }
}

fn vector(m: &[Vec<Expr>]) -> Option<Vec<Expr>> {
    if m.len() == 1 {
        Some(m[0].clone())
    } else if m.iter().all(|r| r.len() == 1) {
        Some(m.iter().map(|r| r[0].clone()).collect())
    } else {
        None
    }
}

/// A left-hand side that names the answer rather than constraining it:
/// `x`, `y_1`, `f(x)`, `A:B`, `\frac{NO}{BO}`, `(p, q)`.
pub fn is_label(e: &Expr) -> bool {
    match e {
        Expr::Var { .. } => true,
        Expr::Mul(v) => {
            // `f(x)`, and an inverse `h^{-1}(x)`.
            let head = match v.first() {
                Some(Expr::Var { .. }) => true,
                Some(Expr::Pow(b, e)) => {
                    matches!(&**b, Expr::Var { .. })
                        && v.len() >= 2
                        && match &**e {
                            Expr::Neg(one) => lit_is(one, 1),
                            x => lit_is(x, -1),
                        }
                }
                _ => false,
            };
            head && v[1..].iter().all(|x| is_label(x) || is_plain_arg(x))
        }
        Expr::Div(a, b) => is_label(a) && is_label(b),
        // `|AB|`: the length of a segment between two named points.
        Expr::Abs(x) => {
            matches!(&**x, Expr::Mul(v) if v.len() >= 2 && v.iter().all(|p| matches!(p, Expr::Var { name, sub: None } if name.len() == 1 && name.chars().all(|c| c.is_ascii_uppercase()))))
        }
        Expr::Ratio(v) => v.iter().all(is_label),
        Expr::Tuple { items, .. } => items.iter().all(is_label),
        _ => false,
    }
}

fn lit_is(e: &Expr, v: i64) -> bool {
    matches!(e, Expr::Num { value, .. } if *value == Q::from_integer(v.into()))
}

/// Arguments in `f(2)`: numbers and labels.
fn is_plain_arg(e: &Expr) -> bool {
    matches!(e, Expr::Num { .. }) || is_label(e)
}

fn label_key(e: &Expr) -> String {
    format!("{e:?}")
}

/// The value a bare answer is compared with: `x = 3` gives `3`, `x \in S` gives `S`.
fn assignment_value(e: &Expr) -> Option<&Expr> {
    let Expr::Rel { terms, ops } = e else {
        return None;
    };
    let ok = ops.iter().all(|o| *o == RelOp::Eq) || (ops.len() == 1 && ops[0] == RelOp::In);
    (ok && is_label(&terms[0])).then(|| &terms[terms.len() - 1])
}

/// The distinct variable names in an expression.
fn var_names(e: &Expr) -> Vec<String> {
    let mut names: Vec<String> = vec![];
    e.visit(&mut |x| {
        if let Expr::Var { name, .. } = x
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    });
    names
}

/// The values of `b = 1, a = -2` ordered by their one-letter names (`-2, 1`);
/// `None` unless every item assigns a constant to a distinct plain letter.
fn sorted_assignments(v: &[Expr]) -> Option<Vec<Expr>> {
    let mut named = Vec::with_capacity(v.len());
    for it in v {
        let Expr::Rel { terms, ops } = it else {
            return None;
        };
        let (Expr::Var { name, sub: None }, [RelOp::Eq]) = (&terms[0], ops.as_slice()) else {
            return None;
        };
        if name.chars().count() != 1 || terms[1].has_vars() {
            return None;
        }
        named.push((name.clone(), terms[1].clone()));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    if named.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(named.into_iter().map(|(_, e)| e).collect())
}

/// `S` of `x \in S` (a label on the left).
fn membership(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Rel { terms, ops }
            if ops.len() == 1 && ops[0] == RelOp::In && is_label(&terms[0]) =>
        {
            Some(&terms[1])
        }
        _ => None,
    }
}

fn is_inequality(e: &Expr) -> bool {
    matches!(e, Expr::Rel { ops, .. } if ops.iter().all(|o| o.is_inequality()))
}

/// Largest matrix side multiplied out (`n^3` entry products).
const MAX_MATRIX_PRODUCT: usize = 16;

/// Matrix arithmetic written out: `c \begin{pmatrix}..\end{pmatrix}`,
/// `-M`, `A + B`, `A B` with explicit matrices, as the matrix of entries.
/// `None` for a lone matrix (nothing to do) and for anything without one.
fn matrix_expr(e: &Expr) -> Option<Expr> {
    if matches!(e, Expr::Matrix(_)) {
        return None;
    }
    matrix_value(e, 0).map(Expr::Matrix)
}

fn matrix_value(e: &Expr, depth: usize) -> Option<Vec<Vec<Expr>>> {
    if depth > 8 {
        return None;
    }
    let map = |m: Vec<Vec<Expr>>, f: &dyn Fn(Expr) -> Expr| -> Vec<Vec<Expr>> {
        m.into_iter()
            .map(|row| row.into_iter().map(f).collect())
            .collect()
    };
    match e {
        Expr::Matrix(m) => Some(m.clone()),
        Expr::Neg(inner) => Some(map(matrix_value(inner, depth + 1)?, &|x| {
            Expr::Neg(Box::new(x))
        })),
        Expr::Add(v) => {
            let ms: Vec<Vec<Vec<Expr>>> = v
                .iter()
                .map(|x| matrix_value(x, depth + 1))
                .collect::<Option<_>>()?;
            let first = ms.first()?;
            let dims = |m: &Vec<Vec<Expr>>| (m.len(), m.first().map_or(0, Vec::len));
            if ms
                .iter()
                .any(|m| dims(m) != dims(first) || m.iter().any(|r| r.len() != dims(first).1))
            {
                return None;
            }
            let (rows, cols) = dims(first);
            Some(
                (0..rows)
                    .map(|i| {
                        (0..cols)
                            .map(|j| Expr::Add(ms.iter().map(|m| m[i][j].clone()).collect()))
                            .collect()
                    })
                    .collect(),
            )
        }
        Expr::Mul(v) => {
            let mut scalars = vec![];
            let mut acc: Option<Vec<Vec<Expr>>> = None;
            for x in v {
                let mut has_matrix = false;
                x.visit(&mut |y| has_matrix |= matches!(y, Expr::Matrix(_)));
                if !has_matrix {
                    scalars.push(x.clone());
                    continue;
                }
                let m = matrix_value(x, depth + 1)?;
                acc = Some(match acc {
                    None => m,
                    Some(a) => mat_mul(&a, &m)?,
                });
            }
            let m = acc?;
            if scalars.is_empty() {
                return Some(m);
            }
            Some(map(m, &|x| {
                let mut f = scalars.clone();
                f.push(x);
                Expr::Mul(f)
            }))
        }
        _ => None,
    }
}

fn mat_mul(a: &[Vec<Expr>], b: &[Vec<Expr>]) -> Option<Vec<Vec<Expr>>> {
    let (n, k) = (a.len(), a.first()?.len());
    let m = b.first()?.len();
    if b.len() != k
        || a.iter().any(|r| r.len() != k)
        || b.iter().any(|r| r.len() != m)
        || n.max(k).max(m) > MAX_MATRIX_PRODUCT
    {
        return None;
    }
    Some(
        (0..n)
            .map(|i| {
                (0..m)
                    .map(|j| {
                        Expr::Add(
                            (0..k)
                                .map(|t| Expr::Mul(vec![a[i][t].clone(), b[t][j].clone()]))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .collect(),
    )
}

/// A region that only a union of intervals writes: `x \neq 2` (the line
/// without 2), or a list of inequalities and intervals joined by "or"
/// (`x < 3 \text{ or } x > 4`, `x \le -1, x \ge 1`). `None` for anything
/// else, a single inequality included (that is an interval, compared as one).
fn region(e: &Expr, c: &mut Cmp) -> Result<Option<Expr>, Limit> {
    let open = |lo: Expr, hi: Expr, closed: bool| Expr::interval(lo, hi, closed, closed);
    match e {
        // `|x| > a`, `|x| \le a`, `a < |x|`.
        Expr::Rel { terms, ops } if ops.len() == 1 && ops[0].is_inequality() => {
            let (inner, bound, op) = match (&terms[0], &terms[1]) {
                (Expr::Abs(x), b) if !b.has_vars() => (&**x, b, ops[0]),
                (b, Expr::Abs(x)) if !b.has_vars() => (&**x, b, ops[0].flipped()),
                _ => return Ok(None),
            };
            if !is_label(inner) {
                return Ok(None);
            }
            let neg = |x: &Expr| Expr::Neg(Box::new(x.clone()));
            let inf = || Expr::Inf;
            Ok(Some(match op {
                RelOp::Lt | RelOp::Le => open(neg(bound), bound.clone(), op == RelOp::Le),
                _ => {
                    let c = op == RelOp::Ge;
                    Expr::Union(vec![
                        Expr::Interval {
                            lo: Box::new(neg(&inf())),
                            hi: Box::new(neg(bound)),
                            lo_closed: false,
                            hi_closed: c,
                        },
                        Expr::Interval {
                            lo: Box::new(bound.clone()),
                            hi: Box::new(inf()),
                            lo_closed: c,
                            hi_closed: false,
                        },
                    ])
                }
            }))
        }
        Expr::Rel { terms, ops } if ops.len() == 1 && ops[0] == RelOp::Ne => {
            let bound = if is_label(&terms[0]) && !terms[1].has_vars() {
                &terms[1]
            } else if is_label(&terms[1]) && !terms[0].has_vars() {
                &terms[0]
            } else {
                return Ok(None);
            };
            let piece = |lo: Expr, hi: Expr| Expr::interval(lo, hi, false, false);
            Ok(Some(Expr::Union(vec![
                piece(Expr::Neg(Box::new(Expr::Inf)), bound.clone()),
                piece(bound.clone(), Expr::Inf),
            ])))
        }
        // `1 \le |z| \le \frac32`: two intervals mirrored about 0.
        Expr::Rel { terms, ops }
            if ops.len() == 2
                && ops.iter().all(|o| matches!(o, RelOp::Lt | RelOp::Le))
                && matches!(&terms[1], Expr::Abs(x) if is_label(x))
                && !terms[0].has_vars()
                && !terms[2].has_vars() =>
        {
            let zero = Q::from_integer(0.into());
            match exact(&terms[0], &mut c.cx, &[])? {
                Some(lo) if lo > zero => {}
                _ => return Ok(None),
            }
            let (lo, hi) = (&terms[0], &terms[2]);
            let (lc, hc) = (ops[0] == RelOp::Le, ops[1] == RelOp::Le);
            let neg = |x: &Expr| Expr::Neg(Box::new(x.clone()));
            Ok(Some(Expr::Union(vec![
                Expr::interval(neg(hi), neg(lo), hc, lc),
                Expr::interval(lo.clone(), hi.clone(), lc, hc),
            ])))
        }
        Expr::List(items) if items.len() >= 2 => {
            let mut pieces = Vec::with_capacity(items.len());
            let mut any_rel = false;
            // `0 < x < 36, x \neq 9`: the points a region leaves out.
            let mut holes = vec![];
            for it in items {
                if let Expr::Rel { terms, ops } = it
                    && ops.len() == 1
                    && ops[0] == RelOp::Ne
                    && is_label(&terms[0])
                    && !terms[1].has_vars()
                {
                    holes.push(&terms[1]);
                    continue;
                }
                match it {
                    Expr::Rel { ops, .. } if ops.iter().all(|o| o.is_inequality()) => {
                        match ineq_interval(it, c)? {
                            Some(i) => pieces.push(i),
                            None => return Ok(None),
                        }
                        any_rel = true;
                    }
                    Expr::Interval { .. } => pieces.push(it.clone()),
                    _ => return Ok(None),
                }
            }
            if !any_rel {
                return Ok(None);
            }
            for h in holes {
                let Some(hv) = exact(h, &mut c.cx, &[])? else {
                    return Ok(None);
                };
                let mut next = Vec::with_capacity(pieces.len() + 1);
                for piece in pieces {
                    match punch(piece, h, &hv, c)? {
                        Some(parts) => next.extend(parts),
                        None => return Ok(None),
                    }
                }
                pieces = next;
            }
            Ok(Some(Expr::Union(pieces)))
        }
        _ => Ok(None),
    }
}

/// An interval without the point `h` (value `hv`): split in two when `h` is
/// inside, opened when it is a closed end. `None` when a bound is not exact.
fn punch(piece: Expr, h: &Expr, hv: &Q, c: &mut Cmp) -> Result<Option<Vec<Expr>>, Limit> {
    let Some((lo, hi, lc, hc)) = interval_parts(&piece) else {
        return Ok(None);
    };
    let bound = |e: &Expr, c: &mut Cmp| -> Result<Option<std::cmp::Ordering>, Limit> {
        Ok(match infinity_sign(e) {
            Some(s) if s < 0 => Some(std::cmp::Ordering::Less),
            Some(_) => Some(std::cmp::Ordering::Greater),
            None => exact(e, &mut c.cx, &[])?.map(|v| v.cmp(hv)),
        })
    };
    let (Some(lo_vs), Some(hi_vs)) = (bound(lo, c)?, bound(hi, c)?) else {
        return Ok(None);
    };
    use std::cmp::Ordering::*;
    let (lo, hi) = (lo.clone(), hi.clone());
    Ok(Some(match (lo_vs, hi_vs) {
        (Less, Greater) => vec![
            Expr::interval(lo, h.clone(), lc, false),
            Expr::interval(h.clone(), hi, false, hc),
        ],
        (Equal, _) => vec![Expr::interval(lo, hi, false, hc)],
        (_, Equal) => vec![Expr::interval(lo, hi, lc, false)],
        _ => vec![piece],
    }))
}

/// `x > 2`, `2 < x`, `-x > -1`, `0 < f(x) < 1`, `x \ge 3` as intervals.
fn ineq_interval(e: &Expr, c: &mut Cmp) -> Result<Option<Expr>, Limit> {
    let Expr::Rel { terms, ops } = e else {
        return Ok(None);
    };
    if !ops.iter().all(|o| o.is_inequality()) {
        return Ok(None);
    }
    let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
    let mk = Expr::interval;
    if terms.len() == 3 {
        let (a, m, b) = (&terms[0], &terms[1], &terms[2]);
        if a.has_vars() || b.has_vars() || !m.has_vars() {
            return Ok(None);
        }
        let up = |o: RelOp| matches!(o, RelOp::Lt | RelOp::Le);
        return Ok(if up(ops[0]) && up(ops[1]) {
            Some(mk(
                a.clone(),
                b.clone(),
                ops[0] == RelOp::Le,
                ops[1] == RelOp::Le,
            ))
        } else if !up(ops[0]) && !up(ops[1]) {
            Some(mk(
                b.clone(),
                a.clone(),
                ops[1] == RelOp::Ge,
                ops[0] == RelOp::Ge,
            ))
        } else {
            None
        });
    }
    if terms.len() != 2 {
        return Ok(None);
    }
    let (l, r, op) = (&terms[0], &terms[1], ops[0]);
    let (bound, op) = if is_label(l) && !r.has_vars() {
        (r.clone(), op)
    } else if is_label(r) && !l.has_vars() {
        (l.clone(), op.flipped())
    } else {
        match linear_root(l, r, c)? {
            Some((root, slope_pos)) => (
                Expr::Num {
                    value: root,
                    decimal: false,
                },
                if slope_pos { op } else { op.flipped() },
            ),
            None => return Ok(None),
        }
    };
    Ok(Some(match op {
        RelOp::Gt => mk(bound, Expr::Inf, false, false),
        RelOp::Ge => mk(bound, Expr::Inf, true, false),
        RelOp::Lt => mk(neg_inf(), bound, false, false),
        _ => mk(neg_inf(), bound, false, true),
    }))
}

/// For `l - r` linear in its one variable: the root and whether the slope is positive.
fn linear_root(l: &Expr, r: &Expr, c: &mut Cmp) -> Result<Option<(Q, bool)>, Limit> {
    let f = Expr::Add(vec![l.clone(), Expr::Neg(Box::new(r.clone()))]);
    let mut names: Vec<String> = vec![];
    let mut subscripted = false;
    f.visit(&mut |e| {
        if let Expr::Var { name, sub } = e {
            subscripted |= sub.is_some();
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    });
    if names.len() != 1 || subscripted {
        return Ok(None);
    }
    let at = |t: i64, c: &mut Cmp| {
        exact(
            &f,
            &mut c.cx,
            &[(names[0].clone(), Q::from_integer(t.into()))],
        )
    };
    let (Some(f0), Some(f1), Some(f2)) = (at(0, c)?, at(1, c)?, at(2, c)?) else {
        return Ok(None);
    };
    let slope = &f1 - &f0;
    if slope == Q::from_integer(0.into()) || &f2 - &f1 != slope {
        return Ok(None);
    }
    let root = -f0 / &slope;
    Ok(Some((root, slope > Q::from_integer(0.into()))))
}

/// Replaces `\pm` by its two branches. Scalars become a list of values,
/// relations a list of relations; lists and sets absorb the branches.
fn expand_pm(e: &Expr) -> Option<Expr> {
    match e {
        Expr::List(v) | Expr::Set(v) => {
            let mut out = vec![];
            for x in v {
                match expand_pm(x) {
                    Some(Expr::List(xs)) => out.extend(xs),
                    Some(x) => out.push(x),
                    None => out.push(x.clone()),
                }
            }
            Some(if matches!(e, Expr::Set(_)) {
                Expr::Set(out)
            } else {
                Expr::List(out)
            })
        }
        Expr::Rel { terms, ops } => {
            let idx = terms.iter().position(Expr::has_pm)?;
            let variants = branches(&terms[idx]);
            Some(Expr::List(
                variants
                    .into_iter()
                    .map(|v| {
                        let mut t = terms.clone();
                        t[idx] = v;
                        Expr::Rel {
                            terms: t,
                            ops: ops.clone(),
                        }
                    })
                    .collect(),
            ))
        }
        // `(\pm 3, \pm 2)`: every sign choice, one tuple each.
        Expr::Tuple { items, paren } if items.iter().all(Expr::is_scalar) => {
            let mut out = vec![Vec::with_capacity(items.len())];
            for it in items {
                let opts = if it.has_pm() {
                    branches(it)
                } else {
                    vec![it.clone()]
                };
                if out.len() * opts.len() > MAX_PM_VARIANTS {
                    return None;
                }
                out = out
                    .into_iter()
                    .flat_map(|pre| {
                        opts.iter().map(move |o| {
                            let mut t = pre.clone();
                            t.push(o.clone());
                            t
                        })
                    })
                    .collect();
            }
            Some(Expr::List(
                out.into_iter()
                    .map(|items| Expr::Tuple {
                        items,
                        paren: *paren,
                    })
                    .collect(),
            ))
        }
        e if e.is_scalar() && e.has_pm() => Some(Expr::List(branches(e))),
        _ => None,
    }
}

/// Both branches of every `\pm` in a scalar (capped).
fn branches(e: &Expr) -> Vec<Expr> {
    let mut out = vec![e.clone()];
    for _ in 0..4 {
        let mut next = vec![];
        let mut changed = false;
        for x in &out {
            match split_first_pm(x) {
                Some((a, b)) => {
                    next.push(a);
                    next.push(b);
                    changed = true;
                }
                None => next.push(x.clone()),
            }
        }
        out = next;
        if !changed || out.len() >= MAX_PM_VARIANTS {
            break;
        }
    }
    out
}

/// Rewrites the first `a \pm b` found into `a + b` and `a - b`.
fn split_first_pm(e: &Expr) -> Option<(Expr, Expr)> {
    if let Expr::PlusMinus(a, b) = e {
        let plus = Expr::Add(vec![(**a).clone(), (**b).clone()]);
        let minus = Expr::Add(vec![(**a).clone(), Expr::Neg(b.clone())]);
        return Some((plus, minus));
    }
    let rebuild =
        |f: &dyn Fn(Expr) -> Expr, inner: &Expr| split_first_pm(inner).map(|(x, y)| (f(x), f(y)));
    match e {
        Expr::Neg(a) => rebuild(&|x| Expr::Neg(Box::new(x)), a),
        Expr::Div(a, b) => rebuild(&|x| Expr::Div(Box::new(x), b.clone()), a)
            .or_else(|| rebuild(&|x| Expr::Div(a.clone(), Box::new(x)), b)),
        Expr::Add(v) | Expr::Mul(v) => {
            for (i, x) in v.iter().enumerate() {
                if let Some((p, m)) = split_first_pm(x) {
                    let mut vp = v.clone();
                    let mut vm = v.clone();
                    vp[i] = p;
                    vm[i] = m;
                    return Some(if matches!(e, Expr::Add(_)) {
                        (Expr::Add(vp), Expr::Add(vm))
                    } else {
                        (Expr::Mul(vp), Expr::Mul(vm))
                    });
                }
            }
            None
        }
        _ => None,
    }
}

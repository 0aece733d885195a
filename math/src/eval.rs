//! Evaluation: exact (big rationals) where the value is rational, and complex
//! floating point at deterministic pseudo-random points otherwise.
//!
//! Both evaluators spend [`Fuel`]; running out, or an exponent or integer
//! beyond [`crate::Limits`], is [`Limit`], which the grader reports as
//! "unparseable". `10^{10^{10}}` therefore costs a few checks, not memory.
//!
//! Variables need no assignment table: a variable's value at a point is a hash
//! of its name, its subscript's value and the point's seed, so `F_{n-k}` and
//! `y_1` behave as independent unknowns, and a summation index binds over them.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use crate::ast::{Constant, Expr, Func};
use crate::config::Limits;

/// A cap was hit: the input is treated as unparseable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit;

/// Work budget shared by one grade call.
pub struct Fuel {
    left: u64,
}

impl Fuel {
    pub fn new(n: u64) -> Self {
        Fuel { left: n }
    }

    pub fn spend(&mut self, n: u64) -> Result<(), Limit> {
        if self.left < n {
            self.left = 0;
            return Err(Limit);
        }
        self.left -= n;
        Ok(())
    }
}

pub type Q = BigRational;

/// Most terms a `\sum` may expand to.
const MAX_SUM_TERMS: i64 = 10_000;
/// Largest `n!` evaluated exactly.
const MAX_FACTORIAL: u64 = 3000;

pub struct Ctx<'a> {
    pub lim: &'a Limits,
    pub fuel: Fuel,
}

fn bits(q: &Q) -> u64 {
    q.numer().bits().max(q.denom().bits())
}

/// Exact rational value, or `None` when the value is not a known rational
/// (a variable, a constant, a function, division by zero).
pub fn exact(e: &Expr, cx: &mut Ctx, env: &[(String, Q)]) -> Result<Option<Q>, Limit> {
    cx.fuel.spend(1)?;
    let r = match e {
        Expr::Num { value, .. } => Some(value.clone()),
        Expr::Var { name, sub: None } => env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()),
        Expr::Neg(a) => exact(a, cx, env)?.map(|v| -v),
        Expr::Add(v) => {
            let mut acc = Q::zero();
            for x in v {
                let Some(y) = exact(x, cx, env)? else {
                    return Ok(None);
                };
                cx.fuel.spend(bits(&y) / 256)?;
                acc += y;
            }
            Some(acc)
        }
        Expr::Mul(v) => {
            let mut acc = Q::one();
            for x in v {
                let Some(y) = exact(x, cx, env)? else {
                    return Ok(None);
                };
                cx.fuel.spend((bits(&y) + bits(&acc)) / 256)?;
                acc *= y;
                if bits(&acc) > cx.lim.max_integer_bits {
                    return Err(Limit);
                }
            }
            Some(acc)
        }
        Expr::Div(a, b) => match (exact(a, cx, env)?, exact(b, cx, env)?) {
            (Some(x), Some(y)) if !y.is_zero() => Some(x / y),
            _ => None,
        },
        Expr::Pow(a, b) => match (exact(a, cx, env)?, exact(b, cx, env)?) {
            (Some(x), Some(y)) => pow_exact(&x, &y, cx)?,
            _ => None,
        },
        Expr::Root(n, a) => match (exact(n, cx, env)?, exact(a, cx, env)?) {
            (Some(n), Some(x)) if !n.is_zero() => pow_exact(&x, &n.recip(), cx)?,
            _ => None,
        },
        Expr::Percent(a) => exact(a, cx, env)?.map(|v| v / Q::from_integer(100.into())),
        Expr::Abs(a) => exact(a, cx, env)?.map(|v| v.abs()),
        Expr::Apply(Func::Floor, a) => exact(a, cx, env)?.map(|v| v.floor()),
        Expr::Apply(Func::Ceil, a) => exact(a, cx, env)?.map(|v| v.ceil()),
        Expr::Factorial(a) => match exact(a, cx, env)? {
            Some(n) if n.is_integer() && !n.is_negative() => {
                let n = n
                    .to_integer()
                    .to_u64()
                    .filter(|n| *n <= MAX_FACTORIAL)
                    .ok_or(Limit)?;
                cx.fuel.spend(n)?;
                let mut acc = BigInt::one();
                for k in 2..=n {
                    acc *= k;
                }
                Some(Q::from_integer(acc))
            }
            _ => None,
        },
        Expr::Binom(n, k) => match (exact(n, cx, env)?, exact(k, cx, env)?) {
            (Some(n), Some(k)) if k.is_integer() && !k.is_negative() => {
                let k = k
                    .to_integer()
                    .to_u64()
                    .filter(|k| *k <= MAX_FACTORIAL)
                    .ok_or(Limit)?;
                cx.fuel.spend(k)?;
                let mut acc = Q::one();
                for i in 0..k {
                    acc = acc * (&n - Q::from_integer(i.into())) / Q::from_integer((i + 1).into());
                }
                Some(acc)
            }
            _ => None,
        },
        Expr::Sum {
            var,
            lo,
            hi,
            body,
            product,
        } => {
            let (Some(lo), Some(hi)) = (exact(lo, cx, env)?, exact(hi, cx, env)?) else {
                return Ok(None);
            };
            let Some((lo, hi)) = int_bounds(&lo, &hi)? else {
                return Ok(None);
            };
            let mut acc = if *product { Q::one() } else { Q::zero() };
            let mut env2 = env.to_vec();
            for k in lo..=hi {
                env2.push((var.clone(), Q::from_integer(k.into())));
                let Some(t) = exact(body, cx, &env2)? else {
                    return Ok(None);
                };
                env2.pop();
                if *product {
                    acc *= t
                } else {
                    acc += t
                }
                if bits(&acc) > cx.lim.max_integer_bits {
                    return Err(Limit);
                }
            }
            Some(acc)
        }
        _ => None,
    };
    Ok(r)
}

fn int_bounds(lo: &Q, hi: &Q) -> Result<Option<(i64, i64)>, Limit> {
    if !lo.is_integer() || !hi.is_integer() {
        return Ok(None);
    }
    let (Some(l), Some(h)) = (lo.to_integer().to_i64(), hi.to_integer().to_i64()) else {
        return Err(Limit);
    };
    if h.saturating_sub(l) > MAX_SUM_TERMS {
        return Err(Limit);
    }
    Ok(Some((l, h)))
}

/// `x^y` when it is rational; a cap on exponent and size first.
fn pow_exact(x: &Q, y: &Q, cx: &mut Ctx) -> Result<Option<Q>, Limit> {
    let p = y.numer();
    let q = y.denom();
    if x.is_zero() {
        return Ok(if p.is_positive() {
            Some(Q::zero())
        } else {
            None
        });
    }
    if x.abs().is_one() && q.is_one() {
        let even = (p % 2u32).is_zero();
        return Ok(Some(if x.is_negative() && !even {
            -Q::one()
        } else {
            Q::one()
        }));
    }
    let pn = p
        .abs()
        .to_u64()
        .filter(|n| *n <= cx.lim.max_exponent)
        .ok_or(Limit)?;
    let qn = q.to_u32().ok_or(Limit)?;
    let base = if qn == 1 {
        x.clone()
    } else {
        if qn > 64 {
            return Ok(None);
        }
        if x.is_negative() && qn % 2 == 0 {
            return Ok(None);
        }
        let (n, d) = (x.numer().abs(), x.denom().clone());
        let (rn, rd) = (n.nth_root(qn), d.nth_root(qn));
        if num_traits::pow(rn.clone(), qn as usize) != n
            || num_traits::pow(rd.clone(), qn as usize) != d
        {
            return Ok(None);
        }
        let r = Q::new(rn, rd);
        if x.is_negative() { -r } else { r }
    };
    if bits(&base).saturating_mul(pn) > cx.lim.max_integer_bits {
        return Err(Limit);
    }
    cx.fuel.spend(bits(&base).saturating_mul(pn) / 64)?;
    // Numerator and denominator apart: powers of coprime integers stay
    // coprime, so no gcd is needed (a rational's own pow reduces at every
    // multiplication, milliseconds for a 50,000-bit `1000^{5040}`).
    let (n, d) = base.into_raw();
    let r = Q::new_raw(
        num_traits::pow(n, pn as usize),
        num_traits::pow(d, pn as usize),
    );
    Ok(Some(if p.is_negative() { r.recip() } else { r }))
}

/// A complex number; the numeric evaluator works over C throughout so that
/// `e^{i\pi}` and `i^2` need no special cases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const fn new(re: f64, im: f64) -> C {
        C { re, im }
    }
    fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
    fn sub(self, o: C) -> C {
        C::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: C) -> C {
        C::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        C::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C::new(m * self.im.cos(), m * self.im.sin())
    }
    fn ln(self) -> C {
        // `+ 0.0` turns a negative zero (from `-4`, negated) into a positive
        // one, so a negative real gets the principal branch (`\sqrt{-4} = 2i`,
        // not `-2i`).
        C::new(self.abs().ln(), (self.im + 0.0).atan2(self.re))
    }
    pub(crate) fn is_real(self) -> bool {
        self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    fn powi(self, mut n: u64) -> C {
        let mut acc = C::real(1.0);
        let mut b = self;
        while n > 0 {
            if n & 1 == 1 {
                acc = acc.mul(b);
            }
            b = b.mul(b);
            n >>= 1;
        }
        acc
    }
    fn sin(self) -> C {
        C::new(
            self.re.sin() * self.im.cosh(),
            self.re.cos() * self.im.sinh(),
        )
    }
    fn cos(self) -> C {
        C::new(
            self.re.cos() * self.im.cosh(),
            -self.re.sin() * self.im.sinh(),
        )
    }
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

/// Why a numeric evaluation produced no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// A cap was hit.
    Limit,
    /// Undefined at this point (division by zero, a compound, log of 0).
    Undefined,
}

impl From<Limit> for NumError {
    fn from(_: Limit) -> Self {
        NumError::Limit
    }
}

/// One evaluation point: a seed, and whether variables take small integers
/// (needed by sums and factorials over a variable) or reals in [0.5, 2.5).
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub seed: u64,
    pub integer: bool,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn var_value(name: &str, sub: Option<f64>, pt: Point) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    if let Some(s) = sub {
        h = splitmix(h ^ (s * 1e6).round().to_bits());
    }
    let u = splitmix(h ^ splitmix(pt.seed));
    if pt.integer {
        2.0 + (u % 8) as f64
    } else {
        0.5 + 2.0 * ((u >> 11) as f64 / (1u64 << 53) as f64)
    }
}

type NR = Result<C, NumError>;

/// Complex value at `pt`; `env` binds summation indices.
pub fn num(e: &Expr, cx: &mut Ctx, pt: Point, env: &mut Vec<(String, f64)>) -> NR {
    cx.fuel.spend(1)?;
    let v = match e {
        Expr::Num { value, .. } => C::real(value.to_f64().ok_or(NumError::Undefined)?),
        Expr::Var { name, sub } => {
            let s = match sub {
                Some(s) => {
                    let v = num(s, cx, pt, env)?;
                    if !v.is_real() {
                        return Err(NumError::Undefined);
                    }
                    Some(v.re)
                }
                None => {
                    if let Some((_, v)) = env.iter().rev().find(|(n, _)| n == name) {
                        return Ok(C::real(*v));
                    }
                    None
                }
            };
            C::real(var_value(name, s, pt))
        }
        Expr::Const(Constant::Pi) => C::real(std::f64::consts::PI),
        Expr::Const(Constant::E) => C::real(std::f64::consts::E),
        Expr::Const(Constant::I) => C::new(0.0, 1.0),
        Expr::Neg(a) => {
            let v = num(a, cx, pt, env)?;
            C::new(-v.re, -v.im)
        }
        Expr::Add(v) => {
            let mut acc = C::real(0.0);
            for x in v {
                acc = acc.add(num(x, cx, pt, env)?);
            }
            acc
        }
        Expr::Mul(v) => {
            let mut acc = C::real(1.0);
            for x in v {
                acc = acc.mul(num(x, cx, pt, env)?);
            }
            acc
        }
        Expr::Div(a, b) => {
            let d = num(b, cx, pt, env)?;
            if d.abs() == 0.0 {
                return Err(NumError::Undefined);
            }
            num(a, cx, pt, env)?.div(d)
        }
        Expr::Pow(a, b) => {
            let base = num(a, cx, pt, env)?;
            pow_num(base, b, cx, pt, env)?
        }
        Expr::Root(n, a) => {
            let base = num(a, cx, pt, env)?;
            let inv = Expr::Div(Box::new(Expr::int(1)), n.clone());
            pow_num(base, &inv, cx, pt, env)?
        }
        Expr::Percent(a) => {
            let v = num(a, cx, pt, env)?;
            C::new(v.re / 100.0, v.im / 100.0)
        }
        Expr::Abs(a) => C::real(num(a, cx, pt, env)?.abs()),
        Expr::Apply(f, a) => apply(*f, num(a, cx, pt, env)?)?,
        Expr::Log(base, a) => {
            let x = num(a, cx, pt, env)?;
            if x.abs() == 0.0 {
                return Err(NumError::Undefined);
            }
            let l = x.ln();
            match base {
                Some(b) => {
                    let lb = num(b, cx, pt, env)?.ln();
                    if lb.abs() == 0.0 {
                        return Err(NumError::Undefined);
                    }
                    l.div(lb)
                }
                None => l,
            }
        }
        Expr::Factorial(a) => {
            let n = num(a, cx, pt, env)?;
            let k = as_small_int(n)
                .filter(|k| (0..=170).contains(k))
                .ok_or(NumError::Undefined)?;
            C::real((2..=k).map(|i| i as f64).product())
        }
        Expr::Binom(n, k) => {
            let n = num(n, cx, pt, env)?;
            let k = as_small_int(num(k, cx, pt, env)?)
                .filter(|k| (0..=1000).contains(k))
                .ok_or(NumError::Undefined)?;
            cx.fuel.spend(k as u64)?;
            let mut acc = C::real(1.0);
            for i in 0..k {
                acc = acc
                    .mul(n.sub(C::real(i as f64)))
                    .div(C::real((i + 1) as f64));
            }
            acc
        }
        Expr::Sum {
            var,
            lo,
            hi,
            body,
            product,
        } => {
            let lo = as_small_int(num(lo, cx, pt, env)?).ok_or(NumError::Undefined)?;
            let hi = as_small_int(num(hi, cx, pt, env)?).ok_or(NumError::Undefined)?;
            if hi.saturating_sub(lo) > MAX_SUM_TERMS {
                return Err(NumError::Limit);
            }
            let mut acc = C::real(if *product { 1.0 } else { 0.0 });
            for k in lo..=hi {
                env.push((var.clone(), k as f64));
                let t = num(body, cx, pt, env);
                env.pop();
                acc = if *product { acc.mul(t?) } else { acc.add(t?) };
            }
            acc
        }
        _ => return Err(NumError::Undefined),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(NumError::Undefined)
    }
}

fn as_small_int(v: C) -> Option<i64> {
    (v.is_real() && (v.re - v.re.round()).abs() < 1e-9 && v.re.abs() < 1e15)
        .then(|| v.re.round() as i64)
}

/// `base^exp`, with the real branch for odd roots of negatives (`\sqrt[3]{-8} = -2`,
/// `(-8)^{2/3} = 4`), repeated squaring for integer exponents, and the
/// principal branch otherwise.
fn pow_num(base: C, exp: &Expr, cx: &mut Ctx, pt: Point, env: &mut Vec<(String, f64)>) -> NR {
    if let Some(q) = exact(exp, cx, &[])? {
        let (p, d) = (q.numer(), q.denom());
        if d.is_one() {
            let n = p
                .abs()
                .to_u64()
                .filter(|n| *n <= cx.lim.max_exponent)
                .ok_or(NumError::Limit)?;
            if base.abs() == 0.0 && p.is_negative() {
                return Err(NumError::Undefined);
            }
            let r = base.powi(n);
            return Ok(if p.is_negative() {
                C::real(1.0).div(r)
            } else {
                r
            });
        }
        let odd = (d % 2u32).is_one();
        if odd && base.is_real() && base.re < 0.0 {
            let mag = (-base.re).powf(q.to_f64().unwrap_or(f64::NAN));
            let even_num = (p % 2u32).is_zero();
            return Ok(C::real(if even_num { mag } else { -mag }));
        }
    }
    let e = num(exp, cx, pt, env)?;
    if base.abs() == 0.0 {
        return if e.re > 0.0 {
            Ok(C::real(0.0))
        } else {
            Err(NumError::Undefined)
        };
    }
    if base.is_real() && base.re > 0.0 && e.is_real() {
        return Ok(C::real(base.re.powf(e.re)));
    }
    Ok(e.mul(base.ln()).exp())
}

fn apply(f: Func, x: C) -> NR {
    let real = |g: fn(f64) -> f64| {
        if x.is_real() {
            Ok(C::real(g(x.re)))
        } else {
            Err(NumError::Undefined)
        }
    };
    let r = match f {
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.sin().div(x.cos()),
        Func::Sec => C::real(1.0).div(x.cos()),
        Func::Csc => C::real(1.0).div(x.sin()),
        Func::Cot => x.cos().div(x.sin()),
        Func::Exp => x.exp(),
        Func::Ln => {
            if x.abs() == 0.0 {
                return Err(NumError::Undefined);
            }
            x.ln()
        }
        Func::Sinh => x.exp().sub(C::new(-x.re, -x.im).exp()).div(C::real(2.0)),
        Func::Cosh => x.exp().add(C::new(-x.re, -x.im).exp()).div(C::real(2.0)),
        Func::Tanh => {
            let (a, b) = (x.exp(), C::new(-x.re, -x.im).exp());
            a.sub(b).div(a.add(b))
        }
        Func::Asin => return real(f64::asin),
        Func::Acos => return real(f64::acos),
        Func::Atan => return real(f64::atan),
        Func::Floor => return real(f64::floor),
        Func::Ceil => return real(f64::ceil),
    };
    Ok(r)
}

//! The built-in synthetic curriculum: math and code problems generated from a
//! seed, so the demo needs no downloads.
//!
//! Difficulty grows the way it does in the papers: harder math buckets need
//! longer responses (multi-digit addition written out digit by digit, carry
//! included), so later stages need larger response limits. Each bucket is
//! reachable from the one before: every step of a three-digit sum is a step the
//! model already makes for two digits. Code problems ask for a one-line Python
//! function from input/output examples; the tests hold cases the prompt does
//! not show, so copying the examples back does not pass.
//!
//! Every problem carries a reference solution, the target of the SFT warm-up stage.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The buckets, in curriculum order.
pub const MATH_BUCKETS: [&str; 3] = ["add1", "add2", "add3"];
/// Code buckets: `lin` is `x+k` or `x*k`; `affine` is `a*x+b`.
pub const CODE_BUCKETS: [&str; 2] = ["lin", "affine"];

/// Up to `per_bucket` distinct problems per bucket, as gradus JSONL rows. A
/// bucket with fewer distinct problems (one-digit sums: 100) gives all it has.
pub fn problems(seed: u64, per_bucket: usize) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (digits, bucket) in (1u32..).zip(MATH_BUCKETS) {
        let mut seen = std::collections::HashSet::new();
        let distinct = operand_count(digits).pow(2);
        while seen.len() < per_bucket.min(distinct) {
            let (a, b) = (operand(&mut rng, digits), operand(&mut rng, digits));
            if seen.insert((a, b)) {
                rows.push(math_row(bucket, seen.len() - 1, a, b));
            }
        }
    }
    for bucket in CODE_BUCKETS {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < per_bucket {
            let f = match bucket {
                "lin" if rng.random_bool(0.5) => Affine {
                    a: 1,
                    b: rng.random_range(1..=9),
                },
                "lin" => Affine {
                    a: rng.random_range(2..=9),
                    b: 0,
                },
                _ => Affine {
                    a: rng.random_range(2..=9),
                    b: rng.random_range(1..=9),
                },
            };
            let shown: Vec<i64> = sample_inputs(&mut rng, 3);
            if seen.insert((f.a, f.b, shown.clone())) {
                rows.push(code_row(bucket, seen.len() - 1, f, &shown, &mut rng));
            }
        }
    }
    rows
}

/// How many operands have exactly `digits` digits.
fn operand_count(digits: u32) -> usize {
    if digits == 1 {
        10
    } else {
        9 * 10usize.pow(digits - 1)
    }
}

/// A uniformly drawn operand with exactly `digits` digits (0..=9 for one digit).
fn operand(rng: &mut ChaCha8Rng, digits: u32) -> u64 {
    let lo = if digits == 1 {
        0
    } else {
        10u64.pow(digits - 1)
    };
    rng.random_range(lo..10u64.pow(digits))
}

fn math_row(bucket: &str, n: usize, a: u64, b: u64) -> Value {
    json!({
        "id": format!("math-{bucket}-{n:05}"),
        "domain": "math",
        "prompt": format!("{a}+{b}="),
        "answer": (a + b).to_string(),
        "difficulty": bucket,
        "source": "synthetic",
        "solution": addition_steps(a, b),
    })
}

/// The digit-by-digit working of `a + b`, least significant digit first, then
/// the boxed sum: `47+38` gives `7+8=15 4+3+1=8 \boxed{85}`. One-digit sums
/// skip the working.
pub fn addition_steps(a: u64, b: u64) -> String {
    let (da, db) = (digits_lsb(a), digits_lsb(b));
    let width = da.len().max(db.len());
    let mut out = String::new();
    if width > 1 {
        let mut carry = 0;
        for i in 0..width {
            let (x, y) = (
                da.get(i).copied().unwrap_or(0),
                db.get(i).copied().unwrap_or(0),
            );
            let s = x + y + carry;
            if carry > 0 {
                out.push_str(&format!("{x}+{y}+{carry}={s} "));
            } else {
                out.push_str(&format!("{x}+{y}={s} "));
            }
            carry = s / 10;
        }
    }
    out.push_str(&format!("\\boxed{{{}}}", a + b));
    out
}

fn digits_lsb(mut n: u64) -> Vec<u64> {
    let mut d = vec![n % 10];
    n /= 10;
    while n > 0 {
        d.push(n % 10);
        n /= 10;
    }
    d
}

/// `f(x) = a*x + b`.
#[derive(Clone, Copy)]
struct Affine {
    a: i64,
    b: i64,
}

impl Affine {
    fn eval(self, x: i64) -> i64 {
        self.a * x + self.b
    }

    fn python(self) -> String {
        match (self.a, self.b) {
            (1, b) => format!("x+{b}"),
            (a, 0) => format!("x*{a}"),
            (a, b) => format!("x*{a}+{b}"),
        }
    }
}

/// `n` distinct inputs in 0..=9, sorted, for the examples shown in the prompt.
fn sample_inputs(rng: &mut ChaCha8Rng, n: usize) -> Vec<i64> {
    let mut xs = Vec::new();
    while xs.len() < n {
        let x = rng.random_range(0..=9);
        if !xs.contains(&x) {
            xs.push(x);
        }
    }
    xs.sort_unstable();
    xs
}

fn code_row(bucket: &str, n: usize, f: Affine, shown: &[i64], rng: &mut ChaCha8Rng) -> Value {
    let examples: Vec<String> = shown
        .iter()
        .map(|&x| format!("f({x})={}", f.eval(x)))
        .collect();
    // Hidden cases: inputs outside the shown range, so only the rule passes.
    let hidden: Vec<i64> = (0..3).map(|_| rng.random_range(10..=99)).collect();
    let inputs: Vec<i64> = shown.iter().copied().chain(hidden).collect();
    json!({
        "id": format!("code-{bucket}-{n:05}"),
        "domain": "code",
        "prompt": format!("{}\n", examples.join(" ")),
        "tests": {
            "kind": "call",
            "fn_name": "f",
            "inputs": inputs.iter().map(|&x| json!([x])).collect::<Vec<_>>(),
            "outputs": inputs.iter().map(|&x| json!(f.eval(x))).collect::<Vec<_>>(),
        },
        "difficulty": bucket,
        "source": "synthetic",
        "solution": format!("def f(x):\n return {}", f.python()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_steps_show_every_carry() {
        assert_eq!(addition_steps(3, 5), "\\boxed{8}");
        assert_eq!(addition_steps(47, 38), "7+8=15 4+3+1=8 \\boxed{85}");
        assert_eq!(
            addition_steps(999, 1),
            "9+1=10 9+0+1=10 9+0+1=10 \\boxed{1000}"
        );
    }

    #[test]
    fn generation_is_deterministic_and_unique_per_bucket() {
        let a = problems(7, 50);
        assert_eq!(a, problems(7, 50));
        assert_ne!(a, problems(8, 50));
        assert_eq!(a.len(), 50 * (MATH_BUCKETS.len() + CODE_BUCKETS.len()));
        let one_digit = problems(7, 500)
            .iter()
            .filter(|r| r["difficulty"] == "add1")
            .count();
        assert_eq!(one_digit, 100, "every one-digit sum, once");
        let ids: std::collections::HashSet<_> = a.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids.len(), a.len());
    }

    #[test]
    fn code_references_satisfy_their_hidden_tests() {
        for row in problems(1, 20).iter().filter(|r| r["domain"] == "code") {
            let body = row["solution"].as_str().unwrap();
            let expr = body.rsplit("return ").next().unwrap();
            let tests = &row["tests"];
            for (inp, out) in tests["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .zip(tests["outputs"].as_array().unwrap())
            {
                let x = inp[0].as_i64().unwrap();
                assert_eq!(eval_expr(expr, x), out.as_i64().unwrap(), "{expr} at {x}");
            }
        }
    }

    /// Evaluates the `x+k`, `x*a` and `x*a+b` shapes the generator writes.
    fn eval_expr(expr: &str, x: i64) -> i64 {
        let (mul, add) = match expr.strip_prefix("x*") {
            Some(rest) => match rest.split_once('+') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => (rest.parse().unwrap(), 0),
            },
            None => (1, expr.strip_prefix("x+").unwrap().parse().unwrap()),
        };
        mul * x + add
    }
}

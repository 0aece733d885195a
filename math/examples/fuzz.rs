//! Stable-toolchain fuzzer for the grader: random LaTeX-ish token soup,
//! mutations of seed answers (built-in, plus every gold and response of a
//! corpus file when given), and pathological shapes (deep nesting, power
//! towers, huge numbers, long lists). Every input is graded as a response
//! (strict and lenient) and as a gold answer; each call is timed.
//!
//! ```text
//! cargo run --release -p gradus-math --example fuzz -- --iters 1000000 \
//!     [--seed 1] [--corpus ../shared/data/math_dev.jsonl] [--budget-ms 10] \
//!     [--last-input /tmp/fuzz-last.txt]
//! ```
//! With `--last-input`, each input is written to that file before it is
//! graded, so a crash that cannot be caught (a stack overflow aborts) leaves
//! its input behind.
//! Prints the number of inputs and calls, panics, the slowest call with its
//! input, and how many calls exceeded the budget; exits 1 if any panicked or
//! exceeded it. The budget applies to the thread's CPU time per call (so a
//! busy shared machine does not count preemption against the grader), and a
//! call over it is re-timed three times (its minimum counts) because that
//! clock also charges kernel work such as unmapping an earlier input's
//! memory; the slowest wall-clock call is printed too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use gradus_math::{GradeConfig, grade};
use nix::time::{ClockId, clock_gettime};

/// CPU time of this thread, nanosecond resolution (getrusage is tick-granular).
fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

const TOKENS: &[&str] = &[
    "\\frac",
    "{",
    "}",
    "^",
    "_",
    "\\sqrt",
    "[",
    "]",
    "(",
    ")",
    "\\left(",
    "\\right)",
    "\\boxed{",
    "\\boxed ",
    "\\fbox{",
    "\\{",
    "\\}",
    "0",
    "1",
    "2",
    "7",
    "9",
    "12",
    "007",
    "0.5",
    ".",
    ",",
    "1,000",
    "x",
    "y",
    "e",
    "i",
    "n",
    "k",
    "\\pi",
    "+",
    "-",
    "*",
    "/",
    ";",
    ":",
    "=",
    "<",
    ">",
    "\\le",
    "\\ge",
    "\\ne",
    "\\in",
    "\\pm",
    "\\cdot",
    "\\times",
    "!",
    "%",
    "\\%",
    "$",
    "$$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "\\text{",
    "\\text{ cm}",
    " and ",
    " or ",
    " ",
    "\n",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "\\begin{array}{cc}",
    "\\end{array}",
    "&",
    "\\\\",
    "\\infty",
    "\\cup",
    "\\sum_{k=1}^{",
    "\\prod_{k=1}^{",
    "\\sin",
    "\\cos^2",
    "\\log_",
    "\\ln",
    "10^{",
    "2^{",
    "\\overline{",
    "<think>",
    "</think>",
    "The answer is ",
    "Answer: ",
    "Final Answer: ",
    "\\mathbb{R}",
    "\\emptyset",
    "^\\circ",
    "°",
    "é",
    "²",
    "π",
    "√",
    "∞",
    "\u{0}",
    "\\",
    "\\\\frac",
    "|",
    "\\lfloor",
    "\\rfloor",
    "\\binom",
    "!",
    "e-5",
    "3e5",
    "\\mathrm{e}",
    "\\dfrac",
    "(A)",
    "\\ldots",
    "\\langle",
    "\\rangle",
    "\\,",
    "\\!",
    "{,}",
    "_5",
    "'",
];

const SEEDS: &[&str] = &[
    "42",
    "\\frac{1}{2}",
    "\\sqrt[3]{-8}",
    "2\\frac{1}{2}",
    "x^2-1",
    "(x+1)^2",
    "[0,1)",
    "(-\\infty, 3] \\cup [4, 5)",
    "\\{1,2,3\\}",
    "(1,2)",
    "x = 3",
    "x > -2",
    "0 < x \\le 1",
    "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    "50\\%",
    "45^\\circ",
    "5\\text{ cm}",
    "\\text{(A)}",
    "\\text{Evelyn}",
    "e^{i\\pi}",
    "3+4i",
    "6.02\\times10^{23}",
    "\\sum_{k=1}^{n} k^2",
    "\\log_2 8",
    "\\sin^2 x + \\cos^2 x",
    "0.\\overline{3}",
    "1,000,000",
    "\\pm\\sqrt{2}",
    "The answer is $\\boxed{\\frac{\\pi}{4}}$.",
    "<think>\\boxed{1}</think> so \\boxed{2}",
    "Answer: 9",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a str {
        &v[self.below(v.len())]
    }
}

fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut s = rng.pick(seeds).to_string();
    for _ in 0..1 + rng.below(8) {
        let b = boundaries(&s);
        let (i, j) = {
            let a = b[rng.below(b.len())];
            let c = b[rng.below(b.len())];
            (a.min(c), a.max(c))
        };
        match rng.below(6) {
            0 => s.insert_str(i, TOKENS[rng.below(TOKENS.len())]),
            1 => s.replace_range(i..j, ""),
            2 => {
                let dup = s[i..j].to_string();
                s.insert_str(j, &dup);
            }
            3 => {
                let other = rng.pick(seeds).to_string();
                let ob = boundaries(&other);
                let k = ob[rng.below(ob.len())];
                s = format!("{}{}", &s[..i], &other[k..]);
            }
            4 => s.replace_range(i..j, TOKENS[rng.below(TOKENS.len())]),
            _ => s.insert(i, char::from_u32(rng.below(0x3000) as u32).unwrap_or('?')),
        }
        if s.len() > 20_000 {
            s.truncate(
                boundaries(&s)
                    .into_iter()
                    .rfind(|&k| k <= 20_000)
                    .unwrap_or(0),
            );
        }
    }
    s
}

fn soup(rng: &mut Rng) -> String {
    (0..1 + rng.below(64))
        .map(|_| TOKENS[rng.below(TOKENS.len())])
        .collect()
}

fn pathological(rng: &mut Rng) -> String {
    let n = 1 + rng.below(20_000);
    match rng.below(9) {
        0 => format!("{}1{}", "{".repeat(n), "}".repeat(n)),
        1 => format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        2 => format!("{}2{}", "10^{".repeat(n.min(500)), "}".repeat(n.min(500))),
        3 => "9".repeat(n),
        4 => "1,".repeat(n),
        5 => "-".repeat(n) + "1",
        6 => "\\frac{1}{".repeat(n.min(2000)) + "2" + &"}".repeat(n.min(2000)),
        7 => "\\boxed{1} ".repeat(n.min(3000)),
        _ => format!("\\sqrt[{n}]{{{n}}}^{{{n}}}!"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: u64 = arg("--iters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = arg("--seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let budget = Duration::from_secs_f64(
        arg("--budget-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10.0)
            / 1e3,
    );
    let mut seeds: Vec<String> = SEEDS.iter().map(|s| s.to_string()).collect();
    if let Some(path) = arg("--corpus") {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            for k in ["gold", "pred", "response"] {
                if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
                    seeds.push(s.to_string());
                }
            }
        }
    }
    let mut last_input = arg("--last-input")
        .map(|p| std::fs::File::create(&p).unwrap_or_else(|e| panic!("{p}: {e}")));
    std::panic::set_hook(Box::new(|_| {}));
    let configs = [GradeConfig::strict(), GradeConfig::lenient()];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut calls, mut panics, mut over, mut outliers) = (0u64, 0u64, 0u64, 0u64);
    let mut slowest = (Duration::ZERO, String::new());
    let mut slowest_wall = Duration::ZERO;
    let mut total = Duration::ZERO;
    let started = Instant::now();
    for it in 0..iters {
        let input = match rng.below(10) {
            0..=3 => soup(&mut rng),
            4..=8 => mutate(&mut rng, &seeds),
            _ => pathological(&mut rng),
        };
        let gold = rng.pick(&seeds).to_string();
        if let Some(f) = last_input.as_mut() {
            use std::io::{Seek, Write};
            let _ = f
                .set_len(0)
                .and_then(|_| f.rewind())
                .and_then(|_| write!(f, "gold: {gold:?}\ninput: {input:?}\n"));
        }
        let boxed = format!("\\boxed{{{input}}}");
        let jobs: [(&str, &str, &GradeConfig); 4] = [
            (&gold, &input, &configs[0]),
            (&gold, &input, &configs[1]),
            (&input, &boxed, &configs[0]),
            (&gold, &boxed, &configs[0]),
        ];
        for (g, r, cfg) in jobs {
            let (t, c) = (Instant::now(), thread_cpu());
            let ok = catch_unwind(AssertUnwindSafe(|| grade(g, r, cfg))).is_ok();
            let (wall, mut dt) = (t.elapsed(), thread_cpu().saturating_sub(c));
            slowest_wall = slowest_wall.max(wall);
            calls += 1;
            if !ok {
                panics += 1;
                eprintln!("PANIC on gold {g:?} response {r:?}");
            }
            if dt > budget {
                // Re-time before blaming the grader: the thread's CPU clock also
                // counts kernel work such as returning a previous input's memory.
                outliers += 1;
                for _ in 0..3 {
                    let c = thread_cpu();
                    let _ = catch_unwind(AssertUnwindSafe(|| grade(g, r, cfg)));
                    dt = dt.min(thread_cpu().saturating_sub(c));
                }
                if dt > budget {
                    over += 1;
                    eprintln!("OVER BUDGET ({dt:?}) on gold {g:?} response {r:?}");
                }
            }
            total += dt;
            if dt > slowest.0 {
                slowest = (dt, r.chars().take(120).collect());
            }
        }
        if it > 0 && it % 200_000 == 0 {
            eprintln!("{it} inputs, slowest call so far {:?}", slowest.0);
        }
    }
    println!(
        "fuzz: {iters} inputs, {calls} grade calls in {:.1}s wall ({:.1} µs CPU/call mean); panics {panics}; \
         slowest call {:.3} ms CPU ({:.3} ms wall at most) on {:?}; calls over {:?} CPU: {over} \
         ({outliers} first timings over it, all re-timed)",
        started.elapsed().as_secs_f64(),
        total.as_secs_f64() * 1e6 / calls.max(1) as f64,
        slowest.0.as_secs_f64() * 1e3,
        slowest_wall.as_secs_f64() * 1e3,
        slowest.1,
        budget
    );
    if panics > 0 || over > 0 {
        std::process::exit(1);
    }
}

//! Duplicate and contaminated prompts.
//!
//! Prompts are compared after [`tokens`] normalises them: lower case, words and numbers
//! kept, LaTeX and markdown punctuation dropped, but the operators that change a math
//! problem (`+ - * / = ^ < > ! %`) kept, so "2+3" and "2-3" stay apart while "$x^2$" and
//! "x^2" meet.
//!
//! * **Exact**: equal token sequences (a 128-bit hash of them).
//! * **Near**: Jaccard similarity of the prompts' word 5-gram sets at least the threshold.
//!   Candidates come from MinHash (32 hashes) with LSH banding (8 bands of 4), so the cost
//!   grows with the number of prompts, not its square; every candidate's Jaccard is then
//!   computed exactly, so a reported pair is never an estimate.
//! * **Contamination** (`--against`): a training prompt whose tokens equal an evaluation
//!   problem's, or that contains at least the threshold fraction of an evaluation problem's
//!   5-grams (containment, not Jaccard: a training row that wraps the test problem in
//!   instructions is still the test problem). Evaluation sets are small, so every shared
//!   5-gram is counted exactly through an index of the evaluation set.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Word n-gram length of the shingles.
pub const SHINGLE: usize = 5;
const HASHES: usize = 64;
const BANDS: usize = 16;
const ROWS: usize = HASHES / BANDS;
/// Band buckets up to this size compare all their pairs; a larger one (a template shared by
/// many prompts) compares each member with its neighbour and with the bucket's first, so a
/// crowded bucket costs its size, not its square.
const ALL_PAIRS_UP_TO: usize = 32;

/// The normalised tokens of a prompt.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if matches!(c, '+' | '-' | '*' | '/' | '=' | '^' | '<' | '>' | '!' | '%') {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn hash_of<T: Hash + ?Sized>(seed: u64, v: &T) -> u64 {
    // SipHash with fixed keys: the same value hashes the same in every run.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(seed, 0x9e37_79b9_7f4a_7c15);
    v.hash(&mut h);
    h.finish()
}

/// A 128-bit key of the token sequence: equal keys are equal prompts after normalising.
pub fn exact_key(tokens: &[String]) -> u128 {
    (u128::from(hash_of(1, tokens)) << 64) | u128::from(hash_of(2, tokens))
}

/// The prompt's 5-gram hashes, sorted and without repeats (a prompt of fewer tokens is one
/// shingle of all of them; an empty prompt has none).
pub fn shingles(tokens: &[String]) -> Vec<u64> {
    let mut out: Vec<u64> = if tokens.len() <= SHINGLE {
        if tokens.is_empty() {
            Vec::new()
        } else {
            vec![hash_of(3, tokens)]
        }
    } else {
        tokens.windows(SHINGLE).map(|w| hash_of(3, w)).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// |a ∩ b| of two sorted, repeat-free shingle sets.
fn shared(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Jaccard similarity of two sorted, repeat-free shingle sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let n = shared(a, b);
    let union = a.len() + b.len() - n;
    if union == 0 {
        1.0
    } else {
        n as f64 / union as f64
    }
}

/// The LSH band keys of a shingle set: MinHash signature, hashed band by band.
fn band_keys(shingles: &[u64]) -> [u64; BANDS] {
    let mut sig = [u32::MAX; HASHES];
    for &s in shingles {
        for (i, slot) in sig.iter_mut().enumerate() {
            // One multiply-xorshift (splitmix64's finaliser) per hash function.
            let mut x = s ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let v = ((x ^ (x >> 31)) >> 32) as u32;
            if v < *slot {
                *slot = v;
            }
        }
    }
    std::array::from_fn(|b| hash_of(4 + b as u64, &sig[b * ROWS..(b + 1) * ROWS]))
}

/// Why a prompt was found to repeat another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Match {
    /// Equal after normalising.
    Exact,
    /// Jaccard of the 5-gram sets (near duplicates).
    Jaccard(f64),
    /// The fraction of the evaluation problem's 5-grams the training prompt holds.
    Containment(f64),
}

/// A prompt that repeats an earlier one: indices into the list given.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplicate {
    /// The later prompt.
    pub index: usize,
    /// The first prompt of its group (the earliest prompt it is equal to, or linked to by a
    /// chain of near duplicates).
    pub of: usize,
    /// How it matches `of` (the Jaccard of this pair itself, also along a chain).
    pub how: Match,
}

fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Every prompt that repeats an earlier one, exactly or with Jaccard ≥ `threshold`; each
/// prompt is reported once, against the earliest prompt of its group.
///
/// Memory per prompt is its band keys (128 bytes); shingle sets are rebuilt for the
/// candidate pairs only, so a million prompts fit beside the data.
pub fn duplicates(prompts: &[&str], threshold: f64) -> Vec<Duplicate> {
    let n = prompts.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut exact: Vec<Option<usize>> = vec![None; n];
    let mut first: HashMap<u128, usize> = HashMap::new();
    // Per band: (key, prompt), sorted, so equal keys sit together.
    let mut bands: Vec<Vec<(u64, u32)>> = (0..BANDS).map(|_| Vec::with_capacity(n)).collect();
    for (i, p) in prompts.iter().enumerate() {
        let t = tokens(p);
        match first.entry(exact_key(&t)) {
            std::collections::hash_map::Entry::Occupied(f) => {
                exact[i] = Some(*f.get());
                parent[i] = *f.get();
                continue;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
        let s = shingles(&t);
        if s.is_empty() {
            continue;
        }
        for (b, key) in band_keys(&s).into_iter().enumerate() {
            bands[b].push((key, i as u32));
        }
    }
    drop(first);
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for band in &mut bands {
        band.sort_unstable();
        for run in band.chunk_by(|a, b| a.0 == b.0) {
            if run.len() < 2 {
                continue;
            }
            if run.len() <= ALL_PAIRS_UP_TO {
                for (k, a) in run.iter().enumerate() {
                    for b in &run[k + 1..] {
                        pairs.push((a.1, b.1));
                    }
                }
            } else {
                for w in run.windows(2) {
                    pairs.push((w[0].1, w[1].1));
                }
                for b in &run[2..] {
                    pairs.push((run[0].1, b.1));
                }
            }
        }
        *band = Vec::new();
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut cache: HashMap<u32, Vec<u64>> = HashMap::new();
    let set = |i: u32, cache: &mut HashMap<u32, Vec<u64>>| -> Vec<u64> {
        cache
            .entry(i)
            .or_insert_with(|| shingles(&tokens(prompts[i as usize])))
            .clone()
    };
    // For each later prompt, its closest earlier one above the threshold.
    let mut best: HashMap<usize, (usize, f64)> = HashMap::new();
    for (a, b) in pairs {
        let j = jaccard(&set(a, &mut cache), &set(b, &mut cache));
        if j < threshold {
            continue;
        }
        let (a, b) = (a as usize, b as usize);
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
        let e = best.entry(b).or_insert((a, j));
        if j > e.1 {
            *e = (a, j);
        }
    }
    let mut out = Vec::new();
    for (i, &exact_of) in exact.iter().enumerate() {
        let r = root(&mut parent, i);
        if r == i {
            continue;
        }
        let how = match (exact_of, best.get(&i)) {
            (Some(f), _) if f == r => Match::Exact,
            (_, Some(&(of, j))) if of == r => Match::Jaccard(j),
            _ => Match::Jaccard(jaccard(
                &set(i as u32, &mut cache),
                &set(r as u32, &mut cache),
            )),
        };
        out.push(Duplicate {
            index: i,
            of: r,
            how,
        });
    }
    out
}

/// An index of evaluation problems, to find training prompts that contain them.
pub struct Against {
    exact: HashMap<u128, usize>,
    sizes: Vec<usize>,
    by_shingle: HashMap<u64, Vec<u32>>,
}

impl Against {
    /// Indexes the evaluation prompts.
    pub fn new(prompts: &[&str]) -> Against {
        let mut exact = HashMap::new();
        let mut sizes = Vec::with_capacity(prompts.len());
        let mut by_shingle: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, p) in prompts.iter().enumerate() {
            let t = tokens(p);
            exact.entry(exact_key(&t)).or_insert(i);
            let s = shingles(&t);
            sizes.push(s.len());
            for h in s {
                by_shingle.entry(h).or_default().push(i as u32);
            }
        }
        Against {
            exact,
            sizes,
            by_shingle,
        }
    }

    /// The evaluation problem `prompt` repeats, if any: equal after normalising, or holding
    /// at least `threshold` of its 5-grams (the best such problem).
    pub fn find(&self, prompt: &str, threshold: f64) -> Option<(usize, Match)> {
        let t = tokens(prompt);
        if let Some(&i) = self.exact.get(&exact_key(&t)) {
            return Some((i, Match::Exact));
        }
        let s = shingles(&t);
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for h in &s {
            if let Some(evals) = self.by_shingle.get(h) {
                for &e in evals {
                    *counts.entry(e).or_default() += 1;
                }
            }
        }
        counts
            .into_iter()
            .map(|(e, n)| (e as usize, n as f64 / self.sizes[e as usize].max(1) as f64))
            .filter(|&(_, c)| c >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(e, c)| (e, Match::Containment(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_keeps_operators_and_drops_markup() {
        assert_eq!(tokens("What is $2+3$?"), ["what", "is", "2", "+", "3"]);
        assert_eq!(tokens("  WHAT is 2 + 3 ?"), tokens("What is $2+3$?"));
        assert_ne!(tokens("What is 2+3?"), tokens("What is 2-3?"));
        assert_eq!(tokens("$\\frac{1}{2}$"), ["frac", "1", "2"]);
        assert_eq!(tokens("Ünïcode ÀB"), ["ünïcode", "àb"]);
    }

    const LONG: &str = "A bag holds 5 red marbles, 7 blue marbles and 9 green marbles. \
        Two marbles are drawn at random without replacement. What is the probability \
        that both marbles drawn are of the same colour? Express your answer as a common fraction.";

    #[test]
    fn exact_and_near_duplicates_are_found_and_different_problems_are_not() {
        let near = format!("{LONG} Simplify fully.");
        let other_numbers = "What is 2+4?";
        let prompts = [
            LONG,
            "What is 2+3?",
            &near,
            "what is 2 + 3",
            other_numbers,
            "Completely unrelated: list the primes below 30 and sum them.",
        ];
        let d = duplicates(&prompts, 0.7);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].index, d[0].of), (2, 0));
        let Match::Jaccard(j) = d[0].how else {
            panic!("{d:?}")
        };
        assert!((0.7..1.0).contains(&j), "{j}");
        assert_eq!(
            d[1],
            Duplicate {
                index: 3,
                of: 1,
                how: Match::Exact
            }
        );
        // A stricter threshold keeps the reworded one.
        assert_eq!(duplicates(&prompts, 0.99).len(), 1);
    }

    #[test]
    fn a_chain_of_near_duplicates_reports_against_the_first() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let a = words.join(" ");
        let mut w = words.clone();
        w[59] = "x".into();
        let b = w.join(" ");
        w[58] = "y".into();
        let c = w.join(" ");
        let d = duplicates(&[&a, &b, &c], 0.9);
        let of: Vec<(usize, usize)> = d.iter().map(|d| (d.index, d.of)).collect();
        assert_eq!(of, [(1, 0), (2, 0)]);
    }

    #[test]
    fn near_duplicates_are_found_among_many_distinct_prompts() {
        // 5,000 distinct prompts of one template and 50 copies with a sentence added: all
        // copies found, no false pairs.
        let mut prompts: Vec<String> = (0..5000)
            .map(|i| {
                format!(
                    "Problem {i}: a train leaves station {} at {} km/h and another leaves station {} at {} km/h; when do they meet if the stations are {} km apart?",
                    i * 7 % 101,
                    i * 13 % 97 + 10,
                    i * 17 % 89,
                    i * 19 % 83 + 10,
                    i * 23 % 1000 + 50
                )
            })
            .collect();
        for i in 0..50 {
            let copy = format!("{} Answer in hours.", prompts[i * 100]);
            prompts.push(copy);
        }
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let d = duplicates(&refs, 0.8);
        let found: Vec<(usize, usize)> = d.iter().map(|d| (d.index, d.of)).collect();
        let want: Vec<(usize, usize)> = (0..50).map(|i| (5000 + i, i * 100)).collect();
        assert_eq!(found, want);
    }

    #[test]
    fn contamination_is_found_inside_wrapped_prompts() {
        let eval = [LONG, "Find the number of positive divisors of 2024."];
        let idx = Against::new(&eval);
        let wrapped = format!("Solve the following problem. {LONG} Let's think step by step.");
        let Some((0, Match::Containment(c))) = idx.find(&wrapped, 0.8) else {
            panic!("{:?}", idx.find(&wrapped, 0.8))
        };
        assert!(c > 0.95, "{c}");
        assert_eq!(
            idx.find("find the number of positive divisors of 2024", 0.8),
            Some((1, Match::Exact))
        );
        assert_eq!(
            idx.find("Find the number of positive divisors of 2025.", 0.8),
            None
        );
        assert_eq!(
            idx.find("Something else entirely, about marbles.", 0.8),
            None
        );
    }
}

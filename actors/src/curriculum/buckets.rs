//! Which buckets each problem is in.
//!
//! `pass_rate` and `labels` buckets are exclusive (validation refuses overlaps) and read the
//! problem's own `difficulty`; a problem in none of them goes to `unrated_bucket` when it
//! has no difficulty. `pass_rates` buckets ([`BucketRule::Models`]) read the reference
//! models' rates in `metadata.curate.pass_rates` and may overlap each other and the
//! others: the difficulty-staged paper's L3 (everything the 32B fails plus half of the
//! rest) shares problems with L1 and L2. Their `sample_rest` needs the whole dataset, so
//! assignment is one pass over all problems, done when the curriculum is built.

use std::collections::BTreeMap;

use super::config::{BucketRule, CurriculumConfig, ModelRule};
use crate::data::import::fields::fnv1a64;
use crate::data::{Difficulty, Domain, Problem};

/// The buckets of every problem, and what could not be placed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignment {
    /// Per problem (in input order), its buckets in config order; empty: never drawn.
    pub of: Vec<Vec<String>>,
    /// Per `pass_rates` bucket, the problems it could not judge because a model it names
    /// has no pass rate for them (ids, sorted).
    pub unjudged: BTreeMap<String, Vec<String>>,
}

/// The pass rates of the reference models (`correct / attempts`); unreadable ones (which
/// [`Problem::validate`] refuses at load) count as absent.
pub fn model_rates(p: &Problem) -> BTreeMap<String, f64> {
    p.model_pass_rates()
        .unwrap_or_default()
        .into_iter()
        .map(|(m, (c, a))| (m, c as f64 / a as f64))
        .collect()
}

/// Assigns every problem to its buckets.
pub fn assign(config: &CurriculumConfig, problems: &[Problem]) -> Assignment {
    let mut out = Assignment {
        of: vec![Vec::new(); problems.len()],
        unjudged: BTreeMap::new(),
    };
    let rates: Vec<BTreeMap<String, f64>> = problems.iter().map(model_rates).collect();
    for b in &config.buckets {
        match &b.rule {
            BucketRule::Models(rule) => {
                let (members, unjudged) =
                    model_members(config.seed, &b.name, rule, problems, &rates);
                if !unjudged.is_empty() {
                    out.unjudged.insert(b.name.clone(), unjudged);
                }
                for i in members {
                    out.of[i].push(b.name.clone());
                }
            }
            rule => {
                for (i, p) in problems.iter().enumerate() {
                    let holds = match &p.difficulty {
                        Some(Difficulty::Label(l)) => rule.holds_label(l),
                        Some(Difficulty::PassRate(r)) => rule.holds_rate(*r),
                        None => false,
                    };
                    if holds {
                        out.of[i].push(b.name.clone());
                    }
                }
            }
        }
    }
    if let Some(unrated) = &config.unrated_bucket {
        for (i, p) in problems.iter().enumerate() {
            let exclusive = config
                .buckets
                .iter()
                .any(|b| !matches!(b.rule, BucketRule::Models(_)) && out.of[i].contains(&b.name));
            if p.difficulty.is_none() && !exclusive && !out.of[i].contains(unrated) {
                out.of[i].push(unrated.clone());
            }
        }
    }
    out
}

/// The members of one `pass_rates` bucket (indices, sorted) and the ids it cannot judge.
fn model_members(
    seed: u64,
    bucket: &str,
    rule: &ModelRule,
    problems: &[Problem],
    rates: &[BTreeMap<String, f64>],
) -> (Vec<usize>, Vec<String>) {
    let mut members = Vec::new();
    let mut unjudged = Vec::new();
    let mut rest: BTreeMap<Domain, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, p) in problems.iter().enumerate() {
        match rule.holds(&rates[i]) {
            Some(true) => members.push(i),
            Some(false) => {
                // Seeded, and keyed by the id, not the position: the same problems are
                // chosen whatever order the file lists them in.
                let key = fnv1a64(format!("{seed}\0{bucket}\0{}", p.id).as_bytes());
                rest.entry(p.domain).or_default().push((key, i));
            }
            None => unjudged.push(p.id.clone()),
        }
    }
    for (domain, mut candidates) in rest {
        let fraction = rule
            .sample_rest
            .iter()
            .find(|(d, _)| *d == domain)
            .map_or(0.0, |(_, f)| *f);
        candidates.sort_unstable();
        let take = (fraction * candidates.len() as f64).round() as usize;
        members.extend(candidates.into_iter().take(take).map(|(_, i)| i));
    }
    members.sort_unstable();
    unjudged.sort();
    (members, unjudged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curriculum::config::{Bucket, Range};
    use serde_json::json;

    fn problem(id: &str, domain: Domain, rates: &[(&str, u64, u64)]) -> Problem {
        let mut pr = serde_json::Map::new();
        for (m, c, a) in rates {
            pr.insert((*m).into(), json!({"correct": c, "attempts": a}));
        }
        let mut v = json!({"id": id, "domain": domain.as_str(), "prompt": "p",
            "metadata": {"curate": {"pass_rates": pr}}});
        match domain {
            Domain::Math => v["answer"] = json!("1"),
            Domain::Code => {
                v["tests"] = json!({"kind": "stdio", "cases": [{"input": "", "output": "1"}]})
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn r(t: &str) -> Range {
        Range::parse(t).unwrap()
    }

    fn config(buckets: Vec<Bucket>) -> CurriculumConfig {
        CurriculumConfig {
            seed: 7,
            buckets,
            unrated_bucket: None,
            retire: crate::curriculum::config::Retire {
                mastered_after: None,
                hopeless_after: None,
            },
            stages: Vec::new(),
        }
    }

    /// The paper's L1/L2/L3 against a direct reading of its definitions.
    #[test]
    fn the_papers_three_levels() {
        let l1 = ModelRule {
            any: vec![vec![("s".into(), r("(0, 1)"))]],
            sample_rest: vec![],
        };
        let l2 = ModelRule {
            any: vec![
                vec![("s".into(), r("0")), ("m".into(), r("1"))],
                vec![("s".into(), r("0")), ("m".into(), r("(0, 1)"))],
                vec![("s".into(), r("(0, 1)")), ("m".into(), r("(0, 1)"))],
            ],
            sample_rest: vec![],
        };
        let l3 = ModelRule {
            any: vec![vec![("l".into(), r("0"))]],
            sample_rest: vec![(Domain::Math, 0.5), (Domain::Code, 0.25)],
        };
        let c = config(vec![
            Bucket {
                name: "L1".into(),
                rule: BucketRule::Models(l1),
            },
            Bucket {
                name: "L2".into(),
                rule: BucketRule::Models(l2),
            },
            Bucket {
                name: "L3".into(),
                rule: BucketRule::Models(l3),
            },
        ]);
        let k = 4;
        let mut problems = Vec::new();
        let mut n = 0;
        for s in 0..=k {
            for m in 0..=k {
                for l in 0..=k {
                    for domain in Domain::ALL {
                        n += 1;
                        problems.push(problem(
                            &format!("p{n:03}"),
                            domain,
                            &[("s", s, k), ("m", m, k), ("l", l, k)],
                        ));
                    }
                }
            }
        }
        problems.push(problem("only-s", Domain::Math, &[("s", 1, 2)]));
        let a = assign(&c, &problems);
        let partial = |x: u64| 0 < x && x < k;
        let mut rest = BTreeMap::<Domain, (usize, usize)>::new();
        for (p, got) in problems.iter().zip(&a.of) {
            let rates = p.model_pass_rates().unwrap();
            if p.id == "only-s" {
                assert_eq!(got, &vec!["L1".to_string()], "judged by the model it has");
                continue;
            }
            let (s, m, l) = (rates["s"].0, rates["m"].0, rates["l"].0);
            assert_eq!(got.contains(&"L1".to_string()), partial(s), "{}", p.id);
            // The paper's three cases, as it writes them.
            #[allow(clippy::nonminimal_bool)]
            let want_l2 =
                (s == 0 && m == k) || (s == 0 && partial(m)) || (partial(s) && partial(m));
            assert_eq!(got.contains(&"L2".to_string()), want_l2, "{}", p.id);
            if l == 0 {
                assert!(got.contains(&"L3".to_string()), "{}", p.id);
            } else {
                let e = rest.entry(p.domain).or_default();
                e.0 += 1;
                e.1 += usize::from(got.contains(&"L3".to_string()));
            }
        }
        // 5×5×4 rated-and-solved problems per domain: exactly half and a quarter taken.
        assert_eq!(rest[&Domain::Math], (100, 50));
        assert_eq!(rest[&Domain::Code], (100, 25));
        assert_eq!(a.unjudged.keys().collect::<Vec<_>>(), ["L2", "L3"]);
        assert_eq!(a.unjudged["L3"], ["only-s"]);

        // The sample is the same in any order, and another seed takes others.
        let mut reversed = problems.clone();
        reversed.reverse();
        let b = assign(&c, &reversed);
        for (i, p) in problems.iter().enumerate() {
            assert_eq!(a.of[i], b.of[problems.len() - 1 - i], "{}", p.id);
        }
        let mut other = c.clone();
        other.seed = 8;
        assert_ne!(assign(&other, &problems).of, a.of);
    }

    #[test]
    fn ranges_parse_and_print() {
        assert!(r("0").contains(0.0) && !r("0").contains(0.1));
        assert!(
            r("(0, 1)").contains(0.5) && !r("(0, 1)").contains(1.0) && !r("(0,1)").contains(0.0)
        );
        assert!(r("[0, 0.5)").contains(0.0) && !r("[0, 0.5)").contains(0.5));
        assert!(r("(0.5, 1]").contains(1.0));
        assert_eq!(r("(0,1]").to_string(), "(0, 1]");
        assert_eq!(r(" 1 ").to_string(), "1");
        for bad in ["(1, 0)", "(0.5, 0.5)", "2", "x", "(0 1)", "[0, 1.5]", ""] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Raw → validated: defaults, inheritance between stages, and every check, collecting all
//! problems before reporting (a user fixes a config in one pass, not one error per run).

use std::collections::BTreeSet;

use super::raw::*;
use super::*;

/// Defaults of the first stage; later stages inherit from the stage before them.
const DEFAULT_GENERATION: Generation = Generation {
    max_response_tokens: 1024,
    temperature: 1.0,
    top_p: 1.0,
    group_size: 8,
};
const DEFAULT_LEARNER: Learner = Learner {
    lr: 1e-6,
    kl_coef: 0.0,
    entropy_coef: 0.0,
    mask_truncated: false,
};
/// DAPO stops after a bounded number of generation rounds; 8 refills that keep nothing means
/// the stage's data no longer discriminates, which no further sampling will fix.
const DEFAULT_MAX_REFILLS: u32 = 8;

struct Issues<'a> {
    locator: &'a Locator,
    found: Vec<Issue>,
}

impl Issues<'_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        self.found.push(Issue {
            location: self.locator.locate(&field),
            field,
            message: message.into(),
        });
    }

    fn check(&mut self, ok: bool, field: impl Into<String>, message: impl FnOnce() -> String) {
        if !ok {
            self.push(field, message());
        }
    }
}

fn finite_in(x: f64, lo: f64, hi: f64) -> bool {
    x.is_finite() && x >= lo && x <= hi
}

/// Validates a raw curriculum; `locator` turns field paths into `file:line`.
pub fn validate(raw: &RawCurriculum, locator: &Locator) -> Result<CurriculumConfig, ConfigError> {
    let mut is = Issues {
        locator,
        found: Vec::new(),
    };
    let buckets = buckets(raw, &mut is);
    let names: BTreeSet<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
    if let Some(u) = &raw.unrated_bucket {
        is.check(names.contains(u.as_str()), "unrated_bucket", || {
            format!("names no bucket: '{u}'")
        });
    }
    let retire = Retire {
        mastered_after: raw.retire.as_ref().and_then(|r| r.mastered_after),
        hopeless_after: raw.retire.as_ref().and_then(|r| r.hopeless_after),
    };
    for (field, k) in [
        ("mastered_after", retire.mastered_after),
        ("hopeless_after", retire.hopeless_after),
    ] {
        if let Some(k) = k {
            is.check((1..=64).contains(&k), format!("retire.{field}"), || {
                format!("must be in 1..=64 attempts, got {k}")
            });
        }
    }
    if raw.stages.is_empty() {
        let table = is.locator.array_table("stages");
        is.push("stages", format!("at least one {table} is needed"));
    }
    let mut stages: Vec<Stage> = Vec::new();
    for (i, rs) in raw.stages.iter().enumerate() {
        let last = i + 1 == raw.stages.len();
        let stage = stage(i, rs, stages.last(), last, &names, &mut is);
        if stages.iter().any(|s| s.name == stage.name) {
            is.push(
                format!("stages[{i}].name"),
                format!("'{}' is used by an earlier stage", stage.name),
            );
        }
        stages.push(stage);
    }
    if is.found.is_empty() {
        Ok(CurriculumConfig {
            seed: raw.seed.unwrap_or(0),
            buckets,
            unrated_bucket: raw.unrated_bucket.clone(),
            retire,
            stages,
        })
    } else {
        Err(ConfigError::Invalid(is.found))
    }
}

fn buckets(raw: &RawCurriculum, is: &mut Issues<'_>) -> Vec<Bucket> {
    if raw.buckets.is_empty() {
        let table = is.locator.array_table("buckets");
        is.push("buckets", format!("at least one {table} is needed"));
    }
    let mut out: Vec<Bucket> = Vec::new();
    let mut labels_seen: Vec<(String, usize)> = Vec::new();
    for (i, b) in raw.buckets.iter().enumerate() {
        let at = |f: &str| format!("buckets[{i}].{f}");
        is.check(!b.name.trim().is_empty(), at("name"), || {
            "must not be empty".into()
        });
        if out.iter().any(|o| o.name == b.name) {
            is.push(
                at("name"),
                format!("'{}' is used by an earlier bucket", b.name),
            );
        }
        if b.sample_rest.is_some() && b.pass_rates.is_none() {
            is.push(
                at("sample_rest"),
                "only a bucket with pass_rates = [...] samples the rest",
            );
        }
        let rule = match (&b.pass_rate, &b.labels) {
            (None, None) if b.pass_rates.is_some() => BucketRule::Models(model_rule(i, b, is)),
            (Some(r), None) if b.pass_rates.is_none() => {
                if r.len() != 2
                    || !(finite_in(r[0], 0.0, 1.0) && finite_in(r[1], 0.0, 1.0) && r[0] < r[1])
                {
                    is.push(
                        at("pass_rate"),
                        format!("must be [lo, hi] with 0 ≤ lo < hi ≤ 1, got {r:?}"),
                    );
                    BucketRule::PassRate { lo: 0.0, hi: 0.0 }
                } else {
                    let (lo, hi) = (r[0], r[1]);
                    for (j, o) in out.iter().enumerate() {
                        if let BucketRule::PassRate { lo: l2, hi: h2 } = o.rule
                            && lo < h2
                            && l2 < hi
                        {
                            is.push(
                                at("pass_rate"),
                                format!(
                                    "[{lo}, {hi}) overlaps buckets[{j}] ('{}', [{l2}, {h2}))",
                                    o.name
                                ),
                            );
                        }
                    }
                    BucketRule::PassRate { lo, hi }
                }
            }
            (None, Some(ls)) if b.pass_rates.is_none() => {
                is.check(!ls.is_empty(), at("labels"), || {
                    "must list at least one label".into()
                });
                for l in ls {
                    if let Some((_, j)) = labels_seen.iter().find(|(s, _)| s == l) {
                        is.push(at("labels"), format!("label '{l}' is also in buckets[{j}]"));
                    }
                    labels_seen.push((l.clone(), i));
                }
                BucketRule::Labels(ls.clone())
            }
            _ => {
                is.push(
                    format!("buckets[{i}]"),
                    "needs exactly one of pass_rate = [lo, hi], labels = [...] or pass_rates = [{ model = range, ... }, ...]",
                );
                BucketRule::Labels(Vec::new())
            }
        };
        out.push(Bucket {
            name: b.name.clone(),
            rule,
        });
    }
    out
}

/// `pass_rates` and `sample_rest` of bucket `i`.
fn model_rule(i: usize, b: &RawBucket, is: &mut Issues<'_>) -> ModelRule {
    let at = |f: &str| format!("buckets[{i}].{f}");
    let rows = b.pass_rates.as_deref().unwrap_or_default();
    is.check(!rows.is_empty(), at("pass_rates"), || {
        "must list at least one { model = range, ... } entry".into()
    });
    let mut any = Vec::new();
    for (j, row) in rows.iter().enumerate() {
        is.check(
            !row.is_empty(),
            format!("buckets[{i}].pass_rates[{j}]"),
            || "names no model".into(),
        );
        let mut entry = Vec::new();
        for (model, raw) in row {
            let parsed = match raw {
                RawRange::Number(x) => Range::parse(&x.to_string()),
                RawRange::Text(t) => Range::parse(t),
            };
            match parsed {
                Ok(r) => entry.push((model.clone(), r)),
                Err(e) => is.push(
                    format!("buckets[{i}].pass_rates[{j}].{model}"),
                    format!(
                        "{e}; write a pass rate (0, 1, 0.5) or an interval (\"(0, 1)\", \"[0, 0.5)\")"
                    ),
                ),
            }
        }
        any.push(entry);
    }
    let mut sample_rest = Vec::new();
    match &b.sample_rest {
        None => {}
        Some(RawFraction::All(f)) => {
            is.check(finite_in(*f, 0.0, 1.0), at("sample_rest"), || {
                format!("must be a fraction in [0, 1], got {f}")
            });
            sample_rest = Domain::ALL.into_iter().map(|d| (d, *f)).collect();
        }
        Some(RawFraction::PerDomain(m)) => {
            for (name, f) in m {
                let field = format!("buckets[{i}].sample_rest.{name}");
                match Domain::ALL.into_iter().find(|d| d.as_str() == name) {
                    Some(d) => {
                        is.check(finite_in(*f, 0.0, 1.0), field, || {
                            format!("must be a fraction in [0, 1], got {f}")
                        });
                        sample_rest.push((d, *f));
                    }
                    None => is.push(
                        field,
                        format!(
                            "unknown domain '{name}' (one of {})",
                            Domain::ALL.map(Domain::as_str).join(", ")
                        ),
                    ),
                }
            }
        }
    }
    ModelRule { any, sample_rest }
}

fn stage(
    i: usize,
    rs: &RawStage,
    prev: Option<&Stage>,
    last: bool,
    names: &BTreeSet<&str>,
    is: &mut Issues<'_>,
) -> Stage {
    let at = |f: &str| format!("stages[{i}].{f}");
    is.check(!rs.name.trim().is_empty(), at("name"), || {
        "must not be empty".into()
    });
    let kind = match rs.kind {
        Some(RawStageKind::Sft) => StageKind::Sft,
        _ => StageKind::Rl,
    };
    let mut domains = Vec::new();
    is.check(!rs.domains.is_empty(), at("domains"), || {
        "needs at least one domain, e.g. { math = 1.0 }".into()
    });
    for (name, w) in &rs.domains {
        let d = Domain::ALL.into_iter().find(|d| d.as_str() == name);
        match d {
            None => is.push(
                at(&format!("domains.{name}")),
                "unknown domain (expected math or code)",
            ),
            Some(d) => {
                is.check(
                    w.is_finite() && *w > 0.0,
                    at(&format!("domains.{name}")),
                    || format!("weight must be > 0, got {w}"),
                );
                domains.push((d, *w));
            }
        }
    }
    let mut buckets = Vec::new();
    is.check(!rs.buckets.is_empty(), at("buckets"), || {
        "needs at least one bucket, e.g. { easy = 1.0 }".into()
    });
    for (name, w) in &rs.buckets {
        is.check(
            names.contains(name.as_str()),
            at(&format!("buckets.{name}")),
            || {
                format!(
                    "names no bucket (known: {})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                )
            },
        );
        is.check(
            w.is_finite() && *w > 0.0,
            at(&format!("buckets.{name}")),
            || format!("weight must be > 0, got {w}"),
        );
        buckets.push((name.clone(), *w));
    }
    let generation = generation(i, rs.generation.as_ref(), prev, kind, is);
    let learner = learner(i, rs.learner.as_ref(), prev, is);
    let dynamic_sampling = match &rs.dynamic_sampling {
        Some(d) if d.enabled.unwrap_or(true) => {
            let max_refills = d.max_refills.unwrap_or(DEFAULT_MAX_REFILLS);
            let oversample = d.oversample.unwrap_or(1.0);
            is.check(max_refills >= 1, at("dynamic_sampling.max_refills"), || {
                "must be ≥ 1".into()
            });
            is.check(
                oversample.is_finite() && oversample >= 1.0,
                at("dynamic_sampling.oversample"),
                || format!("must be ≥ 1, got {oversample}"),
            );
            is.check(kind == StageKind::Rl, at("dynamic_sampling"), || {
                "an sft stage has no rewards to filter on".into()
            });
            Some(DynamicSampling {
                max_refills,
                oversample,
            })
        }
        _ => None,
    };
    let replay_fraction = rs.replay.as_ref().map_or(0.0, |r| r.fraction);
    is.check(
        replay_fraction.is_finite() && (0.0..1.0).contains(&replay_fraction),
        at("replay.fraction"),
        || format!("must be in [0, 1), got {replay_fraction}"),
    );
    is.check(
        i > 0 || replay_fraction == 0.0,
        at("replay.fraction"),
        || "the first stage has no earlier stage to replay".into(),
    );
    let advance = advance(i, rs.advance.as_ref(), &buckets, kind, last, is);
    if let Some(n) = rs.batch_prompts {
        is.check(n >= 1, at("batch_prompts"), || "must be ≥ 1".into());
    }
    Stage {
        name: rs.name.clone(),
        kind,
        domains,
        buckets,
        generation,
        learner,
        dynamic_sampling,
        replay_fraction,
        advance,
        batch_prompts: rs.batch_prompts,
    }
}

fn generation(
    i: usize,
    g: Option<&RawGeneration>,
    prev: Option<&Stage>,
    kind: StageKind,
    is: &mut Issues<'_>,
) -> Generation {
    let base = prev.map_or(DEFAULT_GENERATION, |p| p.generation.clone());
    let g = g.cloned().unwrap_or_default();
    let out = Generation {
        max_response_tokens: g.max_response_tokens.unwrap_or(base.max_response_tokens),
        temperature: g.temperature.unwrap_or(base.temperature),
        top_p: g.top_p.unwrap_or(base.top_p),
        group_size: g.group_size.unwrap_or(base.group_size),
    };
    let at = |f: &str| format!("stages[{i}].generation.{f}");
    is.check(
        out.max_response_tokens >= 1,
        at("max_response_tokens"),
        || "must be ≥ 1".into(),
    );
    if let Some(p) = prev {
        let before = p.generation.max_response_tokens;
        is.check(
            out.max_response_tokens >= before,
            at("max_response_tokens"),
            || {
                format!(
                    "must be ≥ stages[{}]'s ({before}), got {}; response limits only grow",
                    i - 1,
                    out.max_response_tokens
                )
            },
        );
    }
    is.check(
        out.temperature.is_finite() && out.temperature > 0.0,
        at("temperature"),
        || format!("must be > 0, got {}", out.temperature),
    );
    is.check(
        out.top_p.is_finite() && out.top_p > 0.0 && out.top_p <= 1.0,
        at("top_p"),
        || format!("must be in (0, 1], got {}", out.top_p),
    );
    is.check(
        kind == StageKind::Sft || out.group_size >= 2,
        at("group_size"),
        || {
            format!(
                "must be ≥ 2 (group-relative advantages need two responses), got {}",
                out.group_size
            )
        },
    );
    out
}

fn learner(i: usize, l: Option<&RawLearner>, prev: Option<&Stage>, is: &mut Issues<'_>) -> Learner {
    let base = prev.map_or(DEFAULT_LEARNER, |p| p.learner.clone());
    let l = l.cloned().unwrap_or_default();
    let out = Learner {
        lr: l.lr.unwrap_or(base.lr),
        kl_coef: l.kl_coef.unwrap_or(base.kl_coef),
        entropy_coef: l.entropy_coef.unwrap_or(base.entropy_coef),
        mask_truncated: l.mask_truncated.unwrap_or(base.mask_truncated),
    };
    let at = |f: &str| format!("stages[{i}].learner.{f}");
    is.check(out.lr.is_finite() && out.lr > 0.0, at("lr"), || {
        format!("must be > 0, got {}", out.lr)
    });
    is.check(
        out.kl_coef.is_finite() && out.kl_coef >= 0.0,
        at("kl_coef"),
        || format!("must be ≥ 0, got {}", out.kl_coef),
    );
    is.check(
        out.entropy_coef.is_finite() && out.entropy_coef >= 0.0,
        at("entropy_coef"),
        || format!("must be ≥ 0, got {}", out.entropy_coef),
    );
    out
}

fn advance(
    i: usize,
    a: Option<&RawAdvance>,
    buckets: &[(String, f64)],
    kind: StageKind,
    last: bool,
    is: &mut Issues<'_>,
) -> Advance {
    let combine = match a.and_then(|a| a.combine) {
        Some(RawCombine::All) => Combine::All,
        _ => Combine::Any,
    };
    let raw_rules = a.map(|a| a.rules.as_slice()).unwrap_or_default();
    is.check(
        last || !raw_rules.is_empty(),
        format!("stages[{i}].advance"),
        || "a stage before the last needs at least one rule, or it never advances".into(),
    );
    let mut rules = Vec::new();
    for (j, r) in raw_rules.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].advance.rules[{j}].{f}");
        let mut bucket_ok = |b: &Option<String>| {
            if let Some(b) = b {
                is.check(buckets.iter().any(|(n, _)| n == b), at("bucket"), || {
                    format!("'{b}' is not one of this stage's buckets")
                });
            }
        };
        let rule = match r {
            RawRule::PassRate {
                bucket,
                target,
                window,
                min_samples,
            } => {
                bucket_ok(bucket);
                Rule::PassRate {
                    bucket: bucket.clone(),
                    target: *target,
                    window: *window,
                    min_samples: min_samples.unwrap_or(*window),
                }
            }
            RawRule::TruncationRate {
                at_least,
                window,
                min_samples,
            } => Rule::TruncationRate {
                at_least: *at_least,
                window: *window,
                min_samples: min_samples.unwrap_or(*window),
            },
            RawRule::Plateau {
                bucket,
                delta,
                steps,
                window,
                min_samples,
            } => {
                bucket_ok(bucket);
                Rule::Plateau {
                    bucket: bucket.clone(),
                    delta: *delta,
                    steps: *steps,
                    window: *window,
                    min_samples: min_samples.unwrap_or(*window),
                }
            }
            RawRule::MaxSteps { steps } => Rule::MaxSteps { steps: *steps },
        };
        match &rule {
            Rule::PassRate {
                target: x,
                window,
                min_samples,
                ..
            }
            | Rule::TruncationRate {
                at_least: x,
                window,
                min_samples,
            } => {
                let name = if matches!(rule, Rule::PassRate { .. }) {
                    "target"
                } else {
                    "at_least"
                };
                is.check(finite_in(*x, 0.0, 1.0), at(name), || {
                    format!("must be in [0, 1], got {x}")
                });
                window_ok(*window, *min_samples, &at, is);
            }
            Rule::Plateau {
                delta,
                steps,
                window,
                min_samples,
                ..
            } => {
                is.check(finite_in(*delta, 0.0, 1.0), at("delta"), || {
                    format!("must be in [0, 1], got {delta}")
                });
                is.check(*steps >= 1, at("steps"), || "must be ≥ 1".into());
                window_ok(*window, *min_samples, &at, is);
            }
            Rule::MaxSteps { steps } => is.check(*steps >= 1, at("steps"), || "must be ≥ 1".into()),
        }
        is.check(
            kind == StageKind::Rl || matches!(rule, Rule::MaxSteps { .. }),
            at("kind"),
            || {
                format!(
                    "an sft stage grades no responses; only max_steps applies, got {}",
                    rule.kind()
                )
            },
        );
        rules.push(rule);
    }
    Advance { combine, rules }
}

fn window_ok(window: u32, min_samples: u32, at: &dyn Fn(&str) -> String, is: &mut Issues<'_>) {
    is.check(window >= 1, at("window"), || "must be ≥ 1".into());
    is.check(
        min_samples >= 1 && min_samples <= window,
        at("min_samples"),
        || format!("must be in 1..=window ({window}), got {min_samples}"),
    );
}

#[cfg(test)]
mod tests;

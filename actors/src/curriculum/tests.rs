//! Engine scenarios: sampling by weight, save/restore mid-stage, advancement with evidence,
//! dynamic sampling, retirement, replay, and mid-run config changes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::data::import::fields::fnv1a64;
use crate::data::{Difficulty, Domain, Problem};

fn problem(id: &str, domain: Domain, difficulty: f64) -> Problem {
    Problem {
        id: id.into(),
        domain,
        prompt: format!("prompt {id}"),
        answer: (domain == Domain::Math).then(|| "1".into()),
        tests: (domain == Domain::Code).then(|| crate::data::Tests::Function {
            entry_point: "f".into(),
            test: "def check(c): pass".into(),
            prelude: String::new(),
        }),
        solution: id.ends_with('0').then(|| "reference".into()),
        difficulty: Some(Difficulty::PassRate(difficulty)),
        source: "t".into(),
        metadata: Default::default(),
    }
}

/// `n` problems per (domain, bucket) for hard/medium/easy.
fn dataset(n: usize) -> Vec<Problem> {
    let mut out = Vec::new();
    for d in Domain::ALL {
        for (b, rate) in [("hard", 0.1), ("medium", 0.5), ("easy", 0.9)] {
            for i in 0..n {
                out.push(problem(&format!("{d}-{b}-{i}"), d, rate));
            }
        }
    }
    out
}

const BUCKETS: &str = r#"
seed = 11
[[buckets]]
name = "hard"
pass_rate = [0.0, 0.25]
[[buckets]]
name = "medium"
pass_rate = [0.25, 0.75]
[[buckets]]
name = "easy"
pass_rate = [0.75, 1.0]
"#;

fn config(stages: &str) -> CurriculumConfig {
    CurriculumConfig::from_toml_str(&format!("{BUCKETS}\n{stages}"), None)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn curriculum(stages: &str, n: usize) -> Curriculum {
    Curriculum::new(config(stages), dataset(n)).unwrap().0
}

/// A deterministic fake grader: the verdict depends only on the prompt, how often it was
/// attempted, and the sample's position, so a restored curriculum sees the same verdicts.
fn grade(c: &Curriculum, d: &Draw, group: usize, p_correct: f64) -> Vec<Graded> {
    let attempts = c.prompt_stats(&d.id).map_or(0, |s| s.attempts);
    (0..group)
        .map(|j| {
            let h = fnv1a64(format!("{}/{attempts}/{j}", d.id).as_bytes());
            Graded {
                correct: (h % 1000) as f64 / 1000.0 < p_correct,
                truncated: h.is_multiple_of(7),
            }
        })
        .collect()
}

/// Runs `steps` learner steps of `batch` prompts, returning the draws and events.
fn run(c: &mut Curriculum, steps: usize, batch: usize, p: f64) -> (Vec<Draw>, Vec<StageAdvanced>) {
    let (mut draws, mut events) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let mut kept = 0;
        let mut todo = c.next_batch(batch).unwrap();
        loop {
            for d in &todo {
                let g = grade(c, d, 4, p);
                if c.record_group(d, &g) == GroupVerdict::Keep {
                    kept += 1;
                }
            }
            draws.extend(todo);
            if kept >= batch {
                break;
            }
            todo = c.refill(batch - kept).unwrap();
        }
        if let Some(e) = c.end_step().advanced {
            events.push(e);
        }
    }
    (draws, events)
}

const TWO_STAGES: &str = r#"
[[stages]]
name = "easy-first"
domains = { math = 2.0, code = 1.0 }
buckets = { easy = 3.0, medium = 1.0 }
dynamic_sampling = { max_refills = 50 }
advance.rules = [{ kind = "pass_rate", bucket = "easy", target = 0.7, window = 64, min_samples = 48 }]

[[stages]]
name = "hard"
domains = { math = 1.0 }
buckets = { hard = 1.0 }
replay = { fraction = 0.25 }
"#;

#[test]
fn draws_follow_domain_and_bucket_weights() {
    let mut c = curriculum(TWO_STAGES, 50);
    let mut counts: BTreeMap<(Domain, String), u32> = BTreeMap::new();
    let total = 24_000;
    for _ in 0..total / 100 {
        for d in c.next_batch(100).unwrap() {
            *counts.entry((d.domain, d.bucket)).or_default() += 1;
        }
    }
    // Weight of (domain, bucket) is domain weight × bucket weight: 2×3, 2×1, 1×3, 1×1 over 12.
    let want = [
        ((Domain::Math, "easy"), 6.0),
        ((Domain::Math, "medium"), 2.0),
        ((Domain::Code, "easy"), 3.0),
        ((Domain::Code, "medium"), 1.0),
    ];
    for ((d, b), w) in want {
        let got = f64::from(counts[&(d, b.to_string())]) / f64::from(total);
        assert!(
            (got - w / 12.0).abs() < 0.015,
            "{d}/{b}: {got} vs {}",
            w / 12.0
        );
    }
    assert_eq!(
        counts.len(),
        4,
        "nothing outside the stage's pools: {counts:?}"
    );
}

#[test]
fn without_replacement_within_an_epoch() {
    let mut c = curriculum(
        "[[stages]]\nname = \"s\"\ndomains = { code = 1.0 }\nbuckets = { hard = 1.0 }\n",
        30,
    );
    let ids: Vec<String> = c
        .next_batch(30)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 30, "an epoch repeats no prompt");
    let next: Vec<String> = c
        .next_batch(30)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_ne!(ids, next, "the next epoch is reshuffled");
}

#[test]
fn same_seed_same_draws() {
    let (a, _) = run(&mut curriculum(TWO_STAGES, 20), 5, 8, 0.5);
    let (b, _) = run(&mut curriculum(TWO_STAGES, 20), 5, 8, 0.5);
    assert_eq!(a, b);
    let other = TWO_STAGES.to_string();
    let mut c = Curriculum::new(
        CurriculumConfig::from_toml_str(
            &format!("{}\n{other}", BUCKETS.replace("seed = 11", "seed = 12")),
            None,
        )
        .unwrap(),
        dataset(20),
    )
    .unwrap()
    .0;
    assert_ne!(run(&mut c, 5, 8, 0.5).0, a);
}

#[test]
fn restore_mid_stage_reproduces_the_future_exactly() {
    let mut a = curriculum(TWO_STAGES, 20);
    run(&mut a, 3, 8, 0.4);
    assert_eq!(a.state().stage, 0, "still mid-stage");
    assert!(
        a.state()
            .rules
            .iter()
            .any(|r| r != &rules::RuleState::new(&a.stage().advance.rules[0]))
    );
    let bytes = a.save();
    let mut b = Curriculum::restore(config(TWO_STAGES), dataset(20), &bytes).unwrap();
    assert_eq!(a.state(), b.state());
    let (da, ea) = run(&mut a, 40, 8, 0.85);
    let (db, eb) = run(&mut b, 40, 8, 0.85);
    assert_eq!(da, db);
    assert_eq!(ea, eb);
    assert_eq!(ea.len(), 1, "the run crossed into stage 2: {ea:?}");
    assert_eq!(a.save(), b.save());
}

#[test]
fn restore_refuses_other_data_and_fixed_settings() {
    let a = curriculum(TWO_STAGES, 20);
    let bytes = a.save();
    let err = Curriculum::restore(config(TWO_STAGES), dataset(21), &bytes).unwrap_err();
    assert!(matches!(err, RestoreError::DatasetChanged { .. }), "{err}");
    let reseeded = CurriculumConfig::from_toml_str(
        &format!("{}\n{TWO_STAGES}", BUCKETS.replace("seed = 11", "seed = 1")),
        None,
    )
    .unwrap();
    let err = Curriculum::restore(reseeded, dataset(20), &bytes).unwrap_err();
    assert!(
        err.to_string().contains("curriculum.seed is fixed"),
        "{err}"
    );
    assert!(matches!(
        Curriculum::restore(config(TWO_STAGES), dataset(20), b"junk"),
        Err(RestoreError::Decode(_))
    ));
}

#[test]
fn advancing_records_its_evidence() {
    let mut c = curriculum(TWO_STAGES, 20);
    let (_, events) = run(&mut c, 60, 8, 0.8);
    let e = &events[0];
    assert_eq!(
        (e.from.as_str(), e.to.as_deref()),
        ("easy-first", Some("hard"))
    );
    let ev = &e.evidence[0];
    assert!(ev.holds && ev.samples >= 48 && ev.window == 64);
    assert!(ev.value.unwrap() >= 0.7);
    assert!(
        e.rule.starts_with("any(pass_rate(easy) >= 0.7"),
        "{}",
        e.rule
    );
    let json = e.to_event();
    assert_eq!(json["event"], "stage_advanced");
    assert_eq!(json["evidence"][0]["threshold"], 0.7);
    assert_eq!(c.stage().name, "hard");
    assert_eq!(c.state().stage_step, c.state().step - e.step);
}

#[test]
fn replay_draws_from_earlier_stages_only_at_its_fraction() {
    let mut c = curriculum(TWO_STAGES, 20);
    c.request_change(Change {
        config: None,
        jump_to: Some("hard".into()),
    })
    .unwrap();
    assert!(c.end_step().change.unwrap().is_ok());
    let draws: Vec<Draw> = (0..40).flat_map(|_| c.next_batch(100).unwrap()).collect();
    let replayed: Vec<&Draw> = draws.iter().filter(|d| d.replay).collect();
    let share = replayed.len() as f64 / draws.len() as f64;
    assert!((share - 0.25).abs() < 0.03, "{share}");
    assert!(
        replayed
            .iter()
            .all(|d| d.bucket == "easy" || d.bucket == "medium")
    );
    assert!(
        draws
            .iter()
            .filter(|d| !d.replay)
            .all(|d| d.bucket == "hard" && d.domain == Domain::Math)
    );
}

#[test]
fn mastered_prompts_retire_and_an_exhausted_stage_says_so() {
    let stages = "[retire]\nmastered_after = 2\n[[stages]]\nname = \"tiny\"\ndomains = { math = 1.0 }\nbuckets = { easy = 1.0 }\n";
    let mut c = curriculum(stages, 3);
    for _ in 0..2 {
        for d in c.next_batch(3).unwrap() {
            c.record_group(
                &d,
                &[Graded {
                    correct: true,
                    truncated: false,
                }],
            );
        }
    }
    assert!(
        (0..c.problems().len() as u32)
            .filter(|i| c.problems()[*i as usize].id.starts_with("math-easy"))
            .all(|i| c.is_retired(i))
    );
    let err = c.next_batch(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage 'tiny': no prompt left to sample in its buckets (all retired or without a solution)"
    );
}

#[test]
fn dynamic_sampling_drops_flat_groups_and_names_the_bucket_when_it_gives_up() {
    let stages = "[[stages]]\nname = \"too-easy\"\ndomains = { math = 1.0 }\nbuckets = { easy = 1.0 }\ndynamic_sampling = { max_refills = 3, oversample = 2.0 }\n";
    let mut c = curriculum(stages, 10);
    let all_right = [Graded {
        correct: true,
        truncated: false,
    }; 4];
    let mut todo = c.next_batch(4).unwrap();
    let mut err = None;
    for _ in 0..10 {
        for d in &todo {
            assert_eq!(c.record_group(d, &all_right), GroupVerdict::DropAllCorrect);
        }
        match c.refill(4) {
            Ok(more) => {
                assert_eq!(more.len(), 8, "oversample 2 × 4 missing");
                todo = more;
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("gave up");
    assert!(
        matches!(&err, SampleError::Fruitless { stage, bucket, refills: 3, all_wrong: 0, .. } if stage == "too-easy" && bucket == "easy"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("stage 'too-easy': dynamic sampling kept no group in 3 consecutive refills; bucket 'easy'"), "{err}");
    let mixed = [
        Graded {
            correct: true,
            truncated: false,
        },
        Graded {
            correct: false,
            truncated: false,
        },
    ];
    let d = c.next_batch(1).unwrap().remove(0);
    assert_eq!(c.record_group(&d, &mixed), GroupVerdict::Keep);
}

#[test]
fn a_change_waits_for_the_batch_boundary_and_keeps_matching_windows() {
    let mut c = curriculum(TWO_STAGES, 20);
    run(&mut c, 2, 8, 0.3);
    let before = c.state().rules.clone();
    let lowered = TWO_STAGES.replace("target = 0.7", "target = 0.1");
    c.request_change(Change {
        config: Some(config(&lowered)),
        jump_to: None,
    })
    .unwrap();
    assert_eq!(
        c.stage().advance.rules,
        config(TWO_STAGES).stages[0].advance.rules,
        "nothing changes before the boundary"
    );
    let batch = c.next_batch(2).unwrap();
    for d in &batch {
        let g = grade(&c, d, 4, 0.3);
        c.record_group(d, &g);
    }
    let out = c.end_step();
    let applied = out.change.unwrap().unwrap();
    assert_eq!(
        (applied.rules_kept, applied.rules_reset, applied.jumped),
        (1, 0, false)
    );
    assert_ne!(before, c.state().rules, "the window kept collecting");
    // With the lower target the kept window now holds: the next boundary advances.
    let next = c.end_step();
    assert_eq!(next.advanced.map(|e| e.to), Some(Some("hard".into())));
}

#[test]
fn invalid_changes_are_refused_and_nothing_changes() {
    let only_math: Vec<Problem> = dataset(20)
        .into_iter()
        .filter(|p| p.domain == Domain::Math)
        .collect();
    let mut c = Curriculum::new(config(TWO_STAGES), only_math).unwrap().0;
    run(&mut c, 2, 8, 0.3);
    let state = c.state().clone();
    let cfg = c.config().clone();
    let renamed = TWO_STAGES.replace("name = \"easy-first\"", "name = \"renamed\"");
    let cases = [
        (
            Change {
                config: Some(config(&renamed)),
                jump_to: None,
            },
            "the running stage 'easy-first' is not in the new config",
        ),
        (
            Change {
                config: None,
                jump_to: Some("nope".into()),
            },
            "jump_to names no stage: 'nope' (stages: easy-first, hard)",
        ),
        (
            Change::default(),
            "the change has neither a new config nor jump_to",
        ),
        (
            Change {
                config: Some(config(&TWO_STAGES.replace(
                    "domains = { math = 1.0 }\nbuckets = { hard = 1.0 }",
                    "domains = { code = 1.0 }\nbuckets = { hard = 1.0 }",
                ))),
                jump_to: None,
            },
            "stages[1] ('hard'): no problems in its pools (code/hard)",
        ),
    ];
    for (change, want) in cases {
        let err = c.request_change(change).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert!(c.pending_change().is_none());
        assert_eq!(c.state(), &state);
        assert_eq!(c.config(), &cfg);
    }
    // Adding a stage and jumping to it is fine.
    let added = format!("{TWO_STAGES}\n[[stages]]\nname = \"code\"\ndomains = {{ math = 1.0 }}\nbuckets = {{ medium = 1.0 }}\n")
        .replace("replay = { fraction = 0.25 }", "replay = { fraction = 0.25 }\nadvance.rules = [{ kind = \"max_steps\", steps = 5 }]");
    c.request_change(Change {
        config: Some(config(&added)),
        jump_to: Some("code".into()),
    })
    .unwrap();
    let applied = c.end_step().change.unwrap().unwrap();
    assert_eq!(
        (applied.from.as_str(), applied.to.as_str(), applied.jumped),
        ("easy-first", "code", true)
    );
    assert_eq!(c.state().stage, 2);
    assert_eq!(c.state().stage_step, 0);
}

#[test]
fn a_change_valid_when_asked_is_refused_at_the_boundary_if_the_state_moved() {
    let two = "[[stages]]\nname = \"a\"\ndomains = { math = 1.0 }\nbuckets = { easy = 1.0 }\nadvance.rules = [{ kind = \"max_steps\", steps = 1 }]\n[[stages]]\nname = \"b\"\ndomains = { math = 1.0 }\nbuckets = { hard = 1.0 }\n";
    let only_a = two.split("[[stages]]\nname = \"b\"").next().unwrap();
    let mut c = curriculum(two, 5);
    c.request_change(Change {
        config: Some(config(only_a)),
        jump_to: None,
    })
    .unwrap();
    // At the boundary the stage advances to "b" first; the change would remove "b".
    let out = c.end_step();
    assert_eq!(out.advanced.unwrap().to.as_deref(), Some("b"));
    assert_eq!(
        out.change,
        Some(Err(ChangeRefused::StageRemoved { name: "b".into() }))
    );
    assert_eq!(c.config(), &config(two));
    assert!(c.pending_change().is_none());
}

#[test]
fn sft_stages_draw_only_problems_with_a_solution() {
    let stages = "[[stages]]\nname = \"warmup\"\nkind = \"sft\"\ndomains = { math = 1.0 }\nbuckets = { easy = 1.0 }\nadvance.rules = [{ kind = \"max_steps\", steps = 2 }]\n[[stages]]\nname = \"rl\"\ndomains = { math = 1.0 }\nbuckets = { easy = 1.0 }\n";
    let mut c = curriculum(stages, 20);
    let draws = c.next_batch(10).unwrap();
    assert!(
        draws
            .iter()
            .all(|d| c.problems()[d.index as usize].solution.is_some())
    );
    assert!(c.end_step().advanced.is_none());
    let e = c.end_step().advanced.unwrap();
    assert_eq!(e.rule, "any(max_steps 2)");
}

#[test]
fn empty_stages_are_refused_at_build() {
    let stages = "[[stages]]\nname = \"s\"\ndomains = { code = 1.0 }\nbuckets = { easy = 1.0 }\n";
    let only_math: Vec<Problem> = dataset(3)
        .into_iter()
        .filter(|p| p.domain == Domain::Math)
        .collect();
    let err = Curriculum::new(config(stages), only_math).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stages[0] ('s'): no problems in its pools (code/easy)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// At every batch boundary the stage advances iff the pass-rate rule holds on the samples
    /// of its bucket seen so far, and never before `min_samples` of them.
    #[test]
    fn the_stage_advances_exactly_when_its_rule_holds(
        verdicts in prop::collection::vec(prop::collection::vec(any::<bool>(), 2), 1..40),
        target in 0.0f64..=1.0,
        window in 2u32..16,
        min_frac in 0.0f64..=1.0,
    ) {
        let min_samples = ((f64::from(window) * min_frac).ceil() as u32).clamp(1, window);
        let stages = format!(
            "[[stages]]\nname = \"a\"\ndomains = {{ math = 1.0 }}\nbuckets = {{ easy = 1.0, hard = 1.0 }}\n\
             advance.rules = [{{ kind = \"pass_rate\", bucket = \"easy\", target = {target:?}, window = {window}, min_samples = {min_samples} }}]\n\
             [[stages]]\nname = \"b\"\ndomains = {{ math = 1.0 }}\nbuckets = {{ easy = 1.0 }}\n"
        );
        let mut c = curriculum(&stages, 4);
        let mut seen: Vec<bool> = Vec::new();
        for (step, group) in verdicts.iter().enumerate() {
            let d = c.next_batch(1).unwrap().remove(0);
            let g: Vec<Graded> = group.iter().map(|&correct| Graded { correct, truncated: false }).collect();
            c.record_group(&d, &g);
            if d.bucket == "easy" {
                seen.extend(group);
            }
            let tail = &seen[seen.len().saturating_sub(window as usize)..];
            let rate = tail.iter().filter(|x| **x).count() as f64 / tail.len().max(1) as f64;
            let want = seen.len() >= min_samples as usize && rate >= target;
            let out = c.end_step();
            prop_assert_eq!(out.advanced.is_some(), want, "step {}: seen {:?}", step, seen);
            if let Some(e) = out.advanced {
                prop_assert!(e.evidence[0].samples >= u64::from(min_samples));
                break;
            }
        }
    }
}

#[test]
fn the_evaluation_set_is_a_fixed_evenly_spaced_sample_of_every_pool() {
    let mut c = curriculum(TWO_STAGES, 200);
    let set = c.evaluation_set(5);
    assert!(!set.is_empty());
    for (pool, members) in &set {
        let all = c.pools.members(pool);
        assert_eq!(members.len(), 5.min(all.len()), "{pool}");
        // Evenly spaced in id order, no repeats.
        let mut pos: Vec<usize> = members
            .iter()
            .map(|m| all.iter().position(|a| a == m).unwrap())
            .collect();
        let sorted = pos.clone();
        pos.dedup();
        assert_eq!(pos, sorted);
        assert!(pos.windows(2).all(|w| w[1] - w[0] >= all.len() / 5));
    }
    // Training does not move it.
    run(&mut c, 3, 4, 0.5);
    assert_eq!(c.evaluation_set(5), set);
    // More than a pool holds gives the whole pool.
    for (pool, members) in c.evaluation_set(100_000) {
        assert_eq!(members, c.pools.members(&pool));
    }
}

/// Drives `shared` through one step of `batch` prompts with sequence numbers
/// from `seq`, like the trainer, redoing every operation once when `redo`
/// (as a caller does after a crash of the actor between apply and reply).
fn step_through(shared: &actor::Shared, seq: &mut u64, batch: usize, redo: bool) -> Vec<Draw> {
    use actor::{Answer, Op};
    let mut apply = |op: Op| {
        *seq += 1;
        let first = shared.apply(*seq, op.clone());
        if redo {
            assert_eq!(
                shared.apply(*seq, op),
                first,
                "a redo is answered from memory"
            );
        }
        first
    };
    let Answer::Draws(Ok(draws)) = apply(Op::Next(batch)) else {
        panic!("no draws")
    };
    let graded: Vec<(Draw, Vec<Graded>)> = draws
        .iter()
        .map(|d| (d.clone(), grade(&shared.read(), d, 4, 0.6)))
        .collect();
    assert!(matches!(apply(Op::Record(graded)), Answer::Verdicts(v) if v.len() == batch));
    assert!(matches!(apply(Op::EndStep), Answer::Ended(_)));
    draws
}

#[test]
fn curriculum_operations_redone_after_a_crash_apply_once() {
    let once = actor::Shared::new(curriculum(TWO_STAGES, 6));
    let twice = actor::Shared::new(curriculum(TWO_STAGES, 6));
    let (mut a, mut b) = (0, 0);
    for _ in 0..5 {
        let x = step_through(&once, &mut a, 4, false);
        let y = step_through(&twice, &mut b, 4, true);
        assert_eq!(x, y);
    }
    assert_eq!(once.read().save(), twice.read().save());
    assert_eq!(twice.read().state().step, 5);
    // An operation older than the last one applied is refused, not applied.
    let old = twice.apply(1, actor::Op::EndStep);
    assert_eq!(old, actor::Answer::OutOfOrder { seq: 1, last: b });
    assert_eq!(twice.read().state().step, 5);
}

#[tokio::test]
async fn the_curriculum_actor_restarted_after_a_crash_answers_the_redone_call_from_memory() {
    use crate::call::call_with_retry;
    use crate::supervisor::{self, Report, RestartPolicy, Supervisor, spawner};
    use std::sync::Arc;
    use std::time::Duration;
    let shared = actor::Shared::new(curriculum(TWO_STAGES, 6));
    let reference = curriculum(TWO_STAGES, 6);
    let faults = Arc::new(crate::fault::Fault::at(Some(1)));
    let s = shared.clone();
    let children = vec![(
        actor::NAME.to_string(),
        spawner(move |sup| actor::spawn(s.clone(), faults.clone(), sup)),
    )];
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let args = supervisor::Args {
        policy: RestartPolicy {
            backoff_s: 0.01,
            ..Default::default()
        },
        children,
        reports: tx,
    };
    let (sup, handle) = ractor::Actor::spawn(None, Supervisor, args).await.unwrap();
    let timeout = Duration::from_secs(10);
    let (answer, redone) =
        call_with_retry(actor::NAME, timeout, None, 4, |reply| actor::Msg::Apply {
            seq: 1,
            op: actor::Op::Next(4),
            reply,
        })
        .await;
    assert!(redone);
    assert!(matches!(reports.try_recv(), Ok(Report::Restarted { .. })));
    // Drawn once: the same prompts an uninterrupted curriculum draws first.
    let mut reference = reference;
    let expected = reference.next_batch(4);
    assert_eq!(answer.unwrap(), actor::Answer::Draws(expected));
    assert_eq!(shared.read().save(), reference.save());
    sup.stop(None);
    handle.await.unwrap();
}

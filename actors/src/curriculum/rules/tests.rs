use proptest::prelude::*;

use super::*;

/// The reference: a pass-rate rule holds iff at least `min` outcomes were seen and the rate over
/// the last `min(seen, window)` of them reaches the target.
fn reference(outcomes: &[bool], target: f64, window: usize, min: usize) -> bool {
    if outcomes.len() < min {
        return false;
    }
    let tail = &outcomes[outcomes.len().saturating_sub(window)..];
    let hits = tail.iter().filter(|h| **h).count();
    hits as f64 / tail.len() as f64 >= target
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn pass_rate_holds_exactly_when_the_reference_does(
        outcomes in prop::collection::vec(any::<bool>(), 0..200),
        target in 0.0f64..=1.0,
        window in 1u32..40,
        min_frac in 0.0f64..=1.0,
    ) {
        let min_samples = ((f64::from(window) * min_frac).ceil() as u32).clamp(1, window);
        let rule = Rule::PassRate { bucket: Some("easy".into()), target, window, min_samples };
        let mut st = RuleState::new(&rule);
        for (n, hit) in outcomes.iter().enumerate() {
            // Other buckets' samples must not count.
            st.observe(&rule, "hard", !hit, false);
            st.observe(&rule, "easy", *hit, false);
            let e = evaluate(0, &rule, &st, 0);
            let want = reference(&outcomes[..=n], target, window as usize, min_samples as usize);
            prop_assert_eq!(e.holds, want, "after {} samples: {:?}", n + 1, e);
            if n + 1 < min_samples as usize {
                prop_assert!(!e.holds, "fired on {} < {} samples", n + 1, min_samples);
            }
        }
    }

    #[test]
    fn plateau_holds_exactly_when_no_gain_over_its_steps(
        rates in prop::collection::vec(0u32..=4, 1..30),
        steps in 1u32..6,
        delta in 0.0f64..0.6,
    ) {
        // Each step pushes 4 outcomes with `r` hits into a 4-wide window: the step's value is r/4.
        let rule = Rule::Plateau { bucket: None, delta, steps, window: 4, min_samples: 4 };
        let mut st = RuleState::new(&rule);
        let mut values: Vec<f64> = Vec::new();
        for r in &rates {
            for k in 0..4 {
                st.observe(&rule, "any", k < *r, false);
            }
            st.end_step(&rule);
            values.push(f64::from(*r) / 4.0);
            let e = evaluate(0, &rule, &st, values.len() as u64);
            let s = steps as usize;
            let want = values.len() > s && {
                let (before, recent) = values.split_at(values.len() - s);
                let best_before = before.iter().copied().fold(f64::MIN, f64::max);
                let best_recent = recent.iter().copied().fold(f64::MIN, f64::max);
                best_recent - best_before < delta
            };
            prop_assert_eq!(e.holds, want, "{:?} {:?}", values, e);
        }
    }
}

#[test]
fn truncation_counts_every_bucket_and_max_steps_counts_steps() {
    let rule = Rule::TruncationRate {
        at_least: 0.5,
        window: 4,
        min_samples: 2,
    };
    let mut st = RuleState::new(&rule);
    st.observe(&rule, "a", true, true);
    assert!(!evaluate(0, &rule, &st, 0).holds, "one sample is too few");
    st.observe(&rule, "b", true, false);
    let e = evaluate(0, &rule, &st, 0);
    assert!(e.holds);
    assert_eq!((e.value, e.samples, e.window), (Some(0.5), 2, 4));
    let rule = Rule::MaxSteps { steps: 3 };
    assert!(!evaluate(1, &rule, &RuleState::Steps, 2).holds);
    assert!(evaluate(1, &rule, &RuleState::Steps, 3).holds);
}

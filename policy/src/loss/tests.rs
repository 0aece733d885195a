use burn::tensor::Device;

use super::*;

fn t2(v: Vec<f32>, b: usize, t: usize) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, [b, t]), &Device::flex())
}

fn scalar(x: Tensor<1>) -> f32 {
    x.into_data().try_into_vec::<f32>().unwrap()[0]
}

fn close(a: f32, b: f32) {
    assert!((a - b).abs() < 1e-5, "{a} != {b}");
}

#[test]
fn advantages_match_hand_computation() {
    // mean 0.5, Bessel std sqrt((0.25 + 0.25 + 0) / 2) = 0.5.
    let a = group_advantages(&[1.0, 0.0, 0.5], true);
    for (x, want) in a.iter().zip([1.0, -1.0, 0.0]) {
        close(*x, want);
    }
    assert_eq!(
        group_advantages(&[1.0, 0.0, 0.5], false),
        vec![0.5, -0.5, 0.0]
    );
    // No signal: all equal, or a single response.
    assert_eq!(group_advantages(&[1.0, 1.0], true), vec![0.0, 0.0]);
    assert_eq!(group_advantages(&[3.0], true), vec![0.0]);
}

#[test]
fn aggregation_weights_match_hand_computation() {
    let mask = [true, true, true, false];
    let tm = aggregation_weights(&mask, 2, 2, Aggregation::TokenMean);
    assert_eq!(tm, vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
    let sm = aggregation_weights(&mask, 2, 2, Aggregation::SequenceMean);
    assert_eq!(sm, vec![0.25, 0.25, 0.5, 0.0]);
    let none = aggregation_weights(&[false; 4], 2, 2, Aggregation::SequenceMean);
    assert_eq!(none, vec![0.0; 4]);
}

/// Two responses: row 0 has two tokens and advantage +1, row 1 one token and −1.
fn terms(agg: Aggregation) -> GrpoTerms {
    let ln = |x: f32| x.ln();
    let mask = [true, true, true, false];
    GrpoTerms {
        logp: t2(vec![ln(0.5), ln(0.25), ln(0.1), 0.0], 2, 2),
        old_logp: t2(vec![ln(0.4), ln(0.25), ln(0.2), 0.0], 2, 2),
        advantages: t2(vec![1.0, 1.0, -1.0, -1.0], 2, 2),
        weights: t2(aggregation_weights(&mask, 2, 2, agg), 2, 2),
        ref_logp: None,
        entropy: None,
    }
}

#[test]
fn grpo_loss_matches_hand_computation() {
    let cfg = GrpoConfig::default();
    // Ratios: 1.25 (inside the clip range), 1.0, and 0.5 with Â = −1, clipped to 0.8:
    // per-token losses −1.25, −1.0, +0.8.
    close(
        scalar(grpo_loss(terms(Aggregation::TokenMean), &cfg)),
        (-1.25 - 1.0 + 0.8) / 3.0,
    );
    close(
        scalar(grpo_loss(terms(Aggregation::SequenceMean), &cfg)),
        ((-1.25 - 1.0) / 2.0 + 0.8) / 2.0,
    );
}

#[test]
fn clip_higher_is_decoupled_from_clip_low() {
    // Ratio 1.5 with Â = +1: clipped at 1 + ε_high, not 1 + ε_low.
    let one = |v: f32| t2(vec![v], 1, 1);
    let cfg = GrpoConfig::default();
    let loss = grpo_loss(
        GrpoTerms {
            logp: one(1.5f32.ln()),
            old_logp: one(0.0),
            advantages: one(1.0),
            weights: one(1.0),
            ref_logp: None,
            entropy: None,
        },
        &cfg,
    );
    close(scalar(loss), -1.28);
}

#[test]
fn kl_and_entropy_terms_match_hand_computation() {
    let one = |v: f32| t2(vec![v], 1, 1);
    let cfg = GrpoConfig {
        kl_coef: 0.5,
        entropy_coef: 0.1,
        ..Default::default()
    };
    // ratio 1, Â = 0: only the penalties remain. ref − logp = ln 2 → k3 = 2 − ln 2 − 1.
    let loss = grpo_loss(
        GrpoTerms {
            logp: one(0.25f32.ln()),
            old_logp: one(0.25f32.ln()),
            advantages: one(0.0),
            weights: one(1.0),
            ref_logp: Some(one(0.5f32.ln())),
            entropy: Some(one(1.2)),
        },
        &cfg,
    );
    close(scalar(loss), 0.5 * (1.0 - 2f32.ln()) - 0.1 * 1.2);
}

#[test]
fn token_logprobs_match_a_softmax_by_hand() {
    let logits: Tensor<3> = Tensor::from_data(
        TensorData::new(vec![0.0f32, 1.0, 2.0, 2.0, 0.0, 0.0], [1, 2, 3]),
        &Device::flex(),
    );
    let (logp, ent) = token_logprobs(logits, &[2, 0], 2.0);
    let logp = logp.into_data().try_into_vec::<f32>().unwrap();
    let ent = ent.into_data().try_into_vec::<f32>().unwrap();
    let lse = |xs: &[f32]| xs.iter().map(|x| x.exp()).sum::<f32>().ln();
    // Temperature 2 halves the logits.
    let r0 = [0.0f32, 0.5, 1.0];
    close(logp[0], 1.0 - lse(&r0));
    let r1 = [1.0f32, 0.0, 0.0];
    close(logp[1], 1.0 - lse(&r1));
    let h0: f32 = r0
        .iter()
        .map(|x| {
            let lp = x - lse(&r0);
            -lp.exp() * lp
        })
        .sum();
    close(ent[0], h0);
}

#[test]
fn grpo_config_validation_and_serde() {
    let cfg: GrpoConfig =
        serde_json::from_str(r#"{"aggregation": "sequence_mean", "kl_coef": 0.1}"#).unwrap();
    assert_eq!(cfg.aggregation, Aggregation::SequenceMean);
    assert!(serde_json::from_str::<GrpoConfig>(r#"{"clip_eps": 0.2}"#).is_err());
    let bad = GrpoConfig {
        clip_eps_low: 1.5,
        entropy_coef: -1.0,
        ..Default::default()
    };
    let msg = bad.validate().unwrap_err().to_string();
    assert!(
        msg.contains("grpo.clip_eps_low") && msg.contains("grpo.entropy_coef"),
        "{msg}"
    );
}

use rand::SeedableRng;

use super::*;
use crate::learner::{Group, SftExample};
use crate::loss::GrpoConfig;
use crate::sample::SamplingConfig;
use crate::testutil::tiny_config;

const BOS: u32 = 1;
const EOS: u32 = 2;

fn fresh() -> Learner {
    let opt = OptimizerConfig {
        lr: 5e-3,
        warmup_steps: 3,
        weight_decay: 0.01,
        ..Default::default()
    };
    Learner::new(tiny_config(), opt, &Device::flex(), 5, 0).unwrap()
}

/// One SFT step, then GRPO steps that sample with the learner's RNG and use a
/// KL reference: every piece of state (weights, moments, step, RNG, reference)
/// influences what follows.
fn train(l: &mut Learner, steps: usize) {
    for _ in 0..steps {
        if l.step() == 0 {
            l.sft_step(&[SftExample {
                prompt: vec![BOS, 3],
                completion: vec![4, EOS],
            }])
            .unwrap();
            continue;
        }
        let sampling = SamplingConfig::new(3, EOS);
        let rs = l.sample(&vec![vec![BOS, 3]; 6], &sampling).unwrap();
        let group = Group {
            prompt: vec![BOS, 3],
            rewards: rs
                .iter()
                .map(|r| f32::from(u8::from(r.tokens[0] == 4)))
                .collect(),
            responses: rs,
            advantages: None,
            temperature: 1.0,
        };
        let cfg = GrpoConfig {
            kl_coef: 0.05,
            ..Default::default()
        };
        l.grpo_step(&[group], &cfg).unwrap();
    }
}

fn bits(l: &Learner) -> Vec<u32> {
    crate::optim::weights(l.model.as_ref().unwrap())
        .iter()
        .flat_map(|t| t.data.iter().map(|x| x.to_bits()))
        .collect()
}

#[test]
fn resume_equals_uninterrupted_run() {
    let k = 3;
    let mut straight = fresh();
    train(&mut straight, 2 * k);

    let dir = tempfile::tempdir().unwrap();
    let mut first = fresh();
    train(&mut first, k);
    let run_cfg = serde_json::json!({"stage": "test"});
    first.save_checkpoint(dir.path(), run_cfg.clone()).unwrap();
    drop(first);
    let (mut resumed, manifest) = Learner::load_checkpoint(dir.path(), &Device::flex()).unwrap();
    assert_eq!(manifest.step, k as u64);
    assert_eq!(manifest.run_config, run_cfg);
    assert_eq!(manifest.model, tiny_config());
    train(&mut resumed, k);

    assert_eq!(resumed.step(), straight.step());
    assert_eq!(resumed.policy_version(), straight.policy_version());
    assert_eq!(resumed.optim.state(), straight.optim.state());
    assert!(
        bits(&resumed) == bits(&straight),
        "weights differ after resume"
    );
    // The RNG continues the same stream.
    let cfg = SamplingConfig::new(4, EOS);
    let p = vec![vec![BOS, 5]; 3];
    assert_eq!(
        resumed.sample(&p, &cfg).unwrap(),
        straight.sample(&p, &cfg).unwrap()
    );
}

#[test]
fn a_crash_before_the_manifest_leaves_the_old_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = fresh();
    train(&mut l, 1);
    l.save_checkpoint(dir.path(), serde_json::Value::Null)
        .unwrap();
    // A later save that died after writing its state file but before the
    // manifest: the manifest still names step 1.
    write_atomic(dir.path(), "learner-0000000002.bin", b"partial").unwrap();
    let (r, m) = Learner::load_checkpoint(dir.path(), &Device::flex()).unwrap();
    assert_eq!((m.step, r.step()), (1, 1));
    assert!(bits(&r) == bits(&l));
    // No temp files are left behind, and old state files are pruned.
    train(&mut l, 3);
    l.save_checkpoint(dir.path(), serde_json::Value::Null)
        .unwrap();
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".bin")).count(),
        2,
        "{names:?}"
    );
}

#[test]
fn truncated_state_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l = fresh();
    l.save_checkpoint(dir.path(), serde_json::Value::Null)
        .unwrap();
    let state = dir.path().join("learner-0000000000.bin");
    let bytes = fs::read(&state).unwrap();
    fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    let err = Learner::load_checkpoint(dir.path(), &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("learner-0000000000.bin") && err.contains("bytes"),
        "{err}"
    );
}

#[test]
fn snapshot_round_trips_into_a_policy() {
    let mut l = fresh();
    train(&mut l, 2);
    let snap = l.snapshot();
    let snap = crate::policy::WeightsSnapshot::from_bytes(&snap.to_bytes().unwrap()).unwrap();
    let mut policy = crate::policy::Policy::new(tiny_config(), &Device::flex(), 0).unwrap();
    assert_eq!(policy.version(), 0);
    policy.load_snapshot(&snap).unwrap();
    assert_eq!(policy.version(), 2);
    let cfg = SamplingConfig::new(4, EOS);
    let p = vec![vec![BOS, 5]; 3];
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let from_policy = policy.sample(&p, &cfg, &mut r1).unwrap();
    let from_learner = crate::sample::sample(&l.inference_model(), &p, &cfg, 0, &mut r2).unwrap();
    assert_eq!(from_policy, from_learner);
    // A snapshot of another shape is refused.
    let mut other = snap.clone();
    other.config.d_model = 32;
    assert!(policy.load_snapshot(&other).is_err());
}

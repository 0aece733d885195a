//! Keeps `configs/demo-flat.toml` in step with `configs/demo.toml`: the flat
//! baseline must differ from the staged demo only in its curriculum's stages,
//! or the experiment compares more than the curriculum.
//!
//! Checked: every table but `[curriculum]` is identical; the curriculum's
//! seed, buckets and retirement are identical; the warm-up stage is
//! identical; the one flat stage samples every bucket and every domain with
//! equal weight, has no rule but a large `max_steps`, uses demo's largest
//! response limit, and takes every other generation and learner setting
//! from demo's RL stages (with stage-to-stage inheritance applied).

use std::collections::BTreeMap;

use toml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn load(name: &str) -> toml::Table {
    let path = format!("{ROOT}/configs/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn stages(t: &toml::Table) -> Vec<toml::Table> {
    t["curriculum"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_table().unwrap().clone())
        .collect()
}

/// Each stage's effective `generation` and `learner` settings: a setting not
/// given is inherited from the previous stage.
fn effective(stages: &[toml::Table]) -> Vec<BTreeMap<String, Value>> {
    let mut cur = BTreeMap::new();
    stages
        .iter()
        .map(|s| {
            for table in ["generation", "learner"] {
                if let Some(t) = s.get(table).and_then(Value::as_table) {
                    for (k, v) in t {
                        cur.insert(format!("{table}.{k}"), v.clone());
                    }
                }
            }
            cur.clone()
        })
        .collect()
}

fn is_rl(s: &toml::Table) -> bool {
    s.get("kind").and_then(Value::as_str).unwrap_or("rl") == "rl"
}

#[test]
fn demo_flat_differs_from_demo_only_in_its_stages() {
    let (demo, flat) = (load("demo.toml"), load("demo-flat.toml"));
    let keys = |t: &toml::Table| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&demo),
        keys(&flat),
        "demo-flat.toml must have demo.toml's tables"
    );
    for (k, v) in &demo {
        if k != "curriculum" {
            assert_eq!(
                Some(v),
                flat.get(k),
                "[{k}] differs between demo.toml and demo-flat.toml"
            );
        }
    }
    let (dc, fc) = (
        demo["curriculum"].as_table().unwrap(),
        flat["curriculum"].as_table().unwrap(),
    );
    for (k, v) in dc {
        if k != "stages" {
            assert_eq!(Some(v), fc.get(k), "curriculum.{k} differs");
        }
    }
    let (ds, fs) = (stages(&demo), stages(&flat));
    assert_eq!(
        fs.len(),
        2,
        "demo-flat.toml: the warm-up and one flat stage"
    );
    assert_eq!(ds[0], fs[0], "the warm-up stage differs");
}

#[test]
fn the_flat_stage_samples_every_bucket_uniformly_with_demos_rl_settings() {
    let (demo, flat) = (load("demo.toml"), load("demo-flat.toml"));
    let (ds, fs) = (stages(&demo), stages(&flat));
    let stage = &fs[1];
    assert!(is_rl(stage));
    // Every bucket of the curriculum, equal weights.
    let buckets: Vec<&str> = demo["curriculum"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    let weights = stage["buckets"].as_table().unwrap();
    assert_eq!(weights.len(), buckets.len(), "{weights:?}");
    for b in &buckets {
        assert_eq!(weights.get(*b), Some(&Value::Float(1.0)), "bucket {b}");
    }
    // Every domain any demo stage samples, equal weights.
    let mut domains: Vec<&String> = ds
        .iter()
        .flat_map(|s| s["domains"].as_table().unwrap().keys())
        .collect();
    domains.sort();
    domains.dedup();
    let fd = stage["domains"].as_table().unwrap();
    assert_eq!(fd.keys().collect::<Vec<_>>(), domains);
    assert!(fd.values().all(|w| w == &Value::Float(1.0)), "{fd:?}");
    // No pass-rate advancement: only a backstop max_steps.
    let rules = stage["advance"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["kind"].as_str(), Some("max_steps"));
    assert!(
        rules[0]["steps"].as_integer().unwrap() >= 100_000,
        "max_steps must not end the run before the budget"
    );
    assert!(stage.get("replay").is_none());
    // Generation and learner settings: the largest response limit, and
    // otherwise values demo's RL stages use.
    let (de, fe) = (effective(&ds), effective(&fs));
    let demo_rl: Vec<&BTreeMap<String, Value>> = ds
        .iter()
        .zip(&de)
        .filter(|(s, _)| is_rl(s))
        .map(|p| p.1)
        .collect();
    let flat_rl = &fe[1];
    let max_len = |e: &BTreeMap<String, Value>| {
        e.get("generation.max_response_tokens")
            .and_then(Value::as_integer)
    };
    assert_eq!(
        max_len(flat_rl),
        demo_rl.iter().filter_map(|e| max_len(e)).max(),
        "max_response_tokens"
    );
    let mut keys: Vec<&String> = demo_rl
        .iter()
        .flat_map(|e| e.keys())
        .chain(flat_rl.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys
        .into_iter()
        .filter(|k| *k != "generation.max_response_tokens")
    {
        let ours = flat_rl.get(k);
        assert!(
            demo_rl.iter().any(|e| e.get(k) == ours),
            "demo-flat.toml's flat stage has {k} = {ours:?}, which no RL stage of demo.toml uses"
        );
    }
}

use std::path::Path;

use super::*;

pub(crate) const EXAMPLE: &str = r#"
[run]
name = "math-then-code"

[curriculum]
seed = 7
unrated_bucket = "medium"

[[curriculum.buckets]]
name = "hard"
pass_rate = [0.0, 0.25]

[[curriculum.buckets]]
name = "medium"
pass_rate = [0.25, 0.75]

[[curriculum.buckets]]
name = "easy"
pass_rate = [0.75, 1.0]

[curriculum.retire]
mastered_after = 4

[[curriculum.stages]]
name = "warmup"
kind = "sft"
domains = { math = 1.0 }
buckets = { easy = 1.0 }
advance.rules = [{ kind = "max_steps", steps = 10 }]

[[curriculum.stages]]
name = "math-easy"
domains = { math = 1.0 }
buckets = { easy = 3.0, medium = 1.0 }
generation = { max_response_tokens = 2048, group_size = 4 }
dynamic_sampling = { max_refills = 4 }
[curriculum.stages.advance]
combine = "any"
rules = [
  { kind = "pass_rate", bucket = "easy", target = 0.8, window = 256, min_samples = 128 },
  { kind = "truncation_rate", at_least = 0.03, window = 512 },
  { kind = "max_steps", steps = 1000 },
]

[[curriculum.stages]]
name = "mixed"
domains = { math = 2.0, code = 1.0 }
buckets = { medium = 1.0, hard = 1.0 }
generation = { max_response_tokens = 4096 }
learner = { lr = 5e-7, kl_coef = 0.001 }
replay = { fraction = 0.1 }
"#;

fn errors(src: &str) -> Vec<String> {
    match CurriculumConfig::from_toml_str(src, Some(Path::new("run.toml"))) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.issues().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_resolves_defaults_and_inheritance() {
    let c = CurriculumConfig::from_toml_str(EXAMPLE, None).unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.stages.len(), 3);
    assert_eq!(c.stages[0].kind, StageKind::Sft);
    let s1 = &c.stages[1];
    assert_eq!(s1.generation.max_response_tokens, 2048);
    assert_eq!(s1.generation.group_size, 4);
    assert_eq!(s1.generation.temperature, 1.0);
    assert_eq!(
        s1.dynamic_sampling,
        Some(DynamicSampling {
            max_refills: 4,
            oversample: 1.0
        })
    );
    assert_eq!(s1.advance.combine, Combine::Any);
    assert_eq!(
        s1.advance.rules[1],
        Rule::TruncationRate {
            at_least: 0.03,
            window: 512,
            min_samples: 512
        }
    );
    let s2 = &c.stages[2];
    // Inherited from stage 1, overridden where given.
    assert_eq!(s2.generation.group_size, 4);
    assert_eq!(s2.generation.max_response_tokens, 4096);
    assert_eq!(s2.learner.lr, 5e-7);
    assert_eq!(s2.dynamic_sampling, None);
    assert_eq!(s2.domains, vec![(Domain::Code, 1.0), (Domain::Math, 2.0)]);
    assert_eq!(s2.replay_fraction, 0.1);
    assert!(s2.advance.rules.is_empty());
}

#[test]
fn a_standalone_curriculum_file_reads_the_same() {
    let standalone: String = EXAMPLE
        .replace("[run]\nname = \"math-then-code\"\n", "")
        .replace("[curriculum]\n", "")
        .replace("curriculum.", "");
    let a = CurriculumConfig::from_toml_str(EXAMPLE, None).unwrap();
    let b = CurriculumConfig::from_toml_str(&standalone, None).unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_error_names_file_line_and_field() {
    let bad = EXAMPLE
        .replace("target = 0.8", "target = 1.8")
        .replace("max_response_tokens = 4096", "max_response_tokens = 1024")
        .replace(
            "buckets = { medium = 1.0, hard = 1.0 }",
            "buckets = { medium = 1.0, expert = 1.0 }",
        );
    let errs = errors(&bad);
    let line_of = |needle: &str| bad[..bad.find(needle).unwrap()].matches('\n').count() + 1;
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(
        errs[0],
        format!(
            "run.toml:{}: stages[1].advance.rules[0].target: must be in [0, 1], got 1.8",
            line_of("target = 1.8")
        )
    );
    assert!(
        errs[1].starts_with(&format!(
            "run.toml:{}: stages[2].buckets.expert: names no bucket",
            line_of("expert")
        )),
        "{}",
        errs[1]
    );
    assert_eq!(
        errs[2],
        format!(
            "run.toml:{}: stages[2].generation.max_response_tokens: must be ≥ stages[1]'s (2048), got 1024; response limits only grow",
            line_of("max_response_tokens = 1024")
        )
    );
}

#[test]
fn unknown_fields_fail_with_their_path_and_line() {
    let bad = EXAMPLE.replace("group_size = 4 }", "group_size = 4, tempature = 0.7 }");
    let errs = errors(&bad);
    let line = bad[..bad.find("tempature").unwrap()].matches('\n').count() + 1;
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!("run.toml:{line}: stages[1].generation")),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("unknown field `tempature`"), "{}", errs[0]);
}

#[test]
fn structural_mistakes_are_all_reported() {
    let src = r#"
[[buckets]]
name = "a"
pass_rate = [0.0, 0.6]
[[buckets]]
name = "b"
pass_rate = [0.5, 1.0]
[[buckets]]
name = "c"
[[stages]]
name = "s"
domains = { math = 1.0, chemistry = 1.0 }
buckets = { a = 0.0 }
generation = { group_size = 1, top_p = 0.0 }
replay = { fraction = 0.2 }
[[stages]]
name = "s"
kind = "sft"
domains = { code = 1.0 }
buckets = { b = 1.0 }
advance.rules = [{ kind = "pass_rate", bucket = "a", target = 0.5, window = 10, min_samples = 20 }]
"#;
    let errs = errors(src);
    let fields: Vec<&str> = errs.iter().map(|e| e.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        fields,
        [
            "buckets[1].pass_rate",
            "buckets[2]",
            "stages[0].domains.chemistry",
            "stages[0].buckets.a",
            "stages[0].generation.top_p",
            "stages[0].generation.group_size",
            "stages[0].replay.fraction",
            "stages[0].advance",
            // Inherited from stages[0], so reported where it is used too.
            "stages[1].generation.top_p",
            "stages[1].advance.rules[0].bucket",
            "stages[1].advance.rules[0].min_samples",
            "stages[1].advance.rules[0].kind",
            "stages[1].name",
        ],
        "{errs:#?}"
    );
    assert!(errs.iter().all(|e| e.starts_with("run.toml:")), "{errs:#?}");
}

#[test]
fn a_missing_file_names_it() {
    let err = CurriculumConfig::from_path(Path::new("/nonexistent/run.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/run.toml: "),
        "{err}"
    );
}

#[test]
fn a_stage_may_set_its_own_batch_size_but_not_zero() {
    let src = EXAMPLE.replace(
        "name = \"warmup\"\nkind = \"sft\"",
        "name = \"warmup\"\nkind = \"sft\"\nbatch_prompts = 32",
    );
    let c = CurriculumConfig::from_toml_str(&src, None).unwrap();
    assert_eq!(c.stages[0].batch_prompts, Some(32));
    assert_eq!(
        c.stages[1].batch_prompts, None,
        "unset: the run's batch_prompts"
    );
    let bad = EXAMPLE.replace("name = \"mixed\"", "name = \"mixed\"\nbatch_prompts = 0");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("stages[2].batch_prompts: must be ≥ 1"),
        "{}",
        errs[0]
    );
}

#[test]
fn reference_model_buckets_read_and_their_mistakes_are_named() {
    let src = r#"
[[buckets]]
name = "L1"
pass_rates = [{ "r1-1.5b" = "(0, 1)" }]
[[buckets]]
name = "L3"
pass_rates = [{ "r1-32b" = 0 }]
sample_rest = { math = 0.5, code = 0.25 }
[[stages]]
name = "s"
domains = { math = 1.0 }
buckets = { L1 = 1.0, L3 = 1.0 }
"#;
    let c = CurriculumConfig::from_toml_str(src, None).unwrap();
    let BucketRule::Models(l3) = &c.buckets[1].rule else {
        panic!("{:?}", c.buckets[1]);
    };
    assert_eq!(l3.models(), ["r1-32b"]);
    assert_eq!(l3.sample_rest, [(Domain::Code, 0.25), (Domain::Math, 0.5)]);
    assert_eq!(l3.any[0][0].1.to_string(), "0");

    let src = r#"
[[buckets]]
name = "a"
pass_rates = [{ m = "(0, 2)" }, {}]
sample_rest = { chemistry = 0.5, math = 1.5 }
[[buckets]]
name = "b"
pass_rate = [0.0, 1.0]
sample_rest = 0.5
[[buckets]]
name = "c"
labels = ["x"]
pass_rates = [{ m = 1 }]
[[stages]]
name = "s"
domains = { math = 1.0 }
buckets = { a = 1.0 }
"#;
    let errs = errors(src);
    let fields: Vec<&str> = errs.iter().map(|e| e.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        fields,
        [
            "buckets[0].pass_rates[0].m",
            "buckets[0].pass_rates[1]",
            "buckets[0].sample_rest.chemistry",
            "buckets[0].sample_rest.math",
            "buckets[1].sample_rest",
            "buckets[2]",
        ],
        "{errs:#?}"
    );
    assert!(errs[0].contains("2 is outside [0, 1]"), "{}", errs[0]);
}

/// The README's L1/L2/L3 example is a valid curriculum with the paper's definitions.
#[test]
fn the_readmes_paper_levels_read() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let from = readme.find("The paper's three levels, as").unwrap();
    let block = &readme[from..];
    let start = block.find("```toml\n").unwrap() + "```toml\n".len();
    let toml_text = &block[start..start + block[start..].find("```").unwrap()];
    let c = CurriculumConfig::from_toml_str(toml_text, None).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["L1", "L2", "L3"]);
    let BucketRule::Models(l2) = &c.buckets[1].rule else {
        panic!("L2 is not a pass_rates bucket");
    };
    assert_eq!(l2.models(), ["r1-1.5b", "r1-7b"]);
    assert_eq!(l2.any.len(), 3);
    let BucketRule::Models(l3) = &c.buckets[2].rule else {
        panic!("L3 is not a pass_rates bucket");
    };
    assert_eq!(l3.sample_rest, [(Domain::Code, 0.5), (Domain::Math, 0.5)]);
}

//! `gradus data`: dataset checks without training.
//!
//! `gradus data check FILE...` reads each file (JSONL or parquet) in gradus's format or a
//! public shape, prints every rejected row as `file:line: field: reason` (`file:row N: ...`
//! for parquet), writes them to a rejects file, and ends
//! with one JSON line `{"valid", "rejected", "by_domain", ...}`. It exits non-zero when a run
//! with the same `--max-reject-fraction` would refuse the data (duplicate ids always do).
//! `--dedup` reports repeated prompts (exact and near duplicates, within and across files);
//! `--against EVAL...` reports training prompts found in an evaluation set, and fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use gradus_actors::data::{FormatChoice, Loaded, dedup};
use serde_json::json;

const DEDUP_METHOD: &str = "normalised text (lower case, words, numbers and operators); exact: equal token sequences; near: Jaccard of word 5-gram sets, candidates by MinHash LSH (64 hashes, 16 bands of 4), every reported pair verified exactly";
const AGAINST_METHOD: &str = "normalised text; exact: equal token sequences; contained: the training prompt holds at least `similarity` of the evaluation problem's word 5-grams (counted exactly)";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate dataset files: print rejects, write them to a file, summarise as JSON.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Files to check: JSONL (one row per line) or parquet (known by its magic bytes).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Row shape: auto (detected per file: from the first row of JSONL, the schema's columns
    /// of parquet), gradus, math, gsm8k, deepscaler, humaneval, lcb.
    #[arg(long, default_value = "auto")]
    format: FormatChoice,
    /// Where to write rejected rows as JSONL ({"file", "line", "unit", "field", "reason",
    /// "row"}; `unit` says whether `line` counts lines or parquet rows).
    #[arg(long, default_value = "rejects.jsonl")]
    rejects: PathBuf,
    /// Fail when more than this fraction of rows is rejected (0 fails on any reject).
    #[arg(long, default_value_t = 0.0)]
    max_reject_fraction: f64,
    /// Keep at most N test cases per code problem, those with the longest inputs
    /// (`[data].max_tests_per_problem` in a run config); the summary counts what is cut.
    #[arg(long, value_name = "N")]
    max_tests: Option<usize>,
    /// Answer-format template for math rows without an instruction of their own
    /// (`{prompt}` stands for the row's text; `[data.templates].math` in a run config).
    #[arg(long, value_name = "TEMPLATE")]
    math_template: Option<String>,
    /// The same for code rows (`[data.templates].code`).
    #[arg(long, value_name = "TEMPLATE")]
    code_template: Option<String>,
    /// Find prompts that repeat others, within and across the files: exactly after
    /// normalising, or as near duplicates (Jaccard of word 5-grams ≥ --similarity, via
    /// MinHash LSH with every reported pair's Jaccard computed exactly).
    #[arg(long)]
    dedup: bool,
    /// Evaluation sets (any shape gradus reads) to check the training prompts against: a
    /// prompt equal to an evaluation problem after normalising, or holding ≥ --similarity
    /// of its word 5-grams, is reported and fails the check.
    #[arg(long, value_name = "FILE")]
    against: Vec<PathBuf>,
    /// The similarity that counts as a repeat: Jaccard for --dedup, containment of the
    /// evaluation problem's 5-grams for --against.
    #[arg(long, default_value_t = 0.8)]
    similarity: f64,
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.max_reject_fraction),
        "--max-reject-fraction must be in [0, 1], got {}",
        args.max_reject_fraction
    );
    anyhow::ensure!(args.max_tests != Some(0), "--max-tests must be at least 1");
    anyhow::ensure!(
        args.similarity > 0.0 && args.similarity <= 1.0,
        "--similarity must be in (0, 1], got {}",
        args.similarity
    );
    let mut loaded = Loaded::read_files(&args.files, args.format).context("reading the data")?;
    let eval = if args.against.is_empty() {
        None
    } else {
        let e = Loaded::read_files(&args.against, FormatChoice::Auto)
            .context("reading the --against evaluation sets")?;
        eprintln!(
            "gradus: --against: {} evaluation problems ({} rows rejected)",
            e.problems.len(),
            e.rejected()
        );
        Some(e)
    };
    for (flag, t) in [
        ("--math-template", &args.math_template),
        ("--code-template", &args.code_template),
    ] {
        if let Some(t) = t {
            gradus_actors::data::template::check(t).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
        }
    }
    let templates = gradus_actors::data::Templates {
        math: args.math_template.clone(),
        code: args.code_template.clone(),
    };
    let (capped, tests_dropped) = match args.max_tests {
        Some(n) => loaded.cap_tests(n),
        None => (0, 0),
    };
    for r in &loaded.rejects {
        println!("{r}");
    }
    loaded
        .write_rejects(&args.rejects)
        .context("writing the rejects file")?;
    // Repeats are judged on the rows' own text, before any template is applied.
    let prompts: Vec<&str> = loaded.problems.iter().map(|p| p.prompt.as_str()).collect();
    let dedup = args.dedup.then(|| {
        let found = dedup::duplicates(&prompts, args.similarity);
        let mut exact = 0;
        for d in &found {
            let (a, b) = (&loaded.origins[d.index], &loaded.origins[d.of]);
            match d.how {
                dedup::Match::Exact => {
                    exact += 1;
                    println!("{a}: exact duplicate of {b} (equal after normalising)");
                }
                dedup::Match::Jaccard(j) | dedup::Match::Containment(j) => {
                    println!("{a}: near duplicate of {b} (jaccard {j:.3})");
                }
            }
        }
        json!({"method": DEDUP_METHOD, "similarity": args.similarity,
               "exact": exact, "near": found.len() - exact})
    });
    let contamination = eval.as_ref().map(|e| {
        let eval_prompts: Vec<&str> = e.problems.iter().map(|p| p.prompt.as_str()).collect();
        let index = dedup::Against::new(&eval_prompts);
        let (mut exact, mut contained) = (0usize, 0usize);
        for (i, p) in prompts.iter().enumerate() {
            let Some((k, how)) = index.find(p, args.similarity) else {
                continue;
            };
            let (a, b) = (&loaded.origins[i], &e.origins[k]);
            match how {
                dedup::Match::Exact => {
                    exact += 1;
                    println!("{a}: in the evaluation set: {b} (equal after normalising)");
                }
                dedup::Match::Containment(c) | dedup::Match::Jaccard(c) => {
                    contained += 1;
                    println!(
                        "{a}: in the evaluation set: {b} (holds {:.1}% of its 5-grams)",
                        100.0 * c
                    );
                }
            }
        }
        json!({"against": args.against.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
               "method": AGAINST_METHOD, "similarity": args.similarity,
               "problems": exact + contained, "exact": exact, "contained": contained})
    });
    drop(prompts);
    let by_domain: serde_json::Map<String, serde_json::Value> = loaded
        .by_domain()
        .into_iter()
        .map(|(d, n)| (d.as_str().to_string(), json!(n)))
        .collect();
    let formats: serde_json::Map<String, serde_json::Value> = loaded
        .formats
        .iter()
        .map(|(f, fmt)| (f.clone(), json!(fmt.map(|x| x.name()))))
        .collect();
    // How each domain's prompts say how to answer: their own words, the template, or not at all.
    let prompts: serde_json::Map<String, serde_json::Value> = templates
        .apply(&mut loaded.problems)
        .into_iter()
        .map(|(d, a)| {
            (
                d.as_str().to_string(),
                json!({"own_instruction": a.own, "templated": a.templated, "no_instruction": a.bare,
                       "template": templates.for_domain(d)}),
            )
        })
        .collect();
    let summary = json!({
        "valid": loaded.problems.len(),
        "rejected": loaded.rejected(),
        "by_domain": by_domain,
        "duplicates": loaded.duplicates,
        "problems_capped": capped,
        "tests_dropped": tests_dropped,
        "prompts": prompts,
        "formats": formats,
        "rejects_file": args.rejects.display().to_string(),
    });
    let mut summary = summary;
    if let Some(d) = dedup {
        summary["dedup"] = d;
    }
    let contaminated = contamination
        .as_ref()
        .map_or(0, |c| c["problems"].as_u64().unwrap_or(0));
    if let Some(c) = contamination {
        summary["contamination"] = c;
    }
    println!("{summary}");
    if contaminated > 0 {
        eprintln!(
            "gradus: data check failed: {contaminated} training problems are in the evaluation set (--against)"
        );
        return Ok(ExitCode::FAILURE);
    }
    match loaded.into_problems(args.max_reject_fraction) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("gradus: data check failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

//! `gradus data`: dataset checks without training.
//!
//! `gradus data check FILE...` reads each file in gradus's format or a public shape, prints
//! every rejected row as `file:line: field: reason`, writes them to a rejects file, and ends
//! with one JSON line `{"valid", "rejected", "by_domain", ...}`. It exits non-zero when a run
//! with the same `--max-reject-fraction` would refuse the data (duplicate ids always do).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use gradus_actors::data::{FormatChoice, Loaded};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate dataset files: print rejects, write them to a file, summarise as JSON.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// JSONL files to check (one problem per line).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Row shape: auto (detected per file), gradus, math, gsm8k, deepscaler, humaneval, lcb.
    #[arg(long, default_value = "auto")]
    format: FormatChoice,
    /// Where to write rejected rows as JSONL ({"file", "line", "field", "reason", "row"}).
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
    let mut loaded = Loaded::read_files(&args.files, args.format).context("reading the data")?;
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
        "rejected": loaded.rejects.len(),
        "by_domain": by_domain,
        "duplicates": loaded.duplicates,
        "problems_capped": capped,
        "tests_dropped": tests_dropped,
        "prompts": prompts,
        "formats": formats,
        "rejects_file": args.rejects.display().to_string(),
    });
    println!("{summary}");
    match loaded.into_problems(args.max_reject_fraction) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("gradus: data check failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

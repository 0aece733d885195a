//! `gradus bench data`: a million-problem curriculum, from parquet to a resumed run.
//!
//! Writes (once, then reuses) a parquet file of realistic shape in gradus's row shape
//! (`id, domain, prompt, answer, tests, difficulty, source`; snappy, row groups of 10,000
//! rows): prompts of 200–2,000 characters, math answers, and a fraction of code problems
//! with 10–100 stdio tests each as JSON text. Then, in the same invocation, each in a fresh
//! process so peak RSS is its own:
//!
//! * the peer, `benches/pyarrow_read.py`: `pyarrow.parquet.read_table` of the file (best of
//!   `--repeats`), its peak RSS, and the bytes of every string value once decompressed;
//! * gradus: `Loaded::read_files` of the same file into checked problems (best of
//!   `--repeats`), peak RSS right after the load; then the curriculum over the first 10,000
//!   problems and over all of them, the per-step cost of drawing a batch in each, a
//!   million draws with their statistics recorded, the checkpoint's size, and the time to
//!   restore it onto the loaded problems.
//!
//! Printed: each figure, the ratios against the targets (load ≤ 1.5× pyarrow, peak RSS ≤
//! 1.5× the decompressed text), and one JSON line with everything.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use gradus_actors::curriculum::config::CurriculumConfig;
use gradus_actors::curriculum::{Curriculum, Graded};
use gradus_actors::data::{FormatChoice, Loaded};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Problems in the generated file.
    #[arg(long, default_value_t = 1_000_000)]
    problems: usize,
    /// Fraction of them that are code problems (10–100 tests each).
    #[arg(long, default_value_t = 0.2)]
    code_fraction: f64,
    /// Where the generated file is kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Loads timed per reader; the best counts.
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Python interpreter with pyarrow (default: the project venv's, else python3).
    #[arg(long)]
    python: Option<String>,
    /// Internal: measure gradus on this file in this process and print JSON.
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

/// Rows per row group of the generated file (what Hub exports use is of this order).
const GROUP_ROWS: usize = 10_000;
/// Prompts drawn per step when timing the sampler.
const BATCH: usize = 64;

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = &a.child {
        let out = measure(file, a.repeats)?;
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(a.problems >= 10_000, "--problems must be at least 10000");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.code_fraction),
        "--code-fraction must be in [0, 1]"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&a.dir).with_context(|| a.dir.display().to_string())?;
    let file = a.dir.join(format!(
        "curriculum-{}-code{:.0}.parquet",
        a.problems,
        100.0 * a.code_fraction
    ));
    if !file.exists() {
        let t = Instant::now();
        let partial = file.with_extension("parquet.partial");
        generate(&partial, a.problems, a.code_fraction)?;
        std::fs::rename(&partial, &file)?;
        println!(
            "wrote {} ({:.0} MiB) in {:.1}s",
            file.display(),
            mib(std::fs::metadata(&file)?.len()),
            t.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&file)?.len();
    println!(
        "file: {} ({:.0} MiB, {} problems, {:.0}% code)",
        file.display(),
        mib(size),
        a.problems,
        100.0 * a.code_fraction
    );

    let python = super::python(a.python.as_deref());
    let peer = Command::new(&python)
        .arg(root.join("benches/pyarrow_read.py"))
        .arg(&file)
        .args(["--repeats", &a.repeats.to_string()])
        .output()
        .with_context(|| format!("running {python}"))?;
    if !peer.status.success() {
        bail!(
            "the pyarrow peer failed (install it: {python} -m pip install pyarrow):\n{}",
            String::from_utf8_lossy(&peer.stderr)
        );
    }
    let peer: Value = serde_json::from_slice(&peer.stdout).context("the peer's JSON")?;
    let exe = std::env::current_exe()?;
    let ours = Command::new(&exe)
        .args([
            "bench",
            "data",
            "--repeats",
            &a.repeats.to_string(),
            "--child",
        ])
        .arg(&file)
        .output()?;
    if !ours.status.success() {
        bail!(
            "the gradus measurement failed:\n{}",
            String::from_utf8_lossy(&ours.stderr)
        );
    }
    let ours: Value = serde_json::from_slice(&ours.stdout).context("the child's JSON")?;

    let text = peer["text_bytes"].as_f64().unwrap_or(0.0);
    let load_ratio =
        ours["load_s"].as_f64().unwrap_or(0.0) / peer["seconds"].as_f64().unwrap_or(1.0);
    let rss_ratio = ours["load_peak_rss_bytes"].as_f64().unwrap_or(0.0) / text.max(1.0);
    println!(
        "pyarrow {} read_table: {:.2}s ({} threads), peak RSS {:.0} MiB; decompressed text {:.0} MiB",
        peer["pyarrow"].as_str().unwrap_or("?"),
        peer["seconds"].as_f64().unwrap_or(0.0),
        peer["threads"],
        mib(peer["peak_rss_bytes"].as_u64().unwrap_or(0)),
        text / (1 << 20) as f64
    );
    println!(
        "gradus load + check: {:.2}s ({} problems, {} rejected), peak RSS {:.0} MiB",
        ours["load_s"].as_f64().unwrap_or(0.0),
        ours["problems"],
        ours["rejected"],
        mib(ours["load_peak_rss_bytes"].as_u64().unwrap_or(0))
    );
    println!(
        "  load time  {load_ratio:.2}x pyarrow's (target <= 1.5x): {}",
        verdict(load_ratio <= 1.5)
    );
    println!(
        "  peak RSS   {rss_ratio:.2}x the decompressed text (target <= 1.5x): {}",
        verdict(rss_ratio <= 1.5)
    );
    for s in ours["sampling"].as_array().into_iter().flatten() {
        println!(
            "sampling over {:>9} problems: {:.1} us per step of {BATCH} prompts (p99 {:.1} us, max {:.1} us incl. an epoch's reshuffle)",
            s["problems"],
            s["mean_us"].as_f64().unwrap_or(0.0),
            s["p99_us"].as_f64().unwrap_or(0.0),
            s["max_us"].as_f64().unwrap_or(0.0)
        );
    }
    let ck = &ours["checkpoint"];
    println!(
        "checkpoint after {} draws ({} prompts with statistics): {:.1} MiB, saved in {:.2}s, restored onto the loaded problems in {:.2}s",
        ck["draws"],
        ck["prompts_with_stats"],
        mib(ck["bytes"].as_u64().unwrap_or(0)),
        ck["save_s"].as_f64().unwrap_or(0.0),
        ck["restore_s"].as_f64().unwrap_or(0.0)
    );
    let summary = json!({
        "file": file.display().to_string(),
        "file_bytes": size,
        "peer": peer,
        "gradus": ours,
        "load_ratio": load_ratio,
        "rss_ratio": rss_ratio,
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// This process's peak RSS so far, in bytes.
fn peak_rss() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as u64 * 1024)
        .unwrap_or(0)
}

/// The run's curriculum over `problems`: three difficulty buckets, one RL stage drawing
/// both domains, never advancing.
fn curriculum_config() -> anyhow::Result<CurriculumConfig> {
    let toml = r#"
[curriculum]
seed = 7

[[curriculum.buckets]]
name = "easy"
labels = ["easy"]

[[curriculum.buckets]]
name = "medium"
labels = ["medium"]

[[curriculum.buckets]]
name = "hard"
labels = ["hard"]

[[curriculum.stages]]
name = "all"
domains = { math = 0.8, code = 0.2 }
buckets = { easy = 1.0, medium = 1.0, hard = 1.0 }
advance.rules = [{ kind = "max_steps", steps = 1000000000 }]
"#;
    CurriculumConfig::from_run_toml_str(toml, None).map_err(|e| anyhow::anyhow!("{e}"))
}

fn measure(file: &Path, repeats: usize) -> anyhow::Result<Value> {
    let mut best = f64::INFINITY;
    let mut loaded = None;
    for _ in 0..repeats.max(1) {
        drop(loaded.take());
        let t = Instant::now();
        let l = Loaded::read_files(&[file.to_path_buf()], FormatChoice::Auto)?;
        best = best.min(t.elapsed().as_secs_f64());
        loaded = Some(l);
    }
    let loaded = loaded.expect("loaded once");
    let load_rss = peak_rss();
    let rejected = loaded.rejected();
    let problems = loaded.into_problems(0.0)?;
    let n = problems.len();
    let config = curriculum_config()?;

    let mut sampling = Vec::new();
    let small: Vec<_> = problems[..10_000.min(n)].to_vec();
    sampling.push(time_sampling(&config, small)?);
    let (mut c, _) = Curriculum::new(config.clone(), problems)?;
    sampling.push(time_steps(&mut c)?);

    // A long run's statistics: a million draws, each graded as a group of 4.
    let t = Instant::now();
    let mut draws = 0usize;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    while draws < 1_000_000 {
        let batch = c.next_batch(1024)?;
        for d in &batch {
            let group: Vec<Graded> = (0..4)
                .map(|_| Graded {
                    correct: rng.random_bool(0.4),
                    truncated: false,
                })
                .collect();
            c.record_group(d, &group);
        }
        c.end_step();
        draws += batch.len();
    }
    let draw_s = t.elapsed().as_secs_f64();
    let with_stats = c.state().prompts.len();
    let t = Instant::now();
    let bytes = c.save();
    let save_s = t.elapsed().as_secs_f64();
    let problems = c.into_problems();
    let t = Instant::now();
    let restored = Curriculum::restore(config, problems, &bytes)?;
    let restore_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        restored.state().prompts.len() == with_stats,
        "the restored statistics differ"
    );
    Ok(json!({
        "load_s": best,
        "load_peak_rss_bytes": load_rss,
        "problems": n,
        "rejected": rejected,
        "sampling": sampling,
        "checkpoint": {
            "draws": draws,
            "draw_and_record_s": draw_s,
            "prompts_with_stats": with_stats,
            "bytes": bytes.len(),
            "save_s": save_s,
            "restore_s": restore_s,
        },
        "final_peak_rss_bytes": peak_rss(),
    }))
}

fn time_sampling(
    config: &CurriculumConfig,
    problems: Vec<gradus_actors::data::Problem>,
) -> anyhow::Result<Value> {
    let (mut c, _) = Curriculum::new(config.clone(), problems)?;
    time_steps(&mut c)
}

/// Per-step cost of drawing a batch: 2,000 steps after 50 of warm-up.
fn time_steps(c: &mut Curriculum) -> anyhow::Result<Value> {
    for _ in 0..50 {
        c.next_batch(BATCH)?;
        c.end_step();
    }
    let mut us = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        let b = c.next_batch(BATCH)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(b);
        c.end_step();
    }
    us.sort_by(f64::total_cmp);
    let mean = us.iter().sum::<f64>() / us.len() as f64;
    Ok(json!({
        "problems": c.problems().len(),
        "mean_us": mean,
        "p50_us": us[us.len() / 2],
        "p99_us": us[us.len() * 99 / 100],
        "max_us": us[us.len() - 1],
    }))
}

/// Words the generated prompts are made of: plain words, numbers and LaTeX, as in
/// competition problems.
const WORDS: &[&str] = &[
    "Let",
    "the",
    "of",
    "a",
    "and",
    "is",
    "in",
    "to",
    "that",
    "for",
    "be",
    "number",
    "find",
    "integer",
    "positive",
    "sum",
    "all",
    "such",
    "real",
    "how",
    "many",
    "what",
    "value",
    "triangle",
    "circle",
    "radius",
    "area",
    "points",
    "probability",
    "sequence",
    "function",
    "$x$",
    "$y$",
    "$n$",
    "$f(x)$",
    "$a_n$",
    "$\\frac{1}{2}$",
    "$x^2+y^2=25$",
    "$\\sqrt{3}$",
    "$\\pi r^2$",
    "$2^{10}$",
    "$\\binom{n}{k}$",
    "prime",
    "divisible",
    "remainder",
    "when",
    "divided",
    "by",
    "each",
    "there",
    "are",
    "which",
    "greater",
    "than",
    "less",
    "equal",
    "digits",
    "base",
    "polynomial",
    "roots",
    "coefficients",
    "matrix",
    "vector",
    "angle",
    "degrees",
    "length",
    "side",
    "square",
    "rectangle",
    "chosen",
    "uniformly",
    "random",
    "expected",
    "compute",
    "determine",
    "smallest",
    "largest",
    "distinct",
    "ordered",
    "pairs",
];

fn prompt(rng: &mut ChaCha8Rng, code: bool) -> String {
    let len = rng.random_range(200..=2000);
    let mut s = String::with_capacity(len + 40);
    if code {
        s.push_str("Read the input from stdin and print the answer. ");
    }
    while s.len() < len {
        if rng.random_bool(0.15) {
            s.push_str(&rng.random_range(0..100_000).to_string());
        } else {
            s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        s.push(if rng.random_bool(0.08) { '.' } else { ' ' });
    }
    s
}

fn numbers(rng: &mut ChaCha8Rng, chars: usize) -> String {
    let mut s = String::with_capacity(chars + 8);
    while s.len() < chars {
        s.push_str(&rng.random_range(0..1_000_000_000u64).to_string());
        s.push(if rng.random_bool(0.2) { '\n' } else { ' ' });
    }
    s.push('\n');
    s
}

fn tests_json(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(10..=100);
    let cases: Vec<Value> = (0..n)
        .map(|_| {
            let (i, o) = (rng.random_range(5..=200), rng.random_range(1..=50));
            let input = numbers(rng, i);
            let output = numbers(rng, o);
            json!({"input": input, "output": output})
        })
        .collect();
    json!({"kind": "stdio", "cases": cases, "compare": "tokens"}).to_string()
}

/// Writes `n` problems in gradus's row shape, deterministic for a given `n`.
fn generate(path: &Path, n: usize, code_fraction: f64) -> anyhow::Result<()> {
    let schema = Arc::new(parse_message_type(
        "message problem {
            required binary id (UTF8);
            required binary domain (UTF8);
            required binary prompt (UTF8);
            optional binary answer (UTF8);
            optional binary tests (UTF8);
            optional binary difficulty (UTF8);
            required binary source (UTF8);
        }",
    )?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut w = SerializedFileWriter::new(File::create(path)?, schema, props)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut start = 0;
    while start < n {
        let rows = GROUP_ROWS.min(n - start);
        // Columns of this row group; `None` is a null.
        let mut cols: [Vec<Option<String>>; 7] = Default::default();
        for i in start..start + rows {
            let code = rng.random_bool(code_fraction);
            cols[0].push(Some(format!("gen-{i:07}")));
            cols[1].push(Some(if code { "code" } else { "math" }.into()));
            cols[2].push(Some(prompt(&mut rng, code)));
            if code {
                cols[3].push(None);
                cols[4].push(Some(tests_json(&mut rng)));
            } else {
                let answer = if rng.random_bool(0.3) {
                    format!(
                        "\\frac{{{}}}{{{}}}",
                        rng.random_range(1..1000),
                        rng.random_range(2..1000)
                    )
                } else {
                    rng.random_range(0..100_000).to_string()
                };
                cols[3].push(Some(answer));
                cols[4].push(None);
            }
            let d = ["easy", "medium", "hard"][rng.random_range(0..3)];
            cols[5].push(Some(d.into()));
            cols[6].push(Some("bench".into()));
        }
        let mut rg = w.next_row_group()?;
        let mut k = 0;
        while let Some(mut col) = rg.next_column()? {
            let values = std::mem::take(&mut cols[k]);
            let defs: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
            let data: Vec<ByteArray> = values
                .into_iter()
                .flatten()
                .map(|s| ByteArray::from(s.into_bytes()))
                .collect();
            let optional = matches!(k, 3..=5);
            col.typed::<ByteArrayType>()
                .write_batch(&data, optional.then_some(&defs[..]), None)?;
            col.close()?;
            k += 1;
        }
        rg.close()?;
        start += rows;
    }
    w.close()?;
    Ok(())
}

//! Fuzzers for the places bad input enters: the run config (as loaded at
//! start and as a reload sees it, curriculum change included) and the data
//! loaders. Each takes a count and a seed, runs that many mutated inputs, and
//! reports what happened to them; a panic or an unlocated error is a finding.
//!
//! `cargo test` runs a few thousand inputs of each; `gradus fuzz config
//! --inputs N` and `gradus fuzz data --inputs N` run as many as asked.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use gradus_actors::curriculum::{Change, Curriculum};
use gradus_actors::data::{FormatChoice, Loaded};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::RunConfig;

/// What a fuzzer saw.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// Inputs run.
    pub inputs: u64,
    /// Inputs accepted (a config that validated; data rows that loaded).
    pub accepted: u64,
    /// Inputs rejected with located errors (configs), or rejected rows (data).
    pub rejected: u64,
    /// Reloads the curriculum took, and refused with a reason (configs only).
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    /// Findings: a panic, or an error without its file:line. Empty when all is well.
    pub findings: Vec<String>,
}

/// The config every mutation starts from.
pub const DEMO: &str = include_str!("../configs/demo.toml");
const NAME: &str = "demo.toml";

/// One random edit of a TOML text, of the kinds a hand edit or a bad
/// generator makes: a line deleted, a value replaced by another type, a huge
/// or negative number, unicode, a table deleted, a line duplicated, garbage.
fn mutate(src: &str, rng: &mut ChaCha8Rng) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    let edits = rng.random_range(1..=3);
    for _ in 0..edits {
        if lines.is_empty() {
            break;
        }
        let i = rng.random_range(0..lines.len());
        match rng.random_range(0..9) {
            0 => {
                lines.remove(i);
            }
            1 | 2 => {
                if let Some((key, _)) = lines[i].split_once('=') {
                    const VALUES: &[&str] = &[
                        "\"text\"",
                        "-1",
                        "0",
                        "1e308",
                        "-1e308",
                        "9223372036854775807",
                        "18446744073709551616",
                        "nan",
                        "inf",
                        "true",
                        "[]",
                        "[1, \"a\"]",
                        "{}",
                        "{ a = 1 }",
                        "\"ünïcödé ✓ \u{202e}\"",
                        "1979-05-27T07:32:00Z",
                        "0.5",
                        "\"\"",
                    ];
                    let v = VALUES[rng.random_range(0..VALUES.len())];
                    lines[i] = format!("{}= {v}", key);
                }
            }
            3 => {
                // Delete a whole table: from a header to the next.
                if let Some(start) = (0..=i)
                    .rev()
                    .find(|&j| lines[j].trim_start().starts_with('['))
                {
                    let end = (start + 1..lines.len())
                        .find(|&j| lines[j].trim_start().starts_with('['))
                        .unwrap_or(lines.len());
                    lines.drain(start..end);
                }
            }
            4 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            5 => {
                let cut = rng.random_range(0..=lines[i].len());
                let cut = (0..=cut)
                    .rev()
                    .find(|&c| lines[i].is_char_boundary(c))
                    .unwrap_or(0);
                lines[i].truncate(cut);
            }
            6 => {
                const JUNK: &[&str] = &[
                    "[[",
                    "]",
                    "= 1",
                    "[run",
                    "a.b.c = 1",
                    "x = \"unterminated",
                    "[curriculum.x]",
                    "\u{0}",
                    "[[curriculum.stages]]",
                    "name = \"dup\"",
                ];
                lines.insert(i, JUNK[rng.random_range(0..JUNK.len())].to_string());
            }
            7 => {
                // A number made huge, negative or fractional in place.
                if let Some((key, v)) = lines[i].split_once('=')
                    && v.trim().parse::<f64>().is_ok()
                {
                    let n = match rng.random_range(0..4) {
                        0 => "1e30".to_string(),
                        1 => format!("-{}", v.trim()),
                        2 => "4294967296".to_string(),
                        _ => format!("{}.5", v.trim()),
                    };
                    lines[i] = format!("{key}= {n}");
                }
            }
            _ => {
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
            }
        }
    }
    lines.join("\n")
}

/// Every error line starts `demo.toml:LINE:`.
fn located(e: &str) -> bool {
    e.lines().all(|l| {
        l.strip_prefix(&format!("{NAME}:"))
            .and_then(|rest| rest.split(':').next())
            .is_some_and(|n| n.parse::<usize>().is_ok())
    })
}

/// Loads `inputs` mutations of the demo config as a run start and as a
/// reload would: each must validate or fail with located errors, and each
/// valid one is offered to a running curriculum as a change, which must be
/// applied or refused with a reason, never panic.
pub fn fuzz_config(inputs: u64, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = Report::default();
    let base = RunConfig::from_toml_str(DEMO, Some(Path::new(NAME))).expect("the demo config");
    let problems = demo_problems(&base);
    // request_change only validates and queues (each request replaces the
    // last), so one running curriculum serves every input.
    let (mut running, _) =
        Curriculum::new(base.curriculum.clone(), problems).expect("the demo curriculum");
    for _ in 0..inputs {
        report.inputs += 1;
        let src = mutate(DEMO, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            RunConfig::from_toml_str(&src, Some(Path::new(NAME)))
        }));
        match outcome {
            Err(_) => report.findings.push(format!("panic loading:\n{src}")),
            Ok(Err(e)) => {
                report.rejected += 1;
                let text = e.to_string();
                if !located(&text) {
                    report
                        .findings
                        .push(format!("unlocated error {text:?} for:\n{src}"));
                }
            }
            Ok(Ok(new)) => {
                report.accepted += 1;
                let change = Change {
                    config: Some(new.curriculum),
                    jump_to: None,
                };
                match catch_unwind(AssertUnwindSafe(|| running.request_change(change))) {
                    Err(_) => report.findings.push(format!("panic in reload of:\n{src}")),
                    Ok(Ok(())) => report.reloads_applied += 1,
                    Ok(Err(why)) => {
                        report.reloads_refused += 1;
                        if why.to_string().trim().is_empty() {
                            report
                                .findings
                                .push(format!("refused without a reason:\n{src}"));
                        }
                    }
                }
            }
        }
    }
    report
}

fn demo_problems(config: &RunConfig) -> Vec<gradus_actors::data::Problem> {
    let rows: Vec<String> = crate::synthetic::problems(config.run.seed, 20)
        .iter()
        .map(|r| r.to_string())
        .collect();
    let mut loaded = Loaded::default();
    loaded.read_str(&rows.join("\n"), "<builtin>", FormatChoice::Auto);
    loaded.problems
}

/// One mutated JSONL line: a valid row of some shape, truncated, with garbage
/// spliced in, deeply nested, very long, or not JSON at all.
fn data_line(rows: &[String], rng: &mut ChaCha8Rng) -> String {
    let row = &rows[rng.random_range(0..rows.len())];
    match rng.random_range(0..8) {
        0 => row.clone(),
        1 => {
            let cut = rng.random_range(0..=row.len());
            let cut = (0..=cut)
                .rev()
                .find(|&c| row.is_char_boundary(c))
                .unwrap_or(0);
            row[..cut].to_string()
        }
        2 => {
            let depth = rng.random_range(100..5000);
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
        }
        3 => {
            let depth = rng.random_range(100..3000);
            format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
        4 => {
            let mut b: Vec<char> = row.chars().collect();
            for _ in 0..rng.random_range(1..8) {
                if b.is_empty() {
                    break;
                }
                let i = rng.random_range(0..b.len());
                b[i] =
                    ['"', '{', '}', ',', ':', '\\', '\u{fffd}', 'x', '0'][rng.random_range(0..9)];
            }
            b.into_iter().collect()
        }
        5 => format!(
            "{{\"id\": \"big\", \"domain\": \"math\", \"prompt\": \"{}\", \"answer\": \"1\"}}",
            "x".repeat(rng.random_range(1000..200_000))
        ),
        6 => {
            // A field of the row set to another type.
            let mut v: serde_json::Value = serde_json::from_str(row).unwrap_or_default();
            if let Some(o) = v.as_object_mut()
                && !o.is_empty()
            {
                let keys: Vec<String> = o.keys().cloned().collect();
                let k = &keys[rng.random_range(0..keys.len())];
                let new = match rng.random_range(0..5) {
                    0 => serde_json::json!(null),
                    1 => serde_json::json!(-1),
                    2 => serde_json::json!([[[]]]),
                    3 => serde_json::json!({"x": 1}),
                    _ => serde_json::json!(1e308),
                };
                o.insert(k.clone(), new);
            }
            v.to_string()
        }
        _ => {
            ["", "null", "[]", "42", "\"s\"", "{}", "{\"id\":"][rng.random_range(0..7)].to_string()
        }
    }
}

/// Loads `inputs` mutated JSONL lines (in files of 50) through the importers:
/// each line must be a problem or a reject naming its file and line, never
/// a panic; rows are counted exactly.
pub fn fuzz_data(inputs: u64, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<String> = crate::synthetic::problems(seed, 5)
        .iter()
        .map(|r| r.to_string())
        .collect();
    // Public shapes too, so every importer is reached.
    for fixture in [
        include_str!("../tests/fixtures/data/gsm8k.jsonl"),
        include_str!("../tests/fixtures/data/humaneval.jsonl"),
        include_str!("../tests/fixtures/data/apps.jsonl"),
    ] {
        rows.extend(
            fixture
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    let mut report = Report::default();
    let mut done = 0u64;
    while done < inputs {
        let n = (inputs - done).min(50);
        let lines: Vec<String> = (0..n).map(|_| data_line(&rows, &mut rng)).collect();
        done += n;
        report.inputs += n;
        let text = lines.join("\n");
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            let mut l = Loaded::default();
            l.read_str(&text, "fuzz.jsonl", FormatChoice::Auto);
            l
        }));
        let Ok(l) = loaded else {
            report.findings.push(format!("panic loading:\n{text}"));
            continue;
        };
        report.accepted += l.problems.len() as u64;
        report.rejected += l.rejects.len() as u64;
        let nonblank = lines.iter().filter(|x| !x.trim().is_empty()).count();
        if l.rows != nonblank || l.problems.len() + l.rejects.len() != nonblank {
            report.findings.push(format!(
                "{} rows, {} problems + {} rejects for {nonblank} lines:\n{text}",
                l.rows,
                l.problems.len(),
                l.rejects.len()
            ));
        }
        for r in &l.rejects {
            if r.file != "fuzz.jsonl" || r.line == 0 || r.line > lines.len() || r.reason.is_empty()
            {
                report.findings.push(format!("unlocated reject {r}"));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzed_edits_of_the_demo_config_load_or_fail_located_and_reload_safely() {
        let r = fuzz_config(1500, 18);
        assert!(
            r.findings.is_empty(),
            "{:#?}",
            &r.findings[..r.findings.len().min(5)]
        );
        // The mutations reach every outcome.
        assert!(r.accepted > 50 && r.rejected > 500, "{r:?}");
        assert!(r.reloads_applied > 0 && r.reloads_refused > 0, "{r:?}");
    }

    #[test]
    fn fuzzed_data_lines_are_problems_or_located_rejects() {
        let r = fuzz_data(3000, 18);
        assert!(
            r.findings.is_empty(),
            "{:#?}",
            &r.findings[..r.findings.len().min(5)]
        );
        assert!(r.accepted > 100 && r.rejected > 1000, "{r:?}");
    }
}

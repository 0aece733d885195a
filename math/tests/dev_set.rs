//! Agreement with the labelled development set in `../shared/data/math_dev.jsonl`
//! (outside the repository; never copied in; `GRADUS_MATH_DEV` overrides the
//! path). Ignored by default:
//! `cargo test -p gradus-math --test dev_set -- --ignored --nocapture`.

use gradus_math::{GradeConfig, grade};

#[test]
#[ignore = "reads ../shared/data/math_dev.jsonl from outside the repository"]
fn dev_set_agreement() {
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/math_dev.jsonl"
    );
    let path = std::env::var("GRADUS_MATH_DEV").unwrap_or_else(|_| default.to_string());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (set GRADUS_MATH_DEV to its path)"));
    let cfg = GradeConfig::lenient();
    let mut agree = 0;
    let mut total = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let gold = row["gold"].as_str().unwrap();
        let pred = row["pred"].as_str().unwrap();
        let expected = row["expected"].as_bool().unwrap();
        let g = grade(gold, pred, &cfg);
        total += 1;
        if g.correct == expected {
            agree += 1;
        } else {
            println!(
                "row {i}: expected {expected}, got {:?} {:?}\n  gold {gold:?}\n  pred {:?}",
                g.reason,
                g.extracted,
                pred.chars()
                    .rev()
                    .take(160)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            );
        }
    }
    println!("agreement {agree}/{total}");
}

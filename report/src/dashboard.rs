//! Keeping `configs/grafana/gradus.json` honest: every metric and label its
//! queries use must be one that `src/metrics.rs` declares, so the dashboard
//! cannot drift from the exporter unnoticed (a renamed metric would
//! otherwise just show "No data").
//!
//! Both files are read as text: the declarations are the `"gradus_..."` string
//! literals in metrics.rs with the label list that follows each; the queries
//! are every `expr`, `query` and `definition` string in the dashboard JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Labels every series has or a query may aggregate by, besides the declared ones.
const IMPLICIT_LABELS: &[&str] = &["instance", "job", "le"];

/// A metric declared in metrics.rs.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub labels: Vec<String>,
    /// Histograms are queried through `_bucket`, `_sum` and `_count`.
    pub histogram: bool,
}

/// Reads the metric declarations out of the source of `src/metrics.rs`.
pub fn declared_metrics(src: &str) -> BTreeMap<String, Declared> {
    // Declarations only: the tests below `#[cfg(test)]` quote rendered series.
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    let starts: Vec<usize> = src
        .match_indices("\"gradus_")
        .map(|(i, _)| i)
        .filter(|&i| {
            let name: String = src[i + 1..].chars().take_while(|c| is_ident(*c)).collect();
            src[i + 1 + name.len()..].starts_with('"')
        })
        .collect();
    let mut out = BTreeMap::new();
    for (k, &start) in starts.iter().enumerate() {
        let name_end = src[start + 1..]
            .find('"')
            .map_or(src.len(), |e| start + 1 + e);
        let name = &src[start + 1..name_end];
        // The constructor is the last `Type::` before the name.
        let before = &src[..start];
        let ctor_at = before
            .rfind("::new(")
            .into_iter()
            .chain(before.rfind("::with_opts("))
            .max();
        let ctor = ctor_at.map_or("", |at| {
            let line_start = before[..at]
                .rfind(|c: char| c.is_whitespace() || c == '(')
                .map_or(0, |i| i + 1);
            &before[line_start..at]
        });
        // Labels: the `&[...]` after the name, before the next metric.
        let end = starts.get(k + 1).copied().unwrap_or(src.len());
        let rest = &src[name_end..end];
        let labels = rest
            .find("&[")
            .and_then(|i| Some(&rest[i + 2..i + 2 + rest[i + 2..].find(']')?]))
            .map(|list| {
                list.split(',')
                    .map(|l| l.trim().trim_matches('"').to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            name.to_string(),
            Declared {
                labels,
                histogram: ctor.starts_with("Histogram"),
            },
        );
    }
    out
}

/// Every query string in a Grafana dashboard.
pub fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(dashboard, &mut out);
    out
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => collect(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// Problems with one query against the declarations: unknown metrics, labels
/// a metric does not have, and unbalanced brackets.
pub fn check_query(query: &str, declared: &BTreeMap<String, Declared>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut depth = [0i32; 3];
    for c in query.chars() {
        let i = match c {
            '(' | ')' => 0,
            '{' | '}' => 1,
            '[' | ']' => 2,
            _ => continue,
        };
        depth[i] += if "({[".contains(c) { 1 } else { -1 };
        if depth[i] < 0 {
            problems.push(format!("`{query}`: unbalanced `{c}`"));
        }
    }
    if depth.iter().any(|d| *d > 0) {
        problems.push(format!("`{query}`: unclosed bracket"));
    }
    let mut labels_in_query: BTreeSet<String> =
        IMPLICIT_LABELS.iter().map(|s| s.to_string()).collect();
    let mut used = Vec::new();
    for (at, _) in query.match_indices("gradus_") {
        if at > 0 && is_ident(query[..at].chars().next_back().unwrap_or(' ')) {
            continue;
        }
        let name: String = query[at..].chars().take_while(|c| is_ident(*c)).collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                let b = name.strip_suffix(suf)?;
                declared
                    .get(b)
                    .filter(|d| d.histogram)
                    .map(|_| b.to_string())
            })
            .unwrap_or_else(|| name.clone());
        let Some(decl) = declared.get(&base) else {
            problems.push(format!(
                "`{query}`: metric `{name}` is not declared in src/metrics.rs"
            ));
            continue;
        };
        if name == base && decl.histogram {
            problems.push(format!(
                "`{query}`: histogram `{name}` must be queried as _bucket, _sum or _count"
            ));
        }
        labels_in_query.extend(decl.labels.iter().cloned());
        // Labels in the selector right after the name.
        let after = &query[at + name.len()..];
        if let Some(sel) = after
            .strip_prefix('{')
            .and_then(|s| s.split_once('}'))
            .map(|s| s.0)
        {
            for matcher in sel.split(',') {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or("").trim();
                if !label.is_empty()
                    && !decl.labels.iter().any(|l| l == label)
                    && !IMPLICIT_LABELS.contains(&label)
                {
                    problems.push(format!("`{query}`: `{name}` has no label `{label}`"));
                }
            }
        }
        used.push(base);
    }
    // `by (...)` / `without (...)` / `ignoring (...)` / `on (...)` label lists.
    for kw in ["by", "without", "ignoring", "on"] {
        for (at, _) in query.match_indices(kw) {
            let prev = query[..at].chars().next_back().unwrap_or(' ');
            let rest = query[at + kw.len()..].trim_start();
            if is_ident(prev) || !rest.starts_with('(') {
                continue;
            }
            let list = rest[1..].split(')').next().unwrap_or("");
            for label in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                if !labels_in_query.contains(label) {
                    problems.push(format!(
                        "`{query}`: no metric in the query has label `{label}`"
                    ));
                }
            }
        }
    }
    if used.is_empty() && query.contains("gradus") {
        problems.push(format!("`{query}`: names no gradus metric"));
    }
    problems
}

/// Problems with a legend format (`{{domain}}/{{bucket}}`) given the labels
/// of the metrics its query uses.
pub fn check_legend(
    legend: &str,
    query: &str,
    declared: &BTreeMap<String, Declared>,
) -> Vec<String> {
    let mut labels: BTreeSet<&str> = IMPLICIT_LABELS.iter().copied().collect();
    for (name, d) in declared {
        if query.contains(name.as_str()) {
            labels.extend(d.labels.iter().map(String::as_str));
        }
    }
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|p| p.0.trim()))
        .filter(|l| !labels.contains(l))
        .map(|l| format!("legend `{legend}` of `{query}`: no label `{l}`"))
        .collect()
}

/// Every problem of `dashboard` (JSON text) against `metrics_rs` (Rust source).
pub fn check(dashboard: &str, metrics_rs: &str) -> Vec<String> {
    let declared = declared_metrics(metrics_rs);
    let dash: Value = match serde_json::from_str(dashboard) {
        Ok(v) => v,
        Err(e) => return vec![format!("dashboard is not JSON: {e}")],
    };
    let mut problems = Vec::new();
    for q in queries(&dash) {
        problems.extend(check_query(&q, &declared));
    }
    let mut targets = Vec::new();
    collect_targets(&dash, &mut targets);
    for (expr, legend) in targets {
        problems.extend(check_legend(&legend, &expr, &declared));
    }
    problems
}

fn collect_targets(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(e)), Some(Value::String(l))) =
                (m.get("expr"), m.get("legendFormat"))
            {
                out.push((e.clone(), l.clone()));
            }
            m.values().for_each(|v| collect_targets(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_targets(v, out)),
        _ => {}
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

    fn file(rel: &str) -> String {
        let p = format!("{ROOT}/{rel}");
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn every_metric_and_label_the_dashboard_queries_is_declared_in_metrics_rs() {
        let problems = check(
            &file("configs/grafana/gradus.json"),
            &file("src/metrics.rs"),
        );
        assert!(
            problems.is_empty(),
            "configs/grafana/gradus.json drifted from src/metrics.rs:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_dashboard_shows_every_declared_metric() {
        let declared = declared_metrics(&file("src/metrics.rs"));
        assert!(declared.len() >= 16, "parsed only {declared:?}");
        let queries = queries(&serde_json::from_str(&file("configs/grafana/gradus.json")).unwrap())
            .join("\n");
        let missing: Vec<_> = declared
            .keys()
            .filter(|m| !queries.contains(m.as_str()))
            .collect();
        assert!(missing.is_empty(), "metrics without a panel: {missing:?}");
    }

    #[test]
    fn the_declarations_are_read_with_their_labels_and_kinds() {
        let d = declared_metrics(&file("src/metrics.rs"));
        assert_eq!(
            d["gradus_curriculum_pass_rate_ratio"].labels,
            ["domain", "bucket"]
        );
        assert!(!d["gradus_curriculum_pass_rate_ratio"].histogram);
        assert_eq!(d["gradus_learner_staleness_versions"].labels, ["domain"]);
        assert!(d["gradus_learner_staleness_versions"].histogram);
        assert!(d["gradus_sandbox_job_seconds"].histogram);
        assert!(d["gradus_learner_step_seconds"].labels.is_empty());
        assert!(d["gradus_generator_tokens_total"].labels.is_empty());
    }

    #[test]
    fn the_check_catches_drift() {
        let d = declared_metrics(&file("src/metrics.rs"));
        let bad = [
            ("rate(gradus_generator_token_total[5m])", "not declared"),
            (
                "gradus_curriculum_pass_rate_ratio{stage=\"x\"}",
                "has no label `stage`",
            ),
            (
                "sum by (queue) (gradus_curriculum_mean_reward)",
                "no metric in the query has label `queue`",
            ),
            (
                "rate(gradus_sandbox_job_seconds[5m])",
                "must be queried as _bucket",
            ),
            (
                "sum(rate(gradus_generator_tokens_total[5m])",
                "unclosed bracket",
            ),
        ];
        for (q, needle) in bad {
            let p = check_query(q, &d);
            assert!(p.iter().any(|p| p.contains(needle)), "{q}: {p:?}");
        }
        assert!(check_query("histogram_quantile(0.9, sum by (le, domain) (rate(gradus_learner_staleness_versions_bucket[5m])))", &d).is_empty());
        assert_eq!(
            check_legend("{{verdict}}", "gradus_curriculum_mean_reward", &d).len(),
            1
        );
    }

    #[test]
    fn the_scrape_config_targets_the_demo_config_http_address() {
        let prom = file("configs/prometheus.yml");
        let demo: toml::Value = toml::from_str(&file("configs/demo.toml")).unwrap();
        let http = demo["run"]["http"].as_str().unwrap();
        assert!(
            prom.contains(&format!("\"{http}\"")),
            "configs/prometheus.yml does not scrape {http}"
        );
        assert!(prom.contains("metrics_path: /metrics"));
        assert!(prom.contains("job_name: gradus"));
    }
}

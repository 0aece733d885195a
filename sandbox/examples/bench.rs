//! The same benchmark as `gradus sandbox bench`, without building the whole
//! CLI: `cargo run --release -p gradus-sandbox --example bench -- [N] [WORKERS,...]`.
//! Prints the table with each way's median over bare's, then the JSON report.

fn main() {
    // This example is also the cell launcher of its cold-mode sandboxes.
    gradus_sandbox::cell::main_if_requested();
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let workers: Vec<usize> = args
        .next()
        .map(|a| a.split(',').filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let cfg = gradus_sandbox::SandboxConfig::default();
    let report = gradus_sandbox::bench::run(&cfg, n, &workers, |r| {
        eprintln!(
            "{:>4} workers={} median={:.2} ms p99={:.2} ms {:.1} jobs/s failures={}",
            r.way, r.workers, r.median_ms, r.p99_ms, r.jobs_per_s, r.failures
        );
    })
    .expect("bench");
    print!("{report}");
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("the report serializes")
    );
}

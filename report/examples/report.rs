//! `cargo run -p gradus-report --example report -- RUN_DIR [OUT_DIR]`: the
//! report without building the gradus binary (and burn).

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(run_dir) = args.next() else {
        eprintln!("usage: report RUN_DIR [OUT_DIR]");
        std::process::exit(2);
    };
    let args = gradus_report::ReportArgs {
        run_dir: run_dir.into(),
        out: args.next().map(Into::into),
    };
    if let Err(e) = gradus_report::run_report(&args) {
        eprintln!("report: error: {e}");
        std::process::exit(1);
    }
}

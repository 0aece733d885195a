//! `cargo run -p gradus-report --example experiment -- --gradus PATH
//! --config A --config B --budget N --seeds K [--out DIR]`: the experiment
//! with an explicit gradus executable, without building the CLI.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// The gradus executable that trains each run.
    #[arg(long)]
    gradus: std::path::PathBuf,
    #[command(flatten)]
    args: gradus_report::ExperimentArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = gradus_report::run_experiment(&cli.args, &cli.gradus) {
        eprintln!("experiment: error: {e}");
        std::process::exit(1);
    }
}

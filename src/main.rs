//! The `gradus` command line: one subcommand per area, each in `src/cmd/`.
//!
//! Errors from any command are printed once, with their whole context chain, and
//! turn into exit status 1 (`anyhow` at the binary's edge; the library crates use
//! typed errors).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Difficulty-aware, staged reinforcement learning for reasoning models.
#[derive(Parser)]
#[command(name = "gradus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run untrusted programs against tests in the isolated sandbox.
    #[command(subcommand)]
    Sandbox(cmd::sandbox::Command),
    /// Grade math answers against gold answers (JSONL in, JSONL out).
    Grade(cmd::grade::Args),
    /// Validate and import datasets.
    #[command(subcommand)]
    Data(cmd::data::Command),
    /// Run staged RL training (the daemon): `--config FILE` or `--resume RUN_DIR`.
    Train(cmd::train::Args),
    /// Measure each prompt's pass rate with the current policy; bucket it or set it aside.
    Curate(cmd::curate::Args),
    /// Plots and a one-page summary of a run directory (also while it runs).
    Report(gradus_report::ReportArgs),
    /// Train configs over the same seeds and sample budget, and compare them.
    Experiment(gradus_report::ExperimentArgs),
    /// Benchmarks that compare gradus with its peers.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
}

/// A daemon holds checkpoints, logs, sandbox pipes and HTTP connections at
/// once: the soft limit on open files (often 1,024) goes up to the hard one,
/// as servers do; where that is refused the soft limit stays.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard);
    }
}

fn main() -> ExitCode {
    // Cold-mode sandboxes re-execute this binary as their cell supervisor;
    // before argument parsing (the launcher's argument is not ours) and
    // before any thread starts.
    gradus_sandbox::cell::main_if_requested();
    // Tensor buffers are reused rather than page-faulted in again each step.
    gradus_policy::device::tune_allocator();
    raise_fd_limit();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox(c) => cmd::sandbox::run(c),
        Command::Grade(a) => cmd::grade::run(a),
        Command::Data(c) => cmd::data::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Train(a) => cmd::train::run(a),
        Command::Curate(a) => cmd::curate::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Experiment(a) => cmd::report::experiment(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gradus: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

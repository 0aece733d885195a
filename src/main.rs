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
    /// Write a run started from a Hugging Face checkpoint back as one (safetensors, tokenizer, config).
    Export(cmd::export::Args),
    /// Sample from a model (Hugging Face checkpoint, run directory or checkpoint) for JSONL prompts.
    Generate(cmd::generate::Args),
    /// Serve a model over an OpenAI-compatible HTTP API (completions, chat, weight updates).
    Serve(cmd::serve::Args),
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

/// The glibc malloc tunables gradus runs with: memory comes from the kernel
/// in transparent huge pages (`hugetlb=1`, the heap grown 64 MiB at a time
/// so that whole 2 MiB pages fit), and freed blocks of up to 32 MiB are kept
/// for reuse (the settings of [`gradus_policy::device::tune_allocator`]).
///
/// Loading a million-problem dataset touches about 4 GiB of fresh memory; in
/// 4 KiB pages that is a million page faults, which on a virtual machine cost
/// more than the parsing (`gradus bench data`: 1.77 M faults and 14 s of
/// system time without, 5 k faults and 6 s with; the load 6.8 s → 5.2 s).
const MALLOC_TUNABLES: &str = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864:\
                               glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456";

/// Holds the environment's `GLIBC_TUNABLES` (empty: none) across the re-exec.
const TUNABLES_MARK: &str = "GRADUS_GLIBC_TUNABLES_BEFORE";

/// glibc reads its tunables only when a process starts, so the binary runs
/// itself again once with [`MALLOC_TUNABLES`] added to `GLIBC_TUNABLES` (same
/// pid, same arguments), then puts the variable back as it was so that no
/// program gradus starts inherits them. Left alone when the environment
/// already sets malloc tunables, off glibc, or when the exec fails (then
/// [`gradus_policy::device::tune_allocator`]'s settings still apply).
fn run_with_malloc_tunables() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    if let Some(before) = std::env::var_os(TUNABLES_MARK) {
        // SAFETY: no other thread exists yet (this runs first in `main`).
        unsafe {
            std::env::remove_var(TUNABLES_MARK);
            if before.is_empty() {
                std::env::remove_var("GLIBC_TUNABLES");
            } else {
                std::env::set_var("GLIBC_TUNABLES", before);
            }
        }
        return;
    }
    let before = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if before.contains("glibc.malloc.") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let tunables = if before.is_empty() {
        MALLOC_TUNABLES.to_string()
    } else {
        format!("{before}:{MALLOC_TUNABLES}")
    };
    use std::os::unix::process::CommandExt;
    // Returns only if the exec failed; the run goes on without the tunables.
    let _ = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(TUNABLES_MARK, &before)
        .exec();
}

fn main() -> ExitCode {
    // Cold-mode sandboxes re-execute this binary as their cell supervisor;
    // before argument parsing (the launcher's argument is not ours) and
    // before any thread starts.
    gradus_sandbox::cell::main_if_requested();
    run_with_malloc_tunables();
    // Tensor buffers are reused rather than page-faulted in again each step.
    gradus_policy::device::tune_allocator();
    raise_fd_limit();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sandbox(c) => cmd::sandbox::run(c),
        Command::Grade(a) => cmd::grade::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Serve(a) => cmd::serve::run(a),
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

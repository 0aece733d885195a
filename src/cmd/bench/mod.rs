//! `gradus bench ...`: benchmarks that measure gradus against a named peer in
//! the same run and print the ratio. None of them is a test.

mod math;
mod policy;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Grade math cases with gradus and with HF Math-Verify; print throughput and agreement.
    Math(math::Args),
    /// Train and sample the policy with burn and with PyTorch; print tokens/s and ratios.
    Policy(policy::Args),
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Math(a) => math::run(a),
        Command::Policy(a) => policy::run(a),
    }
}

//! Scaffolding: replaced by the module's owner.
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Not built yet.
    Todo,
}

pub fn run(_c: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}

//! `gradus export RUN_DIR[/checkpoints/step-N] --out DIR`: a run started
//! from a Hugging Face checkpoint (`[model] hf`) written back as one, with
//! the checkpoint's own tensor names and dtype, beside the original's
//! `config.json`, tokenizer files, chat template and generation config, so
//! that transformers' `from_pretrained`, vLLM and SGLang load it as they load
//! the original.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use gradus::config::RunConfig;
use gradus_policy::hf::{HfConfig, export};
use gradus_policy::{ComputeConfig, Learner};

use super::locate_checkpoint;

#[derive(clap::Args)]
pub struct Args {
    /// A run directory (its latest intact checkpoint) or one of its
    /// checkpoints (RUN/checkpoints/step-N).
    pub from: PathBuf,
    /// The Hugging Face directory to write (created; must be empty).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (run, ckpt) = locate_checkpoint(&a.from, "export")?;
    let config_path = run.join("config.toml");
    let config = RunConfig::from_path(&config_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("the run's config {}", config_path.display()))?;
    let Some(hf) = &config.hf else {
        bail!(
            "{}: the run trains the built-in model; export writes runs started from a Hugging \
             Face checkpoint ([model] hf)",
            run.display()
        );
    };
    let hf_config = HfConfig::read(&hf.dir)?;
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .with_context(|| format!("reading {}", a.out.display()))?
            .next()
            .is_some()
    {
        bail!("--out {}: exists and is not empty", a.out.display());
    }
    let device = gradus_policy::device::device(&ComputeConfig::default())?;
    let (learner, _) = Learner::load_checkpoint(&ckpt.join("learner"), &device)
        .with_context(|| format!("loading the policy from {}", ckpt.display()))?;
    let tensors = export::write_dir(&a.out, learner.snapshot().weights, &hf_config, &hf.dir)?;
    let params: usize = tensors
        .values()
        .map(|(s, _)| s.iter().product::<usize>())
        .sum();
    eprintln!(
        "gradus export: {} ({} tensors, {:.1}M parameters, {:?}) from {} to {}",
        hf_config.architecture.name(),
        tensors.len(),
        params as f64 / 1e6,
        hf_config.dtype,
        ckpt.display(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

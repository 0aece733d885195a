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
    /// Largest weight shard, as transformers' `max_shard_size`: bytes, or
    /// with KB/MB/GB (powers of 1000) or KiB/MiB/GiB. Larger checkpoints are
    /// written as `model-0000i-of-0000N.safetensors` with an index.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    pub max_shard_size: u64,
}

/// `5GB`, `500MiB`, `123456`: a size in bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 5GB, 500MiB or 123456"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = n * scale as f64;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("{text:?}: must be at least one byte"));
    }
    Ok(bytes as u64)
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
    let tensors = export::write_dir_sharded(
        &a.out,
        learner.snapshot().weights,
        &hf_config,
        &hf.dir,
        a.max_shard_size,
    )?;
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn shard_sizes_read_as_transformers_writes_them() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("123456"), Ok(123_456));
        for bad in ["", "GB", "5TB", "0", "-1MB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}

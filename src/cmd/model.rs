//! Models as the commands that sample name them: a Hugging Face checkpoint
//! directory (or a model id in the offline cache), a gradus run directory
//! (its latest intact checkpoint), one of its checkpoints, or a weights
//! directory that a training run's weight sync wrote (`gradus-weights.bin`,
//! for the built-in model; HF runs sync Hugging Face directories).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gradus::config::RunConfig;
use gradus_policy::hf::load::Checkpoint;
use gradus_policy::hf::tokenizer::{AnyTokenizer, HfTokenizer};
use gradus_policy::{
    Device, Learner, ModelConfig, Policy, Tokenizer, Transformer, WeightsSnapshot,
};

use super::locate_checkpoint;

/// The file a weight sync of a built-in model writes: a [`WeightsSnapshot`].
pub const WEIGHTS_FILE: &str = "gradus-weights.bin";

/// A model with its tokenizer.
pub struct Loaded {
    pub model: Transformer,
    pub config: ModelConfig,
    pub tok: AnyTokenizer,
    /// Learner updates the weights reflect (0 for a Hugging Face checkpoint).
    pub version: u64,
}

impl Loaded {
    pub fn tokenizer(&self) -> &dyn Tokenizer {
        &self.tok
    }

    pub fn hf(&self) -> Option<&HfTokenizer> {
        self.tok.hf()
    }
}

/// Loads the model and tokenizer `path` names (see the module docs; a weights
/// directory has no tokenizer, so it is refused here). `cmd` names the
/// command in warnings.
pub fn load(
    path: &Path,
    device: &Device,
    cmd: &str,
    no_chat_template: bool,
    system: Option<String>,
) -> anyhow::Result<Loaded> {
    let path = resolve(path)?;
    if path.join("config.json").is_file() {
        let ckpt = Checkpoint::open(&path)?;
        let config = ckpt.model_config();
        let model = ckpt.load(device)?;
        let mut tok = HfTokenizer::open(&path)?;
        if no_chat_template {
            tok.use_chat_template(false)?;
        } else if tok.chat_template().is_none() {
            eprintln!(
                "gradus {cmd}: {} has no chat template; prompts are encoded as plain text",
                path.display()
            );
        }
        tok.set_system_prompt(system);
        if model.vocab_size() < Tokenizer::vocab_size(&tok) {
            bail!(
                "{}: the tokenizer has {} ids but the model's vocabulary only {}",
                path.display(),
                Tokenizer::vocab_size(&tok),
                model.vocab_size()
            );
        }
        return Ok(Loaded {
            model,
            config,
            tok: AnyTokenizer::Hf(Box::new(tok)),
            version: 0,
        });
    }
    if path.join(WEIGHTS_FILE).is_file() {
        bail!(
            "{}: a weight-sync directory holds weights only; serve the run directory or \
             its checkpoint, and reload these weights into it",
            path.display()
        );
    }
    if !path.join("checkpoints").is_dir() && !path.join("learner").is_dir() {
        bail!(
            "--model {}: neither a Hugging Face checkpoint (config.json), a run directory \
             (checkpoints/) nor a checkpoint (learner/)",
            path.display()
        );
    }
    let (run, ckpt) = locate_checkpoint(&path, cmd)?;
    let config_path = run.join("config.toml");
    let config = RunConfig::from_path(&config_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("the run's config {}", config_path.display()))?;
    let mut tokenizer = config.tokenizer().context("the run's tokenizer")?;
    if let AnyTokenizer::Hf(t) = &mut tokenizer {
        if no_chat_template {
            t.use_chat_template(false)?;
        }
        if system.is_some() {
            t.set_system_prompt(system);
        }
    } else if system.is_some() || no_chat_template {
        bail!("--system and --no-chat-template need a model with a chat template");
    }
    let snapshot = learner_snapshot(&ckpt, device)?;
    let policy = Policy::from_snapshot(&snapshot, device, tokenizer.pad_id())?;
    eprintln!("gradus {cmd}: policy from {}", ckpt.display());
    Ok(Loaded {
        model: policy.model().clone(),
        config: snapshot.config.clone(),
        tok: tokenizer,
        version: snapshot.version,
    })
}

/// New weights for a model already loaded with `config`: from any directory
/// [`load`] takes, or a weights directory. Returns the model and the version
/// the files record (0 for a Hugging Face checkpoint).
pub fn load_weights(
    path: &Path,
    config: &ModelConfig,
    device: &Device,
    pad: u32,
) -> anyhow::Result<(Transformer, u64)> {
    let path = resolve(path)?;
    let snapshot = if path.join("config.json").is_file() {
        let ckpt = Checkpoint::open(&path)?;
        if &ckpt.model_config() != config {
            bail!(
                "{}: a model of another shape ({:?}) than the one served ({config:?})",
                path.display(),
                ckpt.model_config()
            );
        }
        return Ok((ckpt.load_with(config, device)?, 0));
    } else if path.join(WEIGHTS_FILE).is_file() {
        let file = path.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        WeightsSnapshot::from_bytes(&bytes).with_context(|| format!("{}", file.display()))?
    } else if path.join("checkpoints").is_dir() || path.join("learner").is_dir() {
        let (_, ckpt) = locate_checkpoint(&path, "serve")?;
        learner_snapshot(&ckpt, device)?
    } else {
        bail!(
            "{}: neither a Hugging Face checkpoint (config.json), a weights directory \
             ({WEIGHTS_FILE}), a run directory nor a checkpoint",
            path.display()
        );
    };
    let policy = Policy::from_snapshot(&snapshot, device, pad)
        .with_context(|| format!("the weights in {}", path.display()))?;
    if &snapshot.config != config {
        bail!(
            "{}: a model of another shape than the one served",
            path.display()
        );
    }
    Ok((policy.model().clone(), snapshot.version))
}

fn learner_snapshot(ckpt: &Path, device: &Device) -> anyhow::Result<WeightsSnapshot> {
    let (learner, _) = Learner::load_checkpoint(&ckpt.join("learner"), device)
        .with_context(|| format!("loading the policy from {}", ckpt.display()))?;
    Ok(learner.snapshot())
}

/// `path`, or the offline Hugging Face cache's snapshot of the model id it spells.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    Ok(gradus_policy::hf::resolve(&path.to_string_lossy())?)
}

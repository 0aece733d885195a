//! `gradus train`: the training daemon.
//!
//! Start-up, in order: read and validate the config; load the problems
//! (malformed rows reported and set aside); open the run directory and save the
//! resolved config; restore the last checkpoint when resuming; build the
//! sandbox, the learner and generator engines, the supervisor and its actors;
//! bind the HTTP endpoint; then run steps until the curriculum finishes or a
//! signal arrives.
//!
//! Signals: SIGTERM and SIGINT stop at the next batch boundary with a final
//! checkpoint and exit 0. SIGHUP, or a change of the config file's contents,
//! reloads the config: it is validated whole, then handed to the curriculum,
//! which applies it at the next batch boundary or refuses it; an invalid config
//! keeps the running one, and every error is logged with file:line and field.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gradus::config::RunConfig;
use gradus::http::{Server, StatusBoard};
use gradus::metrics::Metrics;
use gradus::observer::RunObserver;
use gradus::run_dir::{RunDir, RunLock};
use gradus_actors::call::call_with_retry;
use gradus_actors::checkpointer::{self, RuntimeState};
use gradus_actors::curriculum::actor::{self as curriculum_actor, Shared};
use gradus_actors::curriculum::change::Change;
use gradus_actors::curriculum::engine::Curriculum;
use gradus_actors::data::import::FormatChoice;
use gradus_actors::data::load::Loaded;
use gradus_actors::fault::Fault;
use gradus_actors::generator::remote::{Backend, Remote, SyncFormat};
use gradus_actors::ledger::Ledger;
use gradus_actors::supervisor::{self, Report, Spawner};
use gradus_actors::trainer::{EvalSettings, Observer, QueueHook, Settings, Trainer};
use gradus_actors::{executor, generator, grader, learner, rewards};
use gradus_policy::{GrpoConfig, Learner, Policy, Tokenizer};
use gradus_sandbox::service::{Endpoint, Fleet, FleetConfig};
use rand::SeedableRng;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct Args {
    /// The run config (TOML).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Where the run writes checkpoints, events and metrics (default: runs/<config name>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Resume the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "run_dir"])]
    resume: Option<PathBuf>,
    /// Address for /metrics, /healthz and /status (overrides [run].http; port 0 picks one).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Seed of the run (overrides [run].seed and [curriculum].seed; kept on resume).
    #[arg(long, conflicts_with = "resume")]
    seed: Option<u64>,
    /// Sample budget: stop after this many responses (overrides [run].max_samples; kept on resume).
    #[arg(long, conflicts_with = "resume")]
    max_samples: Option<u64>,
    /// Fault injection, for tests only: a comma-separated list of NAME=N (the
    /// README's fault table). Without this flag no fault is ever injected, and
    /// the GRADUS_FAULTS variable of earlier versions is ignored.
    #[arg(long, value_name = "SPEC", hide = true)]
    faults: Option<String>,
}

/// Command-line overrides of the config, saved in the run directory so that
/// `--resume` applies them again.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Overrides {
    seed: Option<u64>,
    max_samples: Option<u64>,
}

impl Overrides {
    const FILE: &str = "overrides.json";

    fn apply(&self, config: &mut RunConfig) {
        if let Some(seed) = self.seed {
            config.run.seed = seed;
            config.curriculum.seed = seed;
        }
        if let Some(n) = self.max_samples {
            config.run.max_samples = n;
        }
    }
}

/// Most threads in the async runtime's blocking pool for commands that do
/// not size it from a config (tokio's default is 512). Tasks past it queue.
pub(crate) const MAX_BLOCKING_THREADS: usize = 32;

/// Blocking threads the actors may hold at once besides the sandbox's
/// workers: the learner's and the generator's engine calls, a batch being
/// graded (one task per core, up to 2 here), a checkpoint being written (its
/// begin and the learner's part), with room to spare.
const ACTOR_BLOCKING_THREADS: usize = 8;

/// An idle blocking thread lives this long (tokio's default is 10 s).
///
/// With the default the pool is a high-water mark of load: it grows to the
/// most blocking tasks ever in flight at once and, the daemon's blocking
/// work being steady, reuses those threads before any times out, so one rare
/// coincidence of a checkpoint with full sandbox and grader work adds a
/// thread for good (a 60-minute soak saw 17 threads become 18 at minute 38).
/// Instead the training daemon's pool is started at the size its config
/// needs ([`prewarm_blocking`]), capped there, and its threads are kept: the
/// thread count is a constant of the config, not of the run's history.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(30 * 24 * 3600);

/// An async runtime of two workers and a blocking pool of at most
/// `blocking` threads, kept once started.
///
/// No blocking task of ours waits for another one (sandbox jobs wait for a
/// slot in the async caller, engine calls for their compute thread), so a
/// task past the cap only queues until a thread is free.
pub(crate) fn runtime_with(blocking: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(blocking.max(1))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// [`runtime_with`] at the general cap.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(MAX_BLOCKING_THREADS)
}

/// Starts `n` blocking threads at once (each waits for all the others, so
/// none can be reused for the next): the pool then holds what the run's
/// actors can use at the same time, and keeps it.
pub(crate) async fn prewarm_blocking(n: usize) {
    let n = n.max(1);
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let waits: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            tokio::task::spawn_blocking(move || {
                b.wait();
            })
        })
        .collect();
    for w in waits {
        let _ = w.await;
    }
}

/// The blocking threads a run with this config uses at most at once: the
/// size of its pool.
pub(crate) fn blocking_threads(config: &RunConfig) -> usize {
    config.sandbox.workers + ACTOR_BLOCKING_THREADS
}

/// Reads the config first: the runtime's blocking pool is sized from it.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (config_path, run_path) = locate(&args)?;
    let mut config =
        RunConfig::from_path(&config_path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    if let Some(addr) = args.http {
        config.run.http = addr;
    }
    let blocking = blocking_threads(&config);
    runtime_with(blocking)?.block_on(train(args, config_path, run_path, config, blocking))
}

/// Where the run's programs run: the local pool, the `[sandbox] endpoints`
/// services, or both (`local = true`). Without a local pool the trainer's
/// machine needs no Python.
fn fleet(cfg: &gradus_sandbox::SandboxConfig) -> anyhow::Result<Fleet> {
    let local = if cfg.endpoints.is_empty() || cfg.local {
        Some(Arc::new(gradus_sandbox::Sandbox::new(cfg.clone()).context(
            "[sandbox] (run `gradus sandbox doctor` to see which protections this machine lacks)",
        )?))
    } else {
        None
    };
    let endpoints = cfg
        .endpoints
        .iter()
        .map(|e| Endpoint::parse(e).map_err(|why| anyhow::anyhow!("[sandbox] endpoints: {why}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let api_key = match &cfg.api_key_env {
        None => None,
        Some(name) => Some(std::env::var(name).map_err(|_| {
            anyhow::anyhow!("[sandbox] api_key_env: the environment variable `{name}` is not set")
        })?),
    };
    Ok(Fleet::new(
        local,
        endpoints,
        FleetConfig {
            api_key,
            give_up: Duration::from_secs_f64(cfg.give_up_s),
            ..FleetConfig::default()
        },
    ))
}

/// Where a config comes from and where the run lives.
fn locate(args: &Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(dir) = &args.resume {
        let cfg = dir.join("config.toml");
        if !cfg.exists() {
            bail!("{} is not a run directory (no config.toml)", dir.display());
        }
        return Ok((cfg, dir.clone()));
    }
    let cfg = args
        .config
        .clone()
        .expect("clap requires --config without --resume");
    let dir = args.run_dir.clone().unwrap_or_else(|| {
        let stem = cfg
            .file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("runs").join(stem)
    });
    Ok((cfg, dir))
}

async fn train(
    args: Args,
    config_path: PathBuf,
    run_path: PathBuf,
    mut config: RunConfig,
    blocking: usize,
) -> anyhow::Result<ExitCode> {
    let resuming = args.resume.is_some();
    // One writer per run directory, before anything is written: a second
    // `train` or `train --resume` on a live run is refused here.
    let _lock = RunLock::acquire(&run_path)?;
    let overrides = if resuming {
        match std::fs::read(run_path.join(Overrides::FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}", run_path.join(Overrides::FILE).display()))?,
            Err(_) => Overrides::default(),
        }
    } else {
        Overrides {
            seed: args.seed,
            max_samples: args.max_samples,
        }
    };
    overrides.apply(&mut config);
    // A fresh start never picks up checkpoints: not `latest`, nor a step-*
    // directory a killed first save left before it named it.
    let has_checkpoint = std::fs::read_dir(run_path.join("checkpoints"))
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n == "latest" || n.starts_with("step-") || n.starts_with("skipped-step-")
            })
        })
        .unwrap_or(false);
    if !resuming && has_checkpoint {
        bail!(
            "{} already holds a run; resume it with `gradus train --resume {}` or pick another --run-dir",
            run_path.display(),
            run_path.display()
        );
    }

    prewarm_blocking(blocking).await;
    let problems = load_problems(&config)?;
    // The newest checkpoint whose checksums hold: a corrupted or torn one is
    // skipped (said here and logged as `checkpoint_skipped` once the run's
    // log is open) and the one before it used.
    let (latest, skipped_checkpoints) = checkpointer::latest_intact(&run_path.join("checkpoints"))?;
    for s in &skipped_checkpoints {
        eprintln!(
            "gradus: warning: skipping checkpoint {}: {}",
            s.dir.display(),
            s.why
        );
    }
    // A broken checkpoint newer than the one used leaves the rotation, so
    // that the resumed run's own checkpoints are the newest (and not pruned).
    let set_aside = checkpointer::set_aside(&run_path.join("checkpoints"), &skipped_checkpoints)?;
    for p in &set_aside {
        eprintln!(
            "gradus: warning: moved the skipped checkpoint to {}",
            p.display()
        );
    }
    let resumed_state = match &latest {
        Some(dir) => Some(RuntimeState::read(dir)?),
        None => None,
    };
    // A resume cuts every log back to where the checkpoint left it.
    let (run_dir, logs_cut) = RunDir::open_at(&run_path, resumed_state.as_ref().map(|s| &s.logs))?;
    // The resolved config: what the run actually uses (a reload rewrites it).
    let watched_config = if resuming {
        run_path.join("config.toml")
    } else {
        config_path.clone()
    };
    if !resuming {
        run_dir.write_atomic("config.toml", config.source.as_bytes())?;
        run_dir.write_atomic(
            Overrides::FILE,
            serde_json::to_string(&overrides)?.as_bytes(),
        )?;
    }

    let tokenizer = config.tokenizer().context(if config.hf.is_some() {
        "[model] hf: the checkpoint's tokenizer"
    } else {
        "[tokenizer]"
    })?;
    if let (Some(h), Some(t)) = (&config.hf, tokenizer.hf())
        && h.chat_template
        && t.chat_template().is_none()
    {
        eprintln!(
            "gradus: warning: {} has no chat template; prompts are encoded as plain text",
            h.dir.display()
        );
    }
    let device = gradus_policy::device::device(&config.compute).context("[compute]")?;
    let learner_device =
        gradus_policy::device::learner_device(&config.compute).context("[compute]")?;
    if resuming && latest.is_none() {
        bail!("{} has no checkpoint to resume from", run_path.display());
    }

    // Curriculum, ledger, learner and generator state: fresh or from the checkpoint.
    let mut display = Default::default();
    let (curriculum, ledger, next_batch, learner, gen_rng, start_step, samples) = match &latest {
        Some(dir) => {
            let state = resumed_state.expect("read with latest");
            display = state.display;
            let curriculum =
                Curriculum::restore(config.curriculum.clone(), problems, &state.curriculum)
                    .context("restoring the curriculum from the checkpoint")?;
            let (learner, _manifest) =
                Learner::load_checkpoint(&dir.join("learner"), &learner_device)
                    .with_context(|| format!("loading the learner from {}", dir.display()))?;
            (
                curriculum,
                state.ledger,
                state.next_batch,
                learner,
                state.generator_rng,
                state.step,
                state.samples,
            )
        }
        None => {
            let (curriculum, report) = Curriculum::new(config.curriculum.clone(), problems)
                .context("building the curriculum")?;
            for p in &report.unassigned {
                eprintln!("gradus: warning: problem {p} falls in no bucket and is never drawn");
            }
            for (bucket, ids) in &report.unjudged {
                eprintln!(
                    "gradus: warning: bucket {bucket} cannot judge {} problems (first {}): a model its pass_rates name has not rated them (run gradus curate --model for it)",
                    ids.len(),
                    ids[0]
                );
            }
            let pools: Vec<String> = report
                .pools
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            println!("gradus: pools: {}", pools.join(", "));
            let learner = match &config.hf {
                Some(h) => {
                    let ckpt = gradus_policy::hf::load::Checkpoint::open(&h.dir)?;
                    let m = &config.model;
                    println!(
                        "gradus: model {} ({} layers, d_model {}, {} query / {} key-value heads, vocabulary {}, {} positions)",
                        h.dir.display(),
                        m.n_layers,
                        m.d_model,
                        m.n_heads,
                        m.kv_heads(),
                        m.vocab_size,
                        m.max_len
                    );
                    Learner::from_pretrained(
                        &ckpt,
                        Some(config.model.max_len),
                        config.optimizer.clone(),
                        &learner_device,
                        config.run.seed,
                        tokenizer.pad_id(),
                    )?
                }
                None => Learner::new(
                    config.model.clone(),
                    config.optimizer.clone(),
                    &learner_device,
                    config.run.seed,
                    tokenizer.pad_id(),
                )?,
            };
            let rng =
                rand_chacha::ChaCha8Rng::seed_from_u64(config.run.seed ^ 0x9e37_79b9_7f4a_7c15);
            (curriculum, Ledger::new(), 0, learner, rng, 0, 0)
        }
    };

    let metrics = Arc::new(Metrics::new());
    let status = StatusBoard::default();
    let server = Server::start(config.run.http, metrics.clone(), status.clone()).await?;
    let addr = server.local_addr();
    run_dir.write_atomic("http.addr", addr.to_string().as_bytes())?;
    println!("gradus: serving /metrics, /healthz and /status on http://{addr}");

    // Engines outlive actor restarts; the supervisor re-spawns actors around them.
    let snapshot = learner.snapshot();
    let learner_engine = Arc::new(learner::Engine::new(learner, config.compute.threads)?);
    let generator_engine = Arc::new(match config.generator.backend {
        Backend::Local => {
            let policy = Policy::from_snapshot(&snapshot, &device, tokenizer.pad_id())?;
            generator::Sampler::Local(Arc::new(generator::Engine::new(
                policy,
                gen_rng,
                config.compute.threads,
            )?))
        }
        Backend::Openai => {
            let format = match &config.hf {
                Some(h) => SyncFormat::Hf {
                    config: gradus_policy::hf::HfConfig::read(&h.dir)?,
                    source: h.dir.clone(),
                },
                None => SyncFormat::Snapshot,
            };
            let remote = Remote::new(config.generator.clone(), run_dir.root(), format, gen_rng)
                .map_err(|e| anyhow::anyhow!("[generator]: {e}"))?;
            let sampler = generator::Sampler::Remote(remote);
            // The servers start on the learner's weights (a resumed run's
            // included), whatever they were launched with.
            println!(
                "gradus: generating on {} inference endpoint(s); syncing weight version {}",
                config.generator.endpoints.len(),
                snapshot.version
            );
            sampler
                .load(Arc::new(snapshot.clone()))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("the first weight sync to the inference servers: {e}")
                })?;
            sampler
        }
    });
    let fleet = fleet(&config.sandbox)?;
    if args.faults.is_none() && std::env::var_os("GRADUS_FAULTS").is_some() {
        eprintln!(
            "gradus: warning: GRADUS_FAULTS is ignored: fault injection is for tests and needs --faults SPEC"
        );
    }
    let faults = Faults::parse(args.faults.as_deref().unwrap_or(""));
    if args.faults.is_some() {
        eprintln!("gradus: fault injection is on (--faults); this run is a test");
    }
    let shared = Shared::new(curriculum);
    // Queue depths: items handed to each actor and not yet answered.
    let (queue_metrics, queue_status) = (metrics.clone(), status.clone());
    let queues: QueueHook = Arc::new(move |name, items| {
        queue_metrics
            .queue_depth
            .with_label_values(&[name])
            .set(items as i64);
        if let Ok(mut s) = queue_status.write() {
            s.queues.insert(name.to_string(), items as i64);
        }
    });
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let around = Around {
        curriculum: shared.clone(),
        learner: learner_engine,
        generator: generator_engine.clone(),
        fleet,
        queues: queues.clone(),
        checkpoints: run_dir.checkpoints(),
    };
    let children = children(&config, &around, &faults);
    let actor_names: Vec<String> = children.iter().map(|(n, _)| n.clone()).collect();
    let (sup, sup_handle) = ractor::Actor::spawn(
        None,
        supervisor::Supervisor,
        supervisor::Args {
            policy: config.supervisor.clone(),
            children,
            reports: reports_tx,
        },
    )
    .await
    .context("starting the actors")?;

    let settings = Settings {
        batch_prompts: config.run.batch_prompts,
        grpo: GrpoConfig::default(),
        call_timeout: Duration::from_secs_f64(config.run.call_timeout_s),
        display_window: config.run.display_window,
        max_staleness: (config.run.mode == gradus::config::Mode::Async)
            .then_some(config.run.max_staleness),
    };
    let mut trainer = Trainer::new(shared, ledger, next_batch, tokenizer, settings);
    trainer.samples = samples;
    trainer.restore_display(display);
    trainer.set_policy_version(snapshot.version);
    trainer.set_queue_hook(queues.clone());
    let eval = eval_settings(&config);
    let mut observer = RunObserver::new(
        run_dir,
        metrics.clone(),
        status.clone(),
        trainer.curriculum().config().stages.len(),
    );
    observer.watch_actors(actor_names);
    for s in &skipped_checkpoints {
        observer.event(
            "checkpoint_skipped",
            start_step,
            serde_json::json!({"checkpoint": s.dir.display().to_string(), "why": s.why}),
        );
    }
    observer.event(
        if resuming { "resumed" } else { "started" },
        start_step,
        serde_json::json!({"config": config_path.display().to_string(), "http": addr.to_string(),
                           "checkpoint": latest.as_ref().map(|p| p.display().to_string()),
                           "logs_cut_bytes": logs_cut}),
    );

    let signals = Arc::new(Signals::default());
    tokio::spawn(listen(signals.clone()));
    let mut watcher = ConfigWatcher::new(&watched_config);
    let started = Instant::now();
    let mut last_checkpoint = start_step;
    let mut checkpoint_failures = 0u32;
    let mut stage_before = trainer.curriculum().state().stage;
    let mut last_eval = None;
    if start_step == 0 {
        evaluate(&mut trainer, &eval, &mut observer).await?;
        last_eval = Some(0);
    }
    let outcome: anyhow::Result<&str> = loop {
        // Between steps (a batch boundary): signals, reloads, supervisor reports.
        let stop = signals.stop.load(Ordering::SeqCst);
        let mut gave_up = None;
        let reload = signals.reload.swap(false, Ordering::SeqCst) | watcher.changed();
        while let Ok(report) = reports.try_recv() {
            match report {
                Report::Restarted {
                    actor,
                    failures,
                    error,
                } => {
                    metrics
                        .actor_restarts
                        .with_label_values(&[actor.as_str()])
                        .inc();
                    observer.actor_restarted(&actor);
                    observer.event("actor_restarted", trainer.curriculum().state().step,
                        serde_json::json!({"actor": actor, "failures_in_window": failures, "error": error}));
                }
                Report::GaveUp {
                    actor,
                    failures,
                    window,
                    error,
                } => {
                    observer.event("actor_gave_up", trainer.curriculum().state().step,
                        serde_json::json!({"actor": actor, "failures": failures, "window_s": window.as_secs_f64(), "error": error}));
                    gave_up = Some(format!(
                        "actor '{actor}' failed {failures} times within {:.0} s (last error: {error}); stopping the run",
                        window.as_secs_f64()
                    ));
                }
            }
        }
        if reload
            && let Err(e) = apply_reload(
                &watched_config,
                &config,
                &overrides,
                args.http,
                &mut trainer,
                &mut observer,
                &metrics,
            )
            .await
        {
            break Err(e);
        }
        if let Some(why) = gave_up {
            break Err(anyhow::anyhow!(why));
        }
        if stop {
            break Ok("stopped");
        }
        match trainer.step(&mut observer).await {
            Ok(Some(_)) => {
                let step = trainer.curriculum().state().step;
                // Bounded for runs of days: the newest groups are kept one by
                // one (the exactly-once proof of recent work), older ones as totals.
                trainer.ledger.compact_keeping(LEDGER_KEPT_GROUPS);
                // Evaluate every `every` steps and at every stage boundary (the
                // before/after figures of each stage). Before the checkpoint:
                // evaluation draws from the generator's RNG, so a resumed run
                // continues from the state an uninterrupted one has.
                let stage_now = trainer.curriculum().state().stage;
                let advanced = stage_now != stage_before || trainer.curriculum().is_finished();
                stage_before = stage_now;
                let due_eval = eval.per_bucket > 0
                    && ((eval.every > 0 && step.is_multiple_of(eval.every)) || advanced);
                let due_save = step - last_checkpoint >= config.run.checkpoint_every;
                // Every way out of the loop goes through the one shutdown
                // below (error event, final checkpoint, supervisor stop):
                // a failure here breaks, it never returns.
                if (due_eval || due_save)
                    && let Err(e) = trainer.drain().await
                {
                    // Async mode: finish the update in flight first.
                    break Err(anyhow::Error::new(e).context("finishing the update in flight"));
                }
                if due_eval {
                    if let Err(e) = evaluate(&mut trainer, &eval, &mut observer).await {
                        break Err(e.context(format!("the evaluation at step {step}")));
                    }
                    last_eval = Some(step);
                }
                if due_save {
                    // The next try is at the next interval either way.
                    last_checkpoint = step;
                    match save(
                        &trainer,
                        &generator_engine,
                        &config,
                        step,
                        observer
                            .log_lengths(config.run.rotate_logs_mb, config.run.rotated_logs_kept),
                    )
                    .await
                    {
                        Ok(()) => checkpoint_failures = 0,
                        Err(e) => {
                            checkpoint_failures += 1;
                            metrics.checkpoint_failures.inc();
                            let max = config.run.max_checkpoint_failures;
                            observer.warn_line(&format!(
                                "gradus: warning: {e:#} ({checkpoint_failures} in a row of at most {max}); \
                                 the previous checkpoint stays in force, retrying at step {}",
                                step + config.run.checkpoint_every
                            ));
                            observer.event(
                                "checkpoint_failed",
                                step,
                                serde_json::json!({"error": format!("{e:#}"), "consecutive": checkpoint_failures}),
                            );
                            if checkpoint_failures >= max {
                                break Err(e.context(format!(
                                    "{checkpoint_failures} checkpoint writes in a row failed \
                                     ([run].max_checkpoint_failures = {max}); stopping the run, \
                                     whose last good checkpoint stays in force"
                                )));
                            }
                        }
                    }
                }
                if config.run.max_steps > 0 && step >= config.run.max_steps {
                    break Ok("max_steps");
                }
                if config.run.max_samples > 0 && trainer.samples >= config.run.max_samples {
                    break Ok("max_samples");
                }
            }
            Ok(None) => break Ok("finished"),
            Err(e) => break Err(anyhow::Error::new(e)),
        }
    };
    let step = trainer.curriculum().state().step;
    let drained = trainer.drain().await;
    if let Err(e) = &drained {
        eprintln!("gradus: warning: the last update in flight failed: {e}");
    }
    if outcome.is_ok()
        && drained.is_ok()
        && last_eval != Some(step)
        && let Err(e) = evaluate(&mut trainer, &eval, &mut observer).await
    {
        eprintln!("gradus: warning: the final evaluation failed: {e:#}");
    }
    // The final checkpoint, with restarts still on; then stop restarting.
    let saved = save(
        &trainer,
        &generator_engine,
        &config,
        step,
        observer.log_lengths(config.run.rotate_logs_mb, config.run.rotated_logs_kept),
    )
    .await;
    sup.cast(supervisor::Msg::Quiesce).ok();
    match &outcome {
        Ok(why) => observer.event(
            "stopped",
            step,
            serde_json::json!({"reason": why, "elapsed_s": started.elapsed().as_secs_f64(),
            "samples": trainer.samples, "ledger": trainer.ledger.totals()}),
        ),
        Err(e) => observer.event(
            "error",
            step,
            serde_json::json!({"error": format!("{e:#}")}),
        ),
    }
    observer.finish();
    sup.stop(None);
    let _ = sup_handle.await;
    saved?;
    outcome.map(|why| {
        println!(
            "gradus: {why} at step {step}; run directory {}",
            run_path.display()
        );
        ExitCode::SUCCESS
    })
}

/// Closed groups the ledger keeps one by one; older ones are folded into its totals.
const LEDGER_KEPT_GROUPS: usize = 8192;

/// The `[eval]` settings in the trainer's terms.
fn eval_settings(config: &RunConfig) -> EvalSettings {
    let e = &config.eval;
    let longest = config
        .curriculum
        .stages
        .iter()
        .map(|s| s.generation.max_response_tokens)
        .max()
        .unwrap_or(0);
    EvalSettings {
        every: e.every,
        per_bucket: e.per_bucket,
        samples: e.samples,
        temperature: e.temperature as f32,
        max_new_tokens: if e.max_response_tokens > 0 {
            e.max_response_tokens
        } else {
            longest
        } as usize,
    }
}

/// One evaluation, written to eval.jsonl and shown; off when `per_bucket` is 0.
async fn evaluate<T: Tokenizer>(
    trainer: &mut Trainer<T>,
    eval: &EvalSettings,
    observer: &mut RunObserver,
) -> anyhow::Result<()> {
    if eval.per_bucket == 0 {
        return Ok(());
    }
    let report = trainer
        .evaluate(eval)
        .await
        .context("evaluating the policy")?;
    observer.evaluation(&report, trainer.samples);
    Ok(())
}

fn load_problems(config: &RunConfig) -> anyhow::Result<Vec<gradus_actors::data::Problem>> {
    let mut loaded = Loaded::default();
    if let Some(n) = config.data.builtin_per_bucket {
        let rows: Vec<String> = gradus::synthetic::problems(config.run.seed, n)
            .iter()
            .map(|r| r.to_string())
            .collect();
        loaded.read_str(&rows.join("\n"), "<builtin>", FormatChoice::Auto);
    }
    // Relative paths are relative to the config file.
    let base = config
        .origin
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    for file in &config.data.files {
        let path = base.join(file);
        loaded
            .read_file(&path, FormatChoice::Auto)
            .with_context(|| format!("[data].files: reading {}", path.display()))?;
    }
    for r in &loaded.rejects {
        eprintln!("gradus: rejected {r}");
    }
    if let Some(n) = config.data.max_tests_per_problem {
        let (capped, dropped) = loaded.cap_tests(n);
        if capped > 0 {
            eprintln!(
                "gradus: [data].max_tests_per_problem = {n}: {dropped} test cases dropped from {capped} problems (the longest inputs kept)"
            );
        }
    }
    for (domain, a) in config.data.templates.apply(&mut loaded.problems) {
        if a.templated > 0 || a.bare > 0 {
            eprintln!(
                "gradus: {} prompts: {} carry their own answer format, {} wrapped in [data.templates].{}, {} with neither",
                domain.as_str(),
                a.own,
                a.templated,
                domain.as_str(),
                a.bare
            );
        }
    }
    let fraction = loaded.rejected() as f64 / loaded.rows.max(1) as f64;
    if fraction > config.data.max_reject_fraction {
        bail!(
            "[data]: {} of {} rows rejected ({:.1}% > max_reject_fraction {:.1}%); fix the data or raise the limit",
            loaded.rejected(),
            loaded.rows,
            fraction * 100.0,
            config.data.max_reject_fraction * 100.0
        );
    }
    Ok(loaded.problems)
}

/// Fault injection for the end-to-end tests, from `--faults`: a comma
/// separated list of `name=N`, each crashing one actor once at its N-th
/// event, or failing checkpoint writes from the N-th on (the README's fault
/// table). Never on in real runs: only the (hidden) flag turns it on.
struct Faults {
    curriculum: Arc<Fault>,
    grader: Arc<Fault>,
    learner: Arc<Fault>,
    rewards: Arc<Fault>,
    checkpointer: Arc<Fault>,
    executor: Arc<Fault>,
    disk_full: Arc<Fault>,
}

impl Faults {
    /// The names, in the order of the fields.
    const NAMES: [&str; 7] = [
        "curriculum_crash_on_call",
        "grader_panic_on_call",
        "learner_crash_after_batch",
        "rewards_crash_on_call",
        "checkpointer_crash_on_save",
        "sandbox_kill_on_call",
        "disk_full_from_save",
    ];

    fn parse(spec: &str) -> Self {
        let mut at = [None; Self::NAMES.len()];
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let parsed = item.split_once('=').and_then(|(name, n)| {
                let i = Self::NAMES.iter().position(|known| *known == name)?;
                Some((i, n.parse::<u64>().ok()?))
            });
            match parsed {
                Some((i, n)) => at[i] = Some(n),
                None => eprintln!(
                    "gradus: warning: --faults: '{item}' ignored (expected NAME=N, NAME one of {})",
                    Self::NAMES.join(", ")
                ),
            }
        }
        let fault = |i: usize| Arc::new(Fault::at(at[i]));
        Faults {
            curriculum: fault(0),
            grader: fault(1),
            learner: fault(2),
            rewards: fault(3),
            checkpointer: fault(4),
            executor: fault(5),
            disk_full: Arc::new(Fault::from(at[6])),
        }
    }
}

/// What the actors are built around: state and resources that outlive
/// their restarts.
struct Around {
    curriculum: Arc<Shared>,
    learner: Arc<learner::Engine>,
    generator: Arc<generator::Sampler>,
    fleet: Fleet,
    queues: QueueHook,
    checkpoints: PathBuf,
}

/// The supervised actors, each with the spawner the supervisor calls again on restart.
fn children(config: &RunConfig, around: &Around, faults: &Faults) -> Vec<(String, Spawner)> {
    let queues = &around.queues;
    let (cs, cuf) = (around.curriculum.clone(), faults.curriculum.clone());
    let checkpoint_settings = checkpointer::Settings {
        root: around.checkpoints.clone(),
        keep: config.run.keep_checkpoints,
        call_timeout: Duration::from_secs_f64(config.run.call_timeout_s),
    };
    let (cf, cq) = (faults.checkpointer.clone(), queues.clone());
    let df = faults.disk_full.clone();
    let rewards_settings = rewards::Settings {
        partial_credit: config.run.partial_credit,
        normalize_std: GrpoConfig::default().normalize_std,
        call_timeout: Duration::from_secs_f64(config.run.call_timeout_s),
    };
    let (rf, rq) = (faults.rewards.clone(), queues.clone());
    let (le, lf) = (around.learner.clone(), faults.learner.clone());
    let ge = around.generator.clone();
    let (sb, ef) = (around.fleet.clone(), faults.executor.clone());
    let (gc, gf) = (config.grader.clone(), faults.grader.clone());
    vec![
        (
            curriculum_actor::NAME.into(),
            supervisor::spawner(move |sup| curriculum_actor::spawn(cs.clone(), cuf.clone(), sup)),
        ),
        (
            learner::NAME.into(),
            supervisor::spawner(move |sup| learner::spawn(le.clone(), lf.clone(), sup)),
        ),
        (
            generator::NAME.into(),
            supervisor::spawner(move |sup| generator::spawn(ge.clone(), sup)),
        ),
        (
            executor::NAME.into(),
            supervisor::spawner(move |sup| executor::spawn(sb.clone(), ef.clone(), sup)),
        ),
        (
            grader::NAME.into(),
            supervisor::spawner(move |sup| grader::spawn(gc.clone(), gf.clone(), sup)),
        ),
        (
            rewards::NAME.into(),
            supervisor::spawner(move |sup| {
                rewards::spawn(rewards_settings.clone(), Some(rq.clone()), rf.clone(), sup)
            }),
        ),
        (
            checkpointer::NAME.into(),
            supervisor::spawner(move |sup| {
                let settings = checkpoint_settings.clone();
                checkpointer::spawn(settings, Some(cq.clone()), cf.clone(), df.clone(), sup)
            }),
        ),
    ]
}

/// Notices changes of the config file's contents (polled between steps).
struct ConfigWatcher {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl ConfigWatcher {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            last: std::fs::read(path).ok(),
        }
    }

    fn changed(&mut self) -> bool {
        let now = std::fs::read(&self.path).ok();
        if now.is_some() && now != self.last {
            self.last = now;
            return true;
        }
        false
    }
}

/// Reloads the config: validates it whole, refuses changes to settings fixed
/// for the run, and hands the curriculum part to the curriculum, which applies
/// it at the next batch boundary (or refuses it). The running config stays on
/// any failure.
async fn apply_reload<T: Tokenizer>(
    path: &Path,
    running: &RunConfig,
    overrides: &Overrides,
    http: Option<std::net::SocketAddr>,
    trainer: &mut Trainer<T>,
    observer: &mut RunObserver,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let step = trainer.curriculum().state().step;
    let mut new = match RunConfig::from_path(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("gradus: config reload refused: {e}");
            }
            metrics.config_reloads.with_label_values(&["invalid"]).inc();
            observer.event(
                "config_reload_invalid",
                step,
                serde_json::json!({"errors": errors.0}),
            );
            return Ok(());
        }
    };
    // The command line's overrides hold for the new file as for the old.
    overrides.apply(&mut new);
    if let Some(addr) = http {
        new.run.http = addr;
    }
    // Only the curriculum is applied mid-run: any other section that changed
    // is refused by name, never dropped silently.
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let fixed = [
        ("run", differs(&new.run, &running.run)),
        ("data", new.data != running.data),
        ("eval", differs(&new.eval, &running.eval)),
        ("tokenizer", differs(&new.tokenizer, &running.tokenizer)),
        ("model", differs(&new.model, &running.model)),
        ("optimizer", differs(&new.optimizer, &running.optimizer)),
        ("compute", differs(&new.compute, &running.compute)),
        ("grader", differs(&new.grader, &running.grader)),
        ("sandbox", differs(&new.sandbox, &running.sandbox)),
        ("supervisor", differs(&new.supervisor, &running.supervisor)),
        ("generator", differs(&new.generator, &running.generator)),
    ];
    let changed: Vec<&str> = fixed.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    if !changed.is_empty() {
        let msg = format!(
            "{}: fixed for a run, cannot change by reload: {}",
            path.display(),
            changed.join(", ")
        );
        eprintln!("gradus: config reload refused: {msg}");
        metrics.config_reloads.with_label_values(&["invalid"]).inc();
        observer.event(
            "config_reload_invalid",
            step,
            serde_json::json!({"errors": [msg]}),
        );
        return Ok(());
    }
    if new.curriculum == *trainer.curriculum().config() {
        metrics
            .config_reloads
            .with_label_values(&["unchanged"])
            .inc();
        observer.event("config_reload_unchanged", step, serde_json::json!({}));
        return Ok(());
    }
    let change = Change {
        config: Some(new.curriculum.clone()),
        jump_to: None,
    };
    match trainer.request_change(change).await? {
        Ok(()) => {
            metrics.config_reloads.with_label_values(&["applied"]).inc();
            observer.event(
                "config_reloaded",
                step,
                serde_json::json!({"file": path.display().to_string()}),
            );
        }
        Err(refused) => {
            eprintln!("gradus: config reload refused: {refused}");
            metrics.config_reloads.with_label_values(&["invalid"]).inc();
            observer.event(
                "config_reload_invalid",
                step,
                serde_json::json!({"errors": [refused.to_string()]}),
            );
        }
    }
    Ok(())
}

/// Writes a checkpoint of everything a resume needs, through the
/// checkpointer (redone once if it crashes mid-write).
async fn save<T: Tokenizer>(
    trainer: &Trainer<T>,
    generator_engine: &generator::Sampler,
    config: &RunConfig,
    step: u64,
    logs: std::collections::BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let state = Box::new(RuntimeState {
        display: trainer.display_windows().clone(),
        logs,
        step,
        next_batch: trainer.next_batch,
        curriculum: trainer.curriculum().save(),
        ledger: trainer.ledger.clone(),
        generator_rng: generator_engine.rng(),
        samples: trainer.samples,
    });
    let manifest = serde_json::json!({"config": config.source});
    let timeout = Duration::from_secs_f64(config.run.call_timeout_s);
    let (answer, _) = call_with_retry(checkpointer::NAME, timeout, None, 1, |reply| {
        checkpointer::Msg::Save {
            step,
            state: state.clone(),
            manifest_extra: manifest.clone(),
            reply,
        }
    })
    .await;
    answer?
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("checkpoint at step {step}: {e}"))
}

/// What the signal listener saw, read at batch boundaries.
#[derive(Default)]
struct Signals {
    /// SIGTERM or SIGINT: stop cleanly with a final checkpoint.
    stop: AtomicBool,
    /// SIGHUP: reload the config.
    reload: AtomicBool,
}

async fn listen(signals: Arc<Signals>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!(
            "gradus: warning: cannot listen for signals; stop the run with kill -9 and resume it"
        );
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => signals.stop.store(true, Ordering::SeqCst),
            _ = int.recv() => signals.stop.store(true, Ordering::SeqCst),
            _ = hup.recv() => signals.reload.store(true, Ordering::SeqCst),
        }
    }
}

//! The learner actor: GRPO and SFT updates on the policy, weight snapshots for
//! the generator, and checkpoints.
//!
//! The model and optimizer live in an [`Engine`] on a dedicated compute thread
//! (burn never runs on tokio's workers). The engine outlives the actor: when
//! the actor crashes, the supervisor re-spawns it around the same engine, and
//! the caller redoes the batch it was waiting for. Each update carries a batch
//! id, and the engine remembers the last batch it applied with its statistics,
//! so a batch redone after a crash that struck *after* the update returns the
//! recorded statistics instead of stepping twice: nothing is learned twice.

use crate::fault::Fault;
use std::path::PathBuf;
use std::sync::Arc;

use gradus_policy::{Group, GrpoConfig, Learner, SftExample, StepStats, WeightsSnapshot};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

/// Work the learner does.
#[derive(Clone)]
pub enum Update {
    Grpo {
        groups: Vec<Group>,
        config: GrpoConfig,
    },
    Sft {
        examples: Vec<SftExample>,
    },
}

pub enum Msg {
    /// Apply `update` as batch `batch` at learning rate `lr` (ids increase; a
    /// repeat is answered from memory).
    Step {
        batch: u64,
        update: Update,
        lr: f64,
        reply: RpcReplyPort<Result<StepStats, String>>,
    },
    /// The current weights.
    Snapshot {
        reply: RpcReplyPort<Result<Arc<WeightsSnapshot>, String>>,
    },
    /// Save the model, optimizer, step, RNG and version into `dir`, with
    /// `manifest_extra` (the resolved run config) in the manifest.
    Checkpoint {
        dir: PathBuf,
        manifest_extra: serde_json::Value,
        reply: RpcReplyPort<Result<(), String>>,
    },
}

pub type LearnerRef = ActorRef<Msg>;

/// Name the learner registers under.
pub const NAME: &str = "learner";

/// The model, optimizer and applied-batch memory, on their compute thread.
pub struct Engine(crate::engine::Engine<Inner>);

struct Inner {
    learner: Learner,
    /// The last batch applied and what it did.
    last: Option<(u64, StepStats)>,
}

impl Engine {
    /// Wraps `learner` on a new compute thread with `threads` workers (0: one
    /// per core).
    pub fn new(learner: Learner, threads: usize) -> Result<Self, gradus_policy::Error> {
        let inner = Inner {
            learner,
            last: None,
        };
        Ok(Self(crate::engine::Engine::new("learner", inner, threads)?))
    }

    /// Applies `update` as batch `batch`, exactly once.
    pub fn step(&self, batch: u64, update: Update, lr: f64) -> Result<StepStats, String> {
        self.0.with(move |inner| {
            if let Some((last, stats)) = &inner.last
                && *last >= batch
            {
                if *last == batch {
                    return Ok(stats.clone());
                }
                return Err(format!(
                    "batch {batch} is older than the last applied batch {last}"
                ));
            }
            inner.learner.set_lr(lr);
            let stats = match update {
                Update::Grpo { groups, config } => inner.learner.grpo_step(&groups, &config),
                Update::Sft { examples } => inner.learner.sft_step(&examples),
            }
            .map_err(|e| e.to_string())?;
            inner.last = Some((batch, stats.clone()));
            Ok(stats)
        })
    }

    pub fn snapshot(&self) -> Result<Arc<WeightsSnapshot>, String> {
        self.0.with(|inner| Ok(Arc::new(inner.learner.snapshot())))
    }

    pub fn checkpoint(&self, dir: PathBuf, extra: serde_json::Value) -> Result<(), String> {
        self.0.with(move |inner| {
            inner
                .learner
                .save_checkpoint(&dir, extra)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

pub struct LearnerActor {
    engine: Arc<Engine>,
    /// Crashes the actor once, right after the engine applied batch N, before
    /// the reply is sent: the hardest case for exactly-once.
    fault: Arc<Fault>,
}

/// Spawns the learner linked to `supervisor`, around `engine`.
pub async fn spawn(
    engine: Arc<Engine>,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let (r, _) = Actor::spawn_linked(
        Some(NAME.into()),
        LearnerActor { engine, fault },
        (),
        supervisor,
    )
    .await?;
    Ok(r.get_cell())
}

impl Actor for LearnerActor {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: LearnerRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: LearnerRef, msg: Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let engine = self.engine.clone();
        match msg {
            Msg::Step {
                batch,
                update,
                lr,
                reply,
            } => {
                let result =
                    tokio::task::spawn_blocking(move || engine.step(batch, update, lr)).await?;
                if self.fault.matches(batch) {
                    return Err(
                        format!("injected learner fault after applying batch {batch}").into(),
                    );
                }
                let _ = reply.send(result);
            }
            Msg::Snapshot { reply } => {
                let _ = reply.send(tokio::task::spawn_blocking(move || engine.snapshot()).await?);
            }
            Msg::Checkpoint {
                dir,
                manifest_extra,
                reply,
            } => {
                let r = tokio::task::spawn_blocking(move || engine.checkpoint(dir, manifest_extra))
                    .await?;
                let _ = reply.send(r);
            }
        }
        Ok(())
    }
}

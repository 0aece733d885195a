//! The generator actor: samples responses with the latest published policy.
//!
//! Like the learner, the sampling copy of the model lives in an [`Engine`] on
//! its own compute thread and survives actor restarts. The engine's RNG is
//! seeded from the run seed and saved in checkpoints, so a resumed run samples
//! what the uninterrupted one would have. With `[generator] backend =
//! "openai"` the samples come from inference servers instead ([`remote`]).

pub mod remote;

use std::sync::Arc;

use gradus_policy::{Policy, Response, SamplingConfig, WeightsSnapshot};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use rand_chacha::ChaCha8Rng;

/// Sampled responses, one per prompt, and the policy version that made them.
#[derive(Debug, Clone)]
pub struct Generated {
    pub responses: Vec<Response>,
    pub policy_version: u64,
}

pub enum Msg {
    /// Sample one response per prompt (prompts are token ids, BOS included).
    Generate {
        prompts: Vec<Vec<u32>>,
        config: SamplingConfig,
        reply: RpcReplyPort<Result<Generated, String>>,
    },
    /// Swap in newer weights.
    Load {
        snapshot: Arc<WeightsSnapshot>,
        reply: RpcReplyPort<Result<u64, String>>,
    },
}

pub type GeneratorRef = ActorRef<Msg>;

/// Name the generator registers under.
pub const NAME: &str = "generator";

/// The sampling policy and its RNG, on their compute thread.
pub struct Engine(crate::engine::Engine<(Policy, ChaCha8Rng)>);

impl Engine {
    pub fn new(
        policy: Policy,
        rng: ChaCha8Rng,
        threads: usize,
    ) -> Result<Self, gradus_policy::Error> {
        Ok(Self(crate::engine::Engine::new(
            "generator",
            (policy, rng),
            threads,
        )?))
    }

    pub fn generate(
        &self,
        prompts: Vec<Vec<u32>>,
        config: SamplingConfig,
    ) -> Result<Generated, String> {
        self.0.with(move |(policy, rng)| {
            let responses = policy
                .sample(&prompts, &config, rng)
                .map_err(|e| e.to_string())?;
            Ok(Generated {
                responses,
                policy_version: policy.version(),
            })
        })
    }

    pub fn load(&self, snapshot: Arc<WeightsSnapshot>) -> Result<u64, String> {
        self.0.with(move |(policy, _)| {
            policy.load_snapshot(&snapshot).map_err(|e| e.to_string())?;
            Ok(policy.version())
        })
    }

    /// The RNG, for checkpoints.
    pub fn rng(&self) -> ChaCha8Rng {
        self.0.lock().1.clone()
    }
}

/// Where samples come from: the local compute thread or inference servers.
pub enum Sampler {
    Local(Arc<Engine>),
    Remote(remote::Remote),
}

impl Sampler {
    /// Samples one response per prompt.
    pub async fn generate(
        &self,
        prompts: Vec<Vec<u32>>,
        config: SamplingConfig,
    ) -> Result<Generated, String> {
        match self {
            Sampler::Local(e) => {
                let e = e.clone();
                tokio::task::spawn_blocking(move || e.generate(prompts, config))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Sampler::Remote(r) => r.generate(prompts, config).await,
        }
    }

    /// Publishes newer weights; returns the version that now samples.
    pub async fn load(&self, snapshot: Arc<WeightsSnapshot>) -> Result<u64, String> {
        match self {
            Sampler::Local(e) => {
                let e = e.clone();
                tokio::task::spawn_blocking(move || e.load(snapshot))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Sampler::Remote(r) => r.load(snapshot).await,
        }
    }

    /// The RNG, for checkpoints.
    pub fn rng(&self) -> ChaCha8Rng {
        match self {
            Sampler::Local(e) => e.rng(),
            Sampler::Remote(r) => r.rng(),
        }
    }

    /// The inference servers, when sampling remotely.
    pub fn remote(&self) -> Option<&remote::Remote> {
        match self {
            Sampler::Local(_) => None,
            Sampler::Remote(r) => Some(r),
        }
    }
}

pub struct Generator {
    engine: Arc<Sampler>,
}

/// Spawns the generator linked to `supervisor`, around `engine`.
pub async fn spawn(engine: Arc<Sampler>, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
    let (r, _) =
        Actor::spawn_linked(Some(NAME.into()), Generator { engine }, (), supervisor).await?;
    Ok(r.get_cell())
}

impl Actor for Generator {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: GeneratorRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: GeneratorRef,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let engine = self.engine.clone();
        match msg {
            Msg::Generate {
                prompts,
                config,
                reply,
            } => {
                let answer = engine.generate(prompts, config).await;
                if let Some(r) = engine.remote() {
                    for e in r.take_events() {
                        match e {
                            remote::EndpointEvent::Down { endpoint, why } => eprintln!(
                                "gradus: inference endpoint {endpoint} is down ({why}); its requests went elsewhere"
                            ),
                            remote::EndpointEvent::Up { endpoint } => {
                                eprintln!("gradus: inference endpoint {endpoint} is back")
                            }
                        }
                    }
                }
                let _ = reply.send(answer);
            }
            Msg::Load { snapshot, reply } => {
                let _ = reply.send(engine.load(snapshot).await);
            }
        }
        Ok(())
    }
}

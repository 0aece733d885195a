//! The curriculum actor: the only writer of the run's [`Curriculum`].
//!
//! Every change to the curriculum (drawing a batch, refilling it, recording
//! graded groups, closing a step, a config change from a reload) is a message
//! with a sequence number. The curriculum and the last answer live in a
//! [`Shared`] that outlives the actor: when the actor crashes after applying
//! an operation and before replying, the supervisor re-spawns it around the
//! same state, the caller redoes the call (see [`crate::call`]), and the
//! repeated sequence number is answered from memory instead of being applied
//! twice. A redone draw therefore returns the same prompts and a redone step
//! end advances nothing twice: the sampler and the statistics stay exactly
//! what an uninterrupted run has.
//!
//! Readers (the trainer between its calls, the daemon's status and
//! checkpoints) take a consistent view through [`Shared::read`]; they never
//! change the curriculum.

use std::sync::{Arc, Mutex, MutexGuard};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

use super::change::{Change, ChangeRefused};
use super::engine::{Curriculum, Draw, Graded, GroupVerdict, SampleError, StepOutcome};
use crate::fault::Fault;

/// Name the curriculum actor registers under.
pub const NAME: &str = "curriculum";

/// A change to the curriculum.
#[derive(Debug, Clone)]
pub enum Op {
    /// Draw the next batch of `n` prompts.
    Next(usize),
    /// Draw `n` more prompts for groups dropped by dynamic sampling.
    Refill(usize),
    /// Record graded groups, in order.
    Record(Vec<(Draw, Vec<Graded>)>),
    /// Close the step: judge the stage's rules, apply a pending config change.
    EndStep,
    /// Queue a config change for the next batch boundary.
    Change(Change),
}

/// What an [`Op`] returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Draws(Result<Vec<Draw>, SampleError>),
    Verdicts(Vec<GroupVerdict>),
    Ended(StepOutcome),
    Changed(Result<(), ChangeRefused>),
    /// The sequence number is older than the last one applied: a caller bug.
    OutOfOrder {
        seq: u64,
        last: u64,
    },
}

struct Inner {
    curriculum: Curriculum,
    /// The last operation applied and its answer.
    last: Option<(u64, Answer)>,
}

/// The curriculum and the last answer, shared by the actor (writer, across
/// restarts) and readers.
pub struct Shared(Mutex<Inner>);

impl Shared {
    pub fn new(curriculum: Curriculum) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Inner {
            curriculum,
            last: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read-only view of the curriculum (do not hold it across an await).
    pub fn read(&self) -> CurriculumView<'_> {
        CurriculumView(self.lock())
    }

    /// Applies operation `seq` exactly once: a repeat of the last sequence
    /// number is answered from memory.
    pub fn apply(&self, seq: u64, op: Op) -> Answer {
        let mut inner = self.lock();
        match &inner.last {
            Some((last, answer)) if *last == seq => return answer.clone(),
            Some((last, _)) if *last > seq => {
                return Answer::OutOfOrder { seq, last: *last };
            }
            _ => {}
        }
        let c = &mut inner.curriculum;
        let answer = match op {
            Op::Next(n) => Answer::Draws(c.next_batch(n)),
            Op::Refill(n) => Answer::Draws(c.refill(n)),
            Op::Record(groups) => Answer::Verdicts(
                groups
                    .iter()
                    .map(|(draw, graded)| c.record_group(draw, graded))
                    .collect(),
            ),
            Op::EndStep => Answer::Ended(c.end_step()),
            Op::Change(change) => Answer::Changed(c.request_change(change)),
        };
        inner.last = Some((seq, answer.clone()));
        answer
    }
}

/// A read-only view of the curriculum.
pub struct CurriculumView<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for CurriculumView<'_> {
    type Target = Curriculum;
    fn deref(&self) -> &Curriculum {
        &self.0.curriculum
    }
}

pub enum Msg {
    /// Apply `op` as operation `seq` (sequence numbers increase; a repeat is
    /// answered from memory).
    Apply {
        seq: u64,
        op: Op,
        reply: RpcReplyPort<Answer>,
    },
}

pub type CurriculumRef = ActorRef<Msg>;

pub struct CurriculumActor {
    shared: Arc<Shared>,
    /// Crashes the actor once, on its N-th operation, after applying it and
    /// before replying.
    fault: Arc<Fault>,
}

/// Spawns the curriculum actor linked to `supervisor`, around `shared`.
pub async fn spawn(
    shared: Arc<Shared>,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let actor = CurriculumActor { shared, fault };
    let (r, _) = Actor::spawn_linked(Some(NAME.into()), actor, (), supervisor).await?;
    Ok(r.get_cell())
}

impl Actor for CurriculumActor {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: CurriculumRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: CurriculumRef,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Apply { seq, op, reply } => {
                // Microseconds of bookkeeping: no need to leave the actor's task.
                let answer = self.shared.apply(seq, op);
                if self.fault.count() {
                    return Err(format!("injected curriculum fault after operation {seq}").into());
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}

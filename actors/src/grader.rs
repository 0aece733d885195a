//! The math grader actor: grades batches of responses against gold answers
//! with [`gradus_math::grade`].
//!
//! Grading is pure and takes microseconds per answer, so the actor grades a
//! whole batch in one message on its own task. The grader never panics on its
//! own; a panic here means a bug (or an injected [`Fault`]), and the
//! supervisor restarts the actor while the caller redoes the batch once.

use std::sync::Arc;
use std::time::Instant;

use gradus_math::{Grade, GradeConfig};

use crate::fault::Fault;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

/// One response to grade.
#[derive(Debug, Clone)]
pub struct Item {
    pub gold: String,
    pub response: String,
}

/// The verdict on one item and the time it took.
#[derive(Debug, Clone)]
pub struct Graded {
    pub grade: Grade,
    pub seconds: f64,
}

pub enum Msg {
    /// Grade every item, in order.
    Grade {
        items: Vec<Item>,
        reply: RpcReplyPort<Vec<Graded>>,
    },
}

pub type GraderRef = ActorRef<Msg>;

/// Read-only settings; the actor keeps no state between messages.
pub struct Grader {
    config: GradeConfig,
    /// Panics once, on the N-th batch, as a poisoned input that trips a
    /// grader bug would.
    fault: Arc<Fault>,
}

/// Name the grader registers under; callers look it up again after a restart.
pub const NAME: &str = "grader";

/// Spawns the grader linked to `supervisor`.
pub async fn spawn(
    config: GradeConfig,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let (r, _) =
        Actor::spawn_linked(Some(NAME.into()), Grader { config, fault }, (), supervisor).await?;
    Ok(r.get_cell())
}

impl Grader {
    /// The pure part: grade a batch.
    pub fn grade_batch(&self, items: &[Item]) -> Vec<Graded> {
        if self.fault.count() {
            panic!("injected grader fault: poisoned input");
        }
        items
            .iter()
            .map(|item| {
                let t = Instant::now();
                let grade = gradus_math::grade(&item.gold, &item.response, &self.config);
                Graded {
                    grade,
                    seconds: t.elapsed().as_secs_f64(),
                }
            })
            .collect()
    }
}

impl Actor for Grader {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: GraderRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: GraderRef, msg: Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Grade { items, reply } => {
                // The caller may have given up (timeout); that is not our failure.
                let _ = reply.send(self.grade_batch(&items));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(gold: &str, response: &str) -> Item {
        Item {
            gold: gold.into(),
            response: response.into(),
        }
    }

    #[test]
    fn grades_in_order_strictly() {
        let g = Grader {
            config: GradeConfig::strict(),
            fault: Arc::default(),
        };
        let out = g.grade_batch(&[
            item("85", "7+8=15 4+3+1=8 \\boxed{85}"),
            item("85", "the answer is 85"),
        ]);
        assert!(out[0].grade.correct);
        assert!(!out[1].grade.correct, "strict grading needs a box");
    }

    #[tokio::test]
    async fn a_poisoned_input_crashes_the_actor_not_the_caller() {
        let fault = Arc::new(Fault::at(Some(2)));
        let g = Grader {
            config: GradeConfig::strict(),
            fault,
        };
        let (actor, handle) = Actor::spawn(None, g, ()).await.unwrap();
        let ok = actor
            .call(
                |reply| Msg::Grade {
                    items: vec![item("3", "\\boxed{3}")],
                    reply,
                },
                None,
            )
            .await
            .unwrap();
        assert!(ok.success_or(()).is_ok());
        let crashed = actor
            .call(
                |reply| Msg::Grade {
                    items: vec![item("3", "\\boxed{3}")],
                    reply,
                },
                None,
            )
            .await;
        assert!(!matches!(crashed, Ok(ractor::rpc::CallResult::Success(_))));
        handle.await.unwrap();
    }
}

//! The math grader actor: grades batches of responses against gold answers
//! with [`gradus_math::grade`].
//!
//! Grading is pure and takes microseconds per answer. The actor takes a whole
//! batch in one message and grades it on a pool of blocking threads (chunks
//! of at least [`MIN_CHUNK`] answers, at most one per core), off tokio's
//! workers. The grader never panics on its own; a panic here means a bug (or
//! an injected [`Fault`]), and the supervisor restarts the actor while the
//! caller redoes the batch once.

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

/// Answers per blocking task at least.
pub const MIN_CHUNK: usize = 16;

/// The pure part: grades `items` in order.
pub fn grade_all(items: &[Item], config: &GradeConfig) -> Vec<Graded> {
    items
        .iter()
        .map(|item| {
            let t = Instant::now();
            let grade = gradus_math::grade(&item.gold, &item.response, config);
            Graded {
                grade,
                seconds: t.elapsed().as_secs_f64(),
            }
        })
        .collect()
}

impl Grader {
    /// Grades a batch on the pool, in order.
    async fn grade_batch(&self, items: Vec<Item>) -> Result<Vec<Graded>, ActorProcessingErr> {
        if self.fault.count() {
            panic!("injected grader fault: poisoned input");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let tasks = items.len().div_ceil(MIN_CHUNK).clamp(1, cores);
        let chunk = items.len().div_ceil(tasks).max(1);
        let config = Arc::new(self.config.clone());
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let (c, config) = (c.to_vec(), config.clone());
                tokio::task::spawn_blocking(move || grade_all(&c, &config))
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.await?);
        }
        Ok(out)
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
                let graded = self.grade_batch(items).await?;
                // The caller may have given up (timeout); that is not our failure.
                let _ = reply.send(graded);
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
        let out = grade_all(
            &[
                item("85", "7+8=15 4+3+1=8 \\boxed{85}"),
                item("85", "the answer is 85"),
            ],
            &GradeConfig::strict(),
        );
        assert!(out[0].grade.correct);
        assert!(!out[1].grade.correct, "strict grading needs a box");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_split_over_the_pool_comes_back_in_order() {
        let g = Grader {
            config: GradeConfig::strict(),
            fault: Arc::default(),
        };
        // 5 chunks' worth: answer i is correct for even i only.
        let items: Vec<Item> = (0..5 * MIN_CHUNK)
            .map(|i| {
                let answer = if i % 2 == 0 { i } else { i + 1 };
                item(&i.to_string(), &format!("\\boxed{{{answer}}}"))
            })
            .collect();
        let out = g.grade_batch(items).await.unwrap();
        assert_eq!(out.len(), 5 * MIN_CHUNK);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.grade.correct, i % 2 == 0, "item {i}");
        }
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

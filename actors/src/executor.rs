//! The executor actor: the sandbox client. It runs generated programs against
//! their tests in [`gradus_sandbox::Sandbox`] and returns one outcome per job.
//!
//! The sandbox is a bounded pool shared across restarts of this actor (the
//! daemon builds it once, so a restart costs no interpreter start-up). A
//! `sandbox_error` outcome is the sandbox's failure, never the program's (a
//! worker killed mid-job, a cgroup that could not be made): the job is redone
//! exactly once, and only a second failure is reported as such.

use std::sync::Arc;

use gradus_sandbox::{Job, Outcome, Sandbox, Verdict};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

pub enum Msg {
    /// Run every job; outcomes come back in job order, with the indices of
    /// the jobs redone after a sandbox error.
    Run {
        jobs: Vec<Job>,
        reply: RpcReplyPort<(Vec<Outcome>, Vec<usize>)>,
    },
}

pub type ExecutorRef = ActorRef<Msg>;

/// Name the executor registers under.
pub const NAME: &str = "executor";

pub struct Executor {
    sandbox: Arc<Sandbox>,
}

/// Spawns the executor linked to `supervisor`, sharing `sandbox`.
pub async fn spawn(sandbox: Arc<Sandbox>, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
    let (r, _) =
        Actor::spawn_linked(Some(NAME.into()), Executor { sandbox }, (), supervisor).await?;
    Ok(r.get_cell())
}

/// Runs `jobs`, redoing once each job whose outcome is a sandbox error.
/// Returns the outcomes and the indices of the jobs that were redone.
pub async fn run_with_redo(sandbox: &Sandbox, jobs: Vec<Job>) -> (Vec<Outcome>, Vec<usize>) {
    let mut outcomes = sandbox.run_batch(jobs.clone()).await;
    let retry: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.verdict == Verdict::SandboxError)
        .map(|(i, _)| i)
        .collect();
    if !retry.is_empty() {
        let again = sandbox
            .run_batch(retry.iter().map(|&i| jobs[i].clone()).collect())
            .await;
        for (i, o) in retry.iter().zip(again) {
            outcomes[*i] = o;
        }
    }
    (outcomes, retry)
}

impl Actor for Executor {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ExecutorRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ExecutorRef, msg: Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Run { jobs, reply } => {
                let _ = reply.send(run_with_redo(&self.sandbox, jobs).await);
            }
        }
        Ok(())
    }
}

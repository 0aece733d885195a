//! The executor actor: the sandbox client. It runs generated programs against
//! their tests on the run's [`Fleet`] (the local [`gradus_sandbox::Sandbox`]
//! pool and/or `gradus sandbox serve` services) and returns one outcome per job.
//!
//! The fleet is shared across restarts of this actor (the daemon builds it
//! once, so a restart costs no interpreter start-up). A
//! `sandbox_error` outcome is the sandbox's failure, never the program's (a
//! worker killed mid-job, a cgroup that could not be made): the job is redone
//! exactly once, and only a second failure is reported as such.

use std::sync::Arc;
use std::time::Duration;

use gradus_sandbox::service::{Fleet, HostEvent};
use gradus_sandbox::{Job, Outcome, Verdict};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

use crate::fault::Fault;

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
    fleet: Fleet,
    /// Kills the sandbox worker running the first job of the N-th batch, mid
    /// job (see [`first_attempt`]).
    fault: Arc<Fault>,
}

/// Spawns the executor linked to `supervisor`, sharing `fleet`.
pub async fn spawn(
    fleet: Fleet,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let (r, _) =
        Actor::spawn_linked(Some(NAME.into()), Executor { fleet, fault }, (), supervisor).await?;
    Ok(r.get_cell())
}

/// The first attempt at `jobs`. When `kill_worker` (fault injection), the
/// first job's program is replaced by one that waits, and its isolation cell
/// is killed while it runs, as a crashed sandbox worker would be: that job
/// comes back as a sandbox error, and the redo runs the real program. (On a
/// fleet without a local pool there is no worker of ours to kill: a service
/// is killed from outside, as the e2e test does.)
async fn first_attempt(fleet: &Fleet, jobs: &[Job], kill_worker: bool) -> Vec<Outcome> {
    let local = fleet
        .local()
        .filter(|_| kill_worker && !jobs.is_empty() && fleet.remotes_up().1 == 0);
    let Some(sandbox) = local else {
        return fleet.run_batch(jobs.to_vec()).await;
    };
    let mut first = jobs.to_vec();
    first[0].source = "import time\ntime.sleep(60)\n".into();
    let (sb, id) = (sandbox.clone(), first[0].id.clone());
    let killer = tokio::spawn(async move {
        while !sb.cancel(&id) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let outcomes = sandbox.run_batch(first).await;
    killer.abort();
    outcomes
}

/// Runs `jobs`, redoing once each job whose outcome is a sandbox error.
/// Returns the outcomes and the indices of the jobs that were redone.
pub async fn run_with_redo(
    fleet: &Fleet,
    jobs: Vec<Job>,
    kill_worker: bool,
) -> (Vec<Outcome>, Vec<usize>) {
    let mut outcomes = first_attempt(fleet, &jobs, kill_worker).await;
    let retry: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.verdict == Verdict::SandboxError)
        .map(|(i, _)| i)
        .collect();
    if !retry.is_empty() {
        let again = fleet
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
                let kill_worker = self.fault.count();
                let _ = reply.send(run_with_redo(&self.fleet, jobs, kill_worker).await);
                for e in self.fleet.take_events() {
                    match e {
                        HostEvent::Down { host, why } => eprintln!(
                            "gradus: sandbox host {host} is out ({why}); its jobs were sent again elsewhere"
                        ),
                        HostEvent::Up { host } => {
                            eprintln!("gradus: sandbox host {host} takes jobs")
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

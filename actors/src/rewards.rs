//! The reward-assembly actor: grades a batch of rollout groups through the
//! math grader and the sandbox executor, and completes each group once all of
//! its responses have a result; only then are the group's rewards and
//! group-relative advantages computed.
//!
//! The math and code parts of a batch are graded concurrently (the grader and
//! the executor are separate actors). A grader that dies twice on a batch
//! leaves its responses with the labelled `grader_error` result (no reward,
//! counted, never hidden); an executor that does is an error of the run. Every
//! redo (a grader or executor call repeated after a restart, a sandbox job
//! repeated after a sandbox error) is counted against the group it served, so
//! the caller can book it in the ledger.
//!
//! The actor keeps no state between messages: when it crashes, the caller
//! redoes the whole batch once (see [`crate::call`]), and grading is pure.
//! The assembly itself ([`Assembly`]) is plain logic, tested without actors.

use std::sync::Arc;
use std::time::Duration;

use gradus_policy::loss::group_advantages;
use gradus_sandbox::{Job, Outcome};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};

use crate::call::{CallError, QueueHook, call_with_retry};
use crate::data::Domain;
use crate::fault::Fault;
use crate::rollout::{self, GroupResults, ResponseResult};
use crate::{executor, grader};

/// Name the reward assembler registers under.
pub const NAME: &str = "rewards";

/// What grades one response.
#[derive(Debug, Clone)]
pub enum Work {
    /// A math answer, against its gold answer.
    Math(grader::Item),
    /// A program, run against its tests in the sandbox.
    Code(Box<Job>),
}

/// One response to grade.
#[derive(Debug, Clone)]
pub struct Response {
    pub work: Work,
    /// Cut at the length limit (kept on the result; the learner decides).
    pub truncated: bool,
}

/// A complete group: one result per response, in order, and its advantages.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub results: Vec<ResponseResult>,
    /// Group-relative advantages of the rewards (Shao et al. 2024, §4.1.2).
    pub advantages: Vec<f32>,
    /// Grading work of this group done twice (after a crash or a sandbox error).
    pub redone: u64,
    /// Grading latency of each response, seconds, by domain.
    pub seconds: Vec<(Domain, f64)>,
}

/// Settings fixed for the run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Reward code by the fraction of tests passed instead of all-or-nothing.
    pub partial_credit: bool,
    /// Divide advantages by the group's reward std (GRPO) or only centre them (Dr. GRPO).
    pub normalize_std: bool,
    /// Longest wait for one grader or executor call.
    pub call_timeout: Duration,
}

/// The pure part: results arrive per response, in any order; a group is
/// assembled once every response has one.
pub struct Assembly {
    groups: Vec<GroupResults>,
    redone: Vec<u64>,
    seconds: Vec<Vec<(Domain, f64)>>,
}

impl Assembly {
    /// Groups of the given sizes, none graded yet.
    pub fn new(sizes: impl IntoIterator<Item = usize>) -> Self {
        let groups: Vec<GroupResults> = sizes.into_iter().map(GroupResults::new).collect();
        let n = groups.len();
        Self {
            groups,
            redone: vec![0; n],
            seconds: vec![Vec::new(); n],
        }
    }

    /// Response `r` of group `g` was graded; a repeat is ignored.
    pub fn set(&mut self, (g, r): (usize, usize), result: ResponseResult, seconds: (Domain, f64)) {
        if self.groups[g].set(r, result) {
            self.seconds[g].push(seconds);
        }
    }

    /// Work of group `g` was redone.
    pub fn redo(&mut self, g: usize) {
        self.redone[g] += 1;
    }

    /// Every group, with rewards and advantages, or the first group left
    /// incomplete.
    pub fn finish(self, normalize_std: bool) -> Result<Vec<Assembled>, usize> {
        let mut out = Vec::with_capacity(self.groups.len());
        for (g, ((results, redone), seconds)) in self
            .groups
            .into_iter()
            .zip(self.redone)
            .zip(self.seconds)
            .enumerate()
        {
            let results = results.complete().ok_or(g)?;
            let rewards: Vec<f32> = results.iter().map(|r| r.reward).collect();
            out.push(Assembled {
                advantages: group_advantages(&rewards, normalize_std),
                results,
                redone,
                seconds,
            });
        }
        Ok(out)
    }
}

/// Grades every response of `groups` and assembles them, in order.
pub async fn assemble(
    settings: &Settings,
    queues: Option<&QueueHook>,
    groups: Vec<Vec<Response>>,
) -> Result<Vec<Assembled>, CallError> {
    let mut assembly = Assembly::new(groups.iter().map(Vec::len));
    let (mut math, mut math_at, mut code, mut code_at) = (vec![], vec![], vec![], vec![]);
    for (g, group) in groups.iter().enumerate() {
        for (r, resp) in group.iter().enumerate() {
            match &resp.work {
                Work::Math(item) => {
                    math.push(item.clone());
                    math_at.push((g, r));
                }
                Work::Code(job) => {
                    code.push((**job).clone());
                    code_at.push((g, r));
                }
            }
        }
    }
    let timeout = settings.call_timeout;
    let grade_math = async {
        if math.is_empty() {
            return (Ok(Vec::new()), false);
        }
        call_with_retry(grader::NAME, timeout, queues, math.len(), |reply| {
            grader::Msg::Grade {
                items: math.clone(),
                reply,
            }
        })
        .await
    };
    let run_code = async {
        if code.is_empty() {
            return (Ok((Vec::new(), Vec::new())), false);
        }
        call_with_retry(executor::NAME, timeout, queues, code.len(), |reply| {
            executor::Msg::Run {
                jobs: code.clone(),
                reply,
            }
        })
        .await
    };
    let ((graded, math_redone), (ran, code_redone)) = tokio::join!(grade_math, run_code);
    let truncated = |(g, r): (usize, usize)| groups[g][r].truncated;
    if math_redone {
        redo_groups(&mut assembly, &math_at);
    }
    match graded {
        Ok(graded) => {
            for (&at, g) in math_at.iter().zip(graded) {
                let result = rollout::math_result(&g.grade, truncated(at));
                assembly.set(at, result, (Domain::Math, g.seconds));
            }
        }
        // The grader died twice on this batch: no reward, labelled and counted.
        Err(_) => {
            for &at in &math_at {
                let result = rollout::failed_result(truncated(at), "grader_error");
                assembly.set(at, result, (Domain::Math, 0.0));
            }
        }
    }
    if code_redone {
        redo_groups(&mut assembly, &code_at);
    }
    let (outcomes, jobs_redone): (Vec<Outcome>, Vec<usize>) = ran?;
    for j in jobs_redone {
        assembly.redo(code_at[j].0);
    }
    for (&at, o) in code_at.iter().zip(outcomes) {
        let result = rollout::code_result(&o, truncated(at), settings.partial_credit);
        assembly.set(at, result, (Domain::Code, o.wall_ms / 1000.0));
    }
    assembly
        .finish(settings.normalize_std)
        .map_err(|g| CallError {
            actor: NAME,
            why: format!("group {g} was not graded completely"),
        })
}

/// Counts one redo for each distinct group among `at`.
fn redo_groups(assembly: &mut Assembly, at: &[(usize, usize)]) {
    let mut groups: Vec<usize> = at.iter().map(|(g, _)| *g).collect();
    groups.dedup();
    for g in groups {
        assembly.redo(g);
    }
}

pub enum Msg {
    /// Grade and assemble every group, in order.
    Assemble {
        groups: Vec<Vec<Response>>,
        reply: RpcReplyPort<Result<Vec<Assembled>, CallError>>,
    },
}

pub type RewardsRef = ActorRef<Msg>;

pub struct Rewards {
    settings: Settings,
    queues: Option<QueueHook>,
    /// Crashes the actor once, on its N-th batch, after grading and before
    /// replying: the grading is lost and must be redone exactly once.
    fault: Arc<Fault>,
}

/// Spawns the reward assembler linked to `supervisor`.
pub async fn spawn(
    settings: Settings,
    queues: Option<QueueHook>,
    fault: Arc<Fault>,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let actor = Rewards {
        settings,
        queues,
        fault,
    };
    let (r, _) = Actor::spawn_linked(Some(NAME.into()), actor, (), supervisor).await?;
    Ok(r.get_cell())
}

impl Actor for Rewards {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: RewardsRef, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: RewardsRef, msg: Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Assemble { groups, reply } => {
                let answer = assemble(&self.settings, self.queues.as_ref(), groups).await;
                if self.fault.count() {
                    return Err("injected reward-assembly fault after grading".into());
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(reward: f32) -> ResponseResult {
        ResponseResult {
            reward,
            correct: reward == 1.0,
            truncated: false,
            verdict: "x",
        }
    }

    #[test]
    fn groups_complete_in_any_order_and_get_advantages_then() {
        let mut a = Assembly::new([2, 3]);
        a.set((1, 2), result(1.0), (Domain::Code, 0.5));
        a.set((0, 1), result(0.0), (Domain::Math, 0.1));
        a.set((1, 0), result(0.0), (Domain::Code, 0.5));
        a.set((0, 0), result(1.0), (Domain::Math, 0.1));
        a.redo(1);
        // Group 1 still misses response 1.
        let mut b = Assembly::new([1]);
        b.set((0, 0), result(1.0), (Domain::Math, 0.0));
        assert_eq!(Assembly::new([2]).finish(true).unwrap_err(), 0);
        a.set((1, 1), result(0.0), (Domain::Code, 0.5));
        // A repeated result (work redone after a crash) does not count twice.
        a.set((1, 1), result(1.0), (Domain::Code, 0.5));
        let out = a.finish(true).unwrap();
        let rewards: Vec<Vec<f32>> = out
            .iter()
            .map(|g| g.results.iter().map(|r| r.reward).collect())
            .collect();
        assert_eq!(rewards, vec![vec![1.0, 0.0], vec![0.0, 0.0, 1.0]]);
        assert_eq!(out[0].advantages, group_advantages(&[1.0, 0.0], true));
        assert_eq!(out[1].advantages, group_advantages(&[0.0, 0.0, 1.0], true));
        assert!(out[1].advantages[2] > 0.0 && out[1].advantages[0] < 0.0);
        assert_eq!((out[0].redone, out[1].redone), (0, 1));
        assert_eq!(out[1].seconds.len(), 3);
        assert_eq!(b.finish(false).unwrap()[0].advantages, vec![0.0]);
    }

    fn math(gold: &str, response: &str) -> Response {
        Response {
            work: Work::Math(grader::Item {
                gold: gold.into(),
                response: response.into(),
            }),
            truncated: false,
        }
    }

    #[tokio::test]
    async fn crashes_of_the_grader_and_of_the_assembler_are_redone_once_and_counted() {
        use crate::supervisor::{self, Report, RestartPolicy, Supervisor, spawner};
        let grader_faults = Arc::new(Fault::at(Some(1)));
        let own_faults = Arc::new(Fault::at(Some(2)));
        let settings = Settings {
            partial_credit: false,
            normalize_std: true,
            call_timeout: Duration::from_secs(10),
        };
        let config = gradus_math::GradeConfig::strict();
        let children = vec![
            (
                grader::NAME.to_string(),
                spawner(move |sup| grader::spawn(config.clone(), grader_faults.clone(), sup)),
            ),
            (
                NAME.to_string(),
                spawner(move |sup| spawn(settings.clone(), None, own_faults.clone(), sup)),
            ),
        ];
        let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let policy = RestartPolicy {
            backoff_s: 0.01,
            ..Default::default()
        };
        let args = supervisor::Args {
            policy,
            children,
            reports: tx,
        };
        let (sup, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
        let groups = vec![
            vec![math("3", "\\boxed{3}"), math("3", "\\boxed{4}")],
            vec![math("5", "\\boxed{5}")],
        ];
        let ask = || {
            let groups = groups.clone();
            call_with_retry(NAME, Duration::from_secs(10), None, 3, move |reply| {
                Msg::Assemble {
                    groups: groups.clone(),
                    reply,
                }
            })
        };
        // Batch 1: the grader panics; the assembler redoes the grading once.
        let (answer, redone) = ask().await;
        let out = answer.unwrap().unwrap();
        assert!(!redone);
        assert_eq!((out[0].redone, out[1].redone), (1, 1));
        let rewards: Vec<Vec<f32>> = out
            .iter()
            .map(|g| g.results.iter().map(|r| r.reward).collect())
            .collect();
        assert_eq!(rewards, vec![vec![1.0, 0.0], vec![1.0]]);
        assert!(out[0].advantages[0] > 0.0 && out[0].advantages[1] < 0.0);
        // Batch 2: the assembler dies after grading; the caller redoes it once.
        let (answer, redone) = ask().await;
        assert!(redone);
        let again = answer.unwrap().unwrap();
        assert_eq!(again[0].results, out[0].results);
        assert_eq!((again[0].redone, again[1].redone), (0, 0));
        let mut restarted = Vec::new();
        while let Ok(Report::Restarted { actor, .. }) = reports.try_recv() {
            restarted.push(actor);
        }
        assert_eq!(restarted, vec![grader::NAME, NAME]);
        sup.stop(None);
        handle.await.unwrap();
    }
}

//! Calls to supervised actors that survive a restart of the callee.
//!
//! Actors are looked up by name for every call: a restarted actor has a new
//! `ActorRef`, and the old one is dead. When the callee dies mid-call (its
//! reply port dropped) or does not answer in time, the caller waits for the
//! supervisor's restart and redoes the call once; the caller books the redo
//! (in the ledger, for the groups the call carried).

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};

use crate::supervisor;

/// Told how many items an actor holds unanswered, as calls start (n) and end (0).
pub type QueueHook = std::sync::Arc<dyn Fn(&'static str, usize) + Send + Sync>;

/// Why a call failed even after a restart of the callee.
#[derive(Debug, Clone, thiserror::Error)]
#[error("actor '{actor}' did not answer ({why}) even after a restart")]
pub struct CallError {
    pub actor: &'static str,
    pub why: String,
}

/// Calls actor `name`; when it dies mid-call, waits for the supervisor's
/// restart and calls once more. Returns the answer and whether the call was
/// redone. `queues` hears the items held by the actor while the call runs.
pub async fn call_with_retry<M, R>(
    name: &'static str,
    timeout: Duration,
    queues: Option<&QueueHook>,
    items: usize,
    msg: impl Fn(RpcReplyPort<R>) -> M,
) -> (Result<R, CallError>, bool)
where
    M: ractor::Message,
    R: Send + 'static,
{
    let mut last_err = String::new();
    let mut redone = false;
    for attempt in 0..2 {
        let Some(actor) = supervisor::lookup::<M>(name, timeout).await else {
            last_err = "not running".into();
            continue;
        };
        redone |= attempt == 1;
        if let Some(q) = queues {
            q(name, items);
        }
        let answer = call(&actor, &msg, timeout).await;
        if let Some(q) = queues {
            q(name, 0);
        }
        match answer {
            Ok(r) => return (Ok(r), redone),
            Err(e) => {
                last_err = e;
                // Let the supervisor notice the failure and unregister the name.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (
        Err(CallError {
            actor: name,
            why: last_err,
        }),
        redone,
    )
}

async fn call<M: ractor::Message, R: Send + 'static>(
    actor: &ActorRef<M>,
    msg: &impl Fn(RpcReplyPort<R>) -> M,
    timeout: Duration,
) -> Result<R, String> {
    match actor.call(msg, Some(timeout)).await {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => Err(format!("no answer within {timeout:?}")),
        Ok(CallResult::SenderError) => Err("the actor stopped before answering".into()),
        Err(e) => Err(e.to_string()),
    }
}

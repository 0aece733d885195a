//! The supervisor: restarts crashed actors with backoff, and stops the run when
//! one keeps crashing.
//!
//! ractor's default supervisor stops when a child fails; ours re-spawns the
//! child under the same name (the old `ActorRef` is dead, so callers look the
//! actor up again by name, see [`lookup`]), waits an exponential backoff first,
//! counts and reports every restart, and gives up once a child has failed
//! `max_failures` times within `window`: the run then stops with a clear error
//! and a final checkpoint (the daemon's job, told through [`Report::GaveUp`]).
//!
//! The decision "restart after how long, or give up?" is the pure
//! [`RestartTracker`], tested without the actor runtime.
//!
//! ```text
//!                    supervisor
//!   ┌──────────┬─────────┬───┴────┬────────┬─────────┬────────────┐
//! curriculum generator executor grader  rewards  learner  checkpointer
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use serde::Deserialize;

/// When to restart and when to give up. Part of the run config (`[supervisor]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Failures of one actor within `window_s` that stop the run.
    pub max_failures: usize,
    /// Length of the failure window, seconds.
    pub window_s: f64,
    /// Delay before the first restart, seconds; doubled per failure still in
    /// the window, up to `backoff_max_s`.
    pub backoff_s: f64,
    /// Longest delay before a restart, seconds.
    pub backoff_max_s: f64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_s: 60.0,
            backoff_s: 0.05,
            backoff_max_s: 5.0,
        }
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Restart after this delay; `failures` counts those in the window, this one included.
    Restart { after: Duration, failures: usize },
    /// Too many failures in the window: stop the run.
    GiveUp { failures: usize, window: Duration },
}

/// Failure history of one actor.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    failures: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            failures: VecDeque::new(),
        }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        let window = Duration::from_secs_f64(self.policy.window_s);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let failures = self.failures.len();
        if failures >= self.policy.max_failures {
            return Decision::GiveUp { failures, window };
        }
        let factor = 2f64.powi(i32::try_from(failures - 1).unwrap_or(i32::MAX));
        let delay = (self.policy.backoff_s * factor).min(self.policy.backoff_max_s);
        Decision::Restart {
            after: Duration::from_secs_f64(delay),
            failures,
        }
    }
}

/// Future returned by a [`Spawner`].
pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// Spawns one child, linked to the given supervisor, under its fixed name.
/// Called again for every restart; whatever state must survive a crash lives
/// outside the actor (an engine thread, the ledger) and is captured here.
pub type Spawner = Arc<dyn Fn(ActorCell) -> SpawnFuture + Send + Sync>;

/// Wraps an async spawn function as a [`Spawner`].
pub fn spawner<F, Fut>(f: F) -> Spawner
where
    F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
{
    Arc::new(move |sup| Box::pin(f(sup)))
}

/// What the supervisor tells the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A child failed and was restarted.
    Restarted {
        actor: String,
        failures: usize,
        error: String,
    },
    /// A child failed too often: the run must stop.
    GaveUp {
        actor: String,
        failures: usize,
        window: Duration,
        error: String,
    },
}

/// The supervisor actor.
pub struct Supervisor;

/// Start-up arguments.
pub struct Args {
    pub policy: RestartPolicy,
    /// Children by name, spawned in this order.
    pub children: Vec<(String, Spawner)>,
    /// Where restart and give-up reports go.
    pub reports: tokio::sync::mpsc::UnboundedSender<Report>,
}

pub struct State {
    policy: RestartPolicy,
    spawners: HashMap<String, Spawner>,
    trackers: HashMap<String, RestartTracker>,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
    /// Set once the run is being stopped: children that stop then are not restarted.
    stopping: bool,
}

/// Messages to the supervisor.
pub enum Msg {
    /// Re-spawn the named child (sent to itself after the backoff).
    Respawn(String),
    /// Stop restarting children: the run is shutting down.
    Quiesce,
}

pub type SupervisorRef = ActorRef<Msg>;

impl Actor for Supervisor {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Msg>,
        args: Args,
    ) -> Result<State, ActorProcessingErr> {
        let mut spawners = HashMap::new();
        for (name, spawn) in args.children {
            spawn(myself.get_cell()).await?;
            spawners.insert(name, spawn);
        }
        Ok(State {
            policy: args.policy,
            spawners,
            trackers: HashMap::new(),
            reports: args.reports,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg>,
        msg: Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Respawn(name) if !state.stopping => {
                if let Some(spawn) = state.spawners.get(&name) {
                    spawn(myself.get_cell()).await?;
                }
            }
            Msg::Respawn(_) => {}
            Msg::Quiesce => state.stopping = true,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            // A child that stops on its own (not by panic or error) during the
            // run is a failure too, unless the run is shutting down.
            SupervisionEvent::ActorTerminated(cell, _, reason) if !state.stopping => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(name) = cell.get_name() else {
            return Ok(());
        };
        if state.stopping || !state.spawners.contains_key(&name) {
            return Ok(());
        }
        let tracker = state
            .trackers
            .entry(name.clone())
            .or_insert_with(|| RestartTracker::new(state.policy.clone()));
        match tracker.on_failure(Instant::now()) {
            Decision::Restart { after, failures } => {
                let _ = state.reports.send(Report::Restarted {
                    actor: name.clone(),
                    failures,
                    error,
                });
                myself.send_after(after, move || Msg::Respawn(name));
            }
            Decision::GiveUp { failures, window } => {
                state.stopping = true;
                let _ = state.reports.send(Report::GaveUp {
                    actor: name,
                    failures,
                    window,
                    error,
                });
            }
        }
        Ok(())
    }
}

/// Looks up a (possibly restarted) actor by name, waiting up to `timeout` for
/// a restart in progress to finish.
pub async fn lookup<M: ractor::Message>(name: &str, timeout: Duration) -> Option<ActorRef<M>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(cell) = ractor::registry::where_is(name.to_string()) {
            return Some(cell.into());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: usize) -> RestartPolicy {
        RestartPolicy {
            max_failures: max,
            window_s: 10.0,
            backoff_s: 0.1,
            backoff_max_s: 0.3,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up_in_the_window() {
        let mut t = RestartTracker::new(policy(4));
        let t0 = Instant::now();
        let delays: Vec<_> = (0..3)
            .map(|i| match t.on_failure(t0 + Duration::from_secs(i)) {
                Decision::Restart { after, .. } => after.as_millis(),
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 300]);
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(3)),
            Decision::GiveUp { failures: 4, .. }
        ));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut t = RestartTracker::new(policy(2));
        let t0 = Instant::now();
        assert!(matches!(
            t.on_failure(t0),
            Decision::Restart { failures: 1, .. }
        ));
        assert!(matches!(
            t.on_failure(t0 + Duration::from_secs(11)),
            Decision::Restart { failures: 1, .. }
        ));
    }

    /// A child that panics on demand and counts its starts.
    struct Flaky(Arc<std::sync::atomic::AtomicUsize>);

    impl Actor for Flaky {
        type Msg = bool;
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<bool>, _: ()) -> Result<(), ActorProcessingErr> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        async fn handle(
            &self,
            _: ActorRef<bool>,
            crash: bool,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            assert!(!crash, "injected crash");
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_child_is_restarted_under_its_name_then_the_run_gives_up() {
        let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = starts.clone();
        let name = "flaky-test-child".to_string();
        let child_name = name.clone();
        let spawn: Spawner = Arc::new(move |sup| {
            let (n, c) = (child_name.clone(), counter.clone());
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(Some(n), Flaky(c), (), sup).await?;
                Ok(r.get_cell())
            })
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let args = Args {
            policy: policy(3),
            children: vec![(name.clone(), spawn)],
            reports: tx,
        };
        let (sup, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
        let wait = Duration::from_secs(5);
        for expected_starts in [2, 3] {
            let child: ActorRef<bool> = lookup(&name, wait).await.unwrap();
            child.cast(true).unwrap();
            let report = tokio::time::timeout(wait, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(report, Report::Restarted { .. }), "{report:?}");
            let deadline = Instant::now() + wait;
            while starts.load(std::sync::atomic::Ordering::SeqCst) < expected_starts {
                assert!(Instant::now() < deadline, "child not restarted");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let child: ActorRef<bool> = lookup(&name, wait).await.unwrap();
        child.cast(true).unwrap();
        let report = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(report, Report::GaveUp { failures: 3, .. }),
            "{report:?}"
        );
        sup.stop(None);
        handle.await.unwrap();
    }
}

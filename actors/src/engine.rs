//! State that lives on a dedicated compute thread and outlives actor restarts.
//!
//! The generator and the learner each own one: the model stays on its own OS
//! thread (burn never runs on tokio's workers), and a panic inside a job is
//! caught and returned as an error, so the thread and the state survive it.

use std::sync::{Arc, Mutex, MutexGuard};

use gradus_policy::device::ComputeThread;

/// `S` on its compute thread.
pub struct Engine<S> {
    thread: ComputeThread,
    state: Arc<Mutex<S>>,
}

impl<S: Send + 'static> Engine<S> {
    /// Starts the thread `name` with `threads` workers (0: one per core).
    pub fn new(name: &str, state: S, threads: usize) -> Result<Self, gradus_policy::Error> {
        Ok(Self {
            thread: ComputeThread::spawn(name, threads)?,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Runs `f` on the compute thread with the state and waits for it.
    pub fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let state = self.state.clone();
        self.thread
            .run(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    f(&mut state.lock().unwrap_or_else(|p| p.into_inner()))
                }))
                .unwrap_or_else(|_| Err("computation panicked".into()))
            })
            .map_err(|e| e.to_string())?
    }

    /// The state, from the calling thread (for cheap reads between jobs).
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

//! The gradus daemon's building blocks, used by the `gradus` binary
//! (`src/main.rs`, one CLI module per area in `src/cmd/`):
//!
//! - [`config`]: the run config, validated, with file:line errors.
//! - [`observer`]: where a run's reports go (run dir, metrics, /status, terminal).
//! - [`metrics`]: every Prometheus metric, declared in one place.
//! - [`http`]: `/metrics`, `/healthz` and `/status`.
//! - [`run_dir`]: the run directory (events, metrics history, rollouts, checkpoints).
//! - [`progress`]: the terminal progress display.
//! - [`synthetic`]: the built-in synthetic math and code curriculum.
//! - [`fuzz`]: fuzzers of the config (load and reload) and of the data loaders.

pub mod config;
pub mod fuzz;
pub mod http;
pub mod metrics;
pub mod observer;
pub mod progress;
pub mod run_dir;
pub mod synthetic;

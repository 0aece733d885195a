//! The sandbox as a service (feature `service`): the server of
//! `gradus sandbox serve` ([`server`]), SandboxFusion's `/run_code` protocol
//! ([`fusion`]), and the runtime's client that spreads jobs over many
//! services and the local pool ([`client`]).
//!
//! # Protocol (`/v1/jobs`)
//! `POST /v1/jobs` with one job of the schema `gradus sandbox batch` reads
//! (a JSON object) answers its outcome (the same object as a line of batch
//! output); a JSON array of jobs, or JSONL, answers an array (or JSONL) of
//! outcomes in order. A job id names one job: sent again, it gets the first
//! result and never runs twice while the result is kept; the same id with a
//! different job is an `invalid_job`.

pub mod client;
pub mod fusion;
pub mod http;
pub mod server;

pub use client::{Endpoint, Fleet, FleetConfig, HostEvent};
pub use server::{Service, ServiceConfig};

//! The daemon's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` and
//! `/status` (JSON snapshot of the run).
//!
//! The server binds loopback by default; binding port 0 picks a free port and
//! the caller learns the chosen address from [`Server::local_addr`] (the daemon
//! logs it and writes it to `RUN_DIR/http.addr`). Requests are handled by hyper's
//! HTTP/1 server on tokio; nothing here blocks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/status` reports: the run's position and health, refreshed by the
/// runtime after every batch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Name of the running stage.
    pub stage: String,
    /// Index of the running stage.
    pub stage_index: usize,
    /// Learner steps taken so far.
    pub step: u64,
    /// Version of the latest published policy.
    pub policy_version: u64,
    /// Windowed pass rate per `domain/bucket`.
    pub pass_rates: BTreeMap<String, f64>,
    /// Health per actor ("running", "restarting", "stopped").
    pub actors: BTreeMap<String, String>,
    /// Items waiting per queue.
    pub queues: BTreeMap<String, i64>,
    /// True once the run has finished its last stage or was asked to stop.
    pub finished: bool,
}

/// Shared, cheaply cloneable handle on the status snapshot.
pub type StatusBoard = Arc<RwLock<Status>>;

/// A running HTTP server.
pub struct Server {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves until dropped.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        status: StatusBoard,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP endpoint on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, metrics, status));
        Ok(Self { local_addr, task })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, status: StatusBoard) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &metrics, &status);
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that hangs up mid-request is its own problem, not the run's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    status: &StatusBoard,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/status" => {
            let snapshot = status.read().expect("status lock poisoned").clone();
            let body = serde_json::to_string_pretty(&snapshot).expect("status serialises");
            reply(StatusCode::OK, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /status\n".into(),
        ),
    }
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_status_on_a_free_port() {
        let metrics = Arc::new(Metrics::new());
        metrics.stage_index.set(2);
        let status = StatusBoard::default();
        status.write().unwrap().stage = "math-hard".into();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), metrics, status)
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("gradus_curriculum_stage_index 2"), "{m}");
        assert!(get(addr, "/healthz").await.ends_with("ok\n"));
        assert!(
            get(addr, "/status")
                .await
                .contains("\"stage\": \"math-hard\"")
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}

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

/// What clients may hold of the endpoint: a daemon that runs for days must
/// survive malformed requests, slow clients and connection floods.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; one past it is closed at accept.
    pub max_connections: usize,
    /// A request's headers must arrive within this; a slow client is cut off.
    pub header_read_timeout: std::time::Duration,
    /// Largest request head, bytes (a longer one is refused).
    pub max_header_bytes: usize,
    /// Longest a connection is served: then it is closed after its request
    /// in flight (a keep-alive scraper reconnects), and dropped if that does
    /// not finish within `header_read_timeout` (a client that stopped reading).
    pub max_connection_age: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Well under the usual soft fd limit (1,024), so a flood cannot
            // starve the daemon's checkpoints, logs and sandbox pipes of fds.
            max_connections: 256,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            max_connection_age: std::time::Duration::from_secs(120),
        }
    }
}

impl Server {
    /// Binds `addr` and serves until dropped, with the default [`Limits`].
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        status: StatusBoard,
    ) -> anyhow::Result<Self> {
        Self::start_with(addr, metrics, status, Limits::default()).await
    }

    /// [`Server::start`] with explicit limits.
    pub async fn start_with(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        status: StatusBoard,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP endpoint on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, metrics, status, limits));
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

async fn accept_loop(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    status: StatusBoard,
    limits: Limits,
) {
    serve_connections(listener, limits, move |req| {
        let response = respond(&req, &metrics, &status);
        async move { response }
    })
    .await
}

/// Serves HTTP/1 connections from `listener` with `handler`, within `limits`:
/// at most `max_connections` at once (one past it is closed at accept), slow
/// headers cut off, each connection closed after `max_connection_age` (its
/// request in flight finished first, within `header_read_timeout`). Runs
/// until the task is dropped.
pub async fn serve_connections<H, F>(listener: TcpListener, limits: Limits, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Out of fds (EMFILE) and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // At the cap the newcomer is closed at once; held connections time
        // out on their own, so the endpoint frees up.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            // A client that hangs up mid-request is its own problem, not the run's.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(limits.max_connection_age) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.header_read_timeout, conn).await;
                }
            }
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
            let snapshot = status.read().unwrap_or_else(|p| p.into_inner()).clone();
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

    /// Reads what the server sends until it closes, or `None` after `secs`.
    async fn read_all(s: &mut tokio::net::TcpStream, secs: f64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let wait = std::time::Duration::from_secs_f64(secs);
        match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
            Ok(_) => Some(out),
            Err(_) => None,
        }
    }

    /// Issue 18: malformed requests, a slow client and a flood of connections;
    /// the endpoint answers each with a status or closes it, within bounds, and
    /// goes on serving scrapes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_slow_and_flooding_clients_are_bounded_and_scrapes_go_on() {
        use rand::{Rng, SeedableRng};
        let limits = Limits {
            max_connections: 256,
            header_read_timeout: std::time::Duration::from_millis(300),
            max_header_bytes: 8 << 10,
            max_connection_age: std::time::Duration::from_secs(60),
        };
        let server = Server::start_with(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new()),
            StatusBoard::default(),
            limits,
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
        let mut inputs: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                (0..rng.random_range(1..400))
                    .map(|_| rng.random::<u8>())
                    .collect()
            })
            .collect();
        inputs.push(b"GET\r\n\r\n".to_vec());
        inputs.push(b"GET / HTTP/9.9\r\n\r\n".to_vec());
        inputs.push(
            b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        );
        inputs.push(
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64 << 10)).into_bytes(),
        );
        inputs.push(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(64 << 10)).into_bytes());
        let mut answered = 0;
        for mut bytes in inputs {
            bytes.extend_from_slice(b"\r\n\r\n");
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&bytes).await;
            // Each gets a status line or a close, never a hang.
            let out = read_all(&mut s, 5.0)
                .await
                .expect("the server neither answered nor closed");
            if out.starts_with(b"HTTP/1.1 ") {
                answered += 1;
            }
        }
        assert!(answered > 0, "no malformed request got a status");
        assert!(get(addr, "/healthz").await.ends_with("ok\n"));
        // A slow client (a header byte every 50 ms) is cut off.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        for b in b"GET /metrics HTTP/1.1\r\nHost: x".iter().cycle().take(40) {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let out = read_all(&mut slow, 5.0)
            .await
            .expect("the slow client was never cut off");
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A flood of 10,000 idle connections, past the cap of 256: the held
        // ones time out, the rest are closed at accept, and scrapes go on.
        let mut flood = Vec::new();
        for _ in 0..10_000 {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                flood.push(s);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        let mut closed = 0;
        for s in &mut flood {
            if let Some(out) = read_all(s, 0.05).await
                && (out.is_empty() || out.starts_with(b"HTTP/1.1 408"))
            {
                closed += 1;
            }
        }
        assert_eq!(closed, flood.len(), "idle connections still open");
        eprintln!("flood: {} of 10000 connected, all closed", flood.len());
    }

    /// Issue 18: a keep-alive client is served for at most the connection
    /// age, every response whole, then closed; a client that never reads
    /// what it asked for is dropped too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_closed_at_their_age_after_whole_responses() {
        let limits = Limits {
            max_connections: 8,
            header_read_timeout: std::time::Duration::from_millis(500),
            max_header_bytes: 8 << 10,
            max_connection_age: std::time::Duration::from_millis(700),
        };
        let status = StatusBoard::default();
        // A /status big enough that a client that never reads fills the
        // socket buffers and the server's write stalls.
        status.write().unwrap().stage = "s".repeat(8 << 20);
        let server = Server::start_with(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Metrics::new()),
            status,
            limits,
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        let started = std::time::Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answered = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            let n = match tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf))
                .await
            {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("no answer and no close"),
            };
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
                "{text}"
            );
            answered += 1;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let lived = started.elapsed();
        assert!(answered >= 5, "{answered} answers");
        assert!(
            lived >= std::time::Duration::from_millis(650)
                && lived < std::time::Duration::from_secs(3),
            "{lived:?}"
        );
        // Ask for 8 MB and never read it: dropped within age + drain.
        let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let mut total = 0usize;
        let drained = tokio::time::timeout(std::time::Duration::from_secs(3), async {
            loop {
                match stalled.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the stalled connection was never closed");
        assert!(total < 8 << 20, "the whole body arrived: {total} bytes");
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

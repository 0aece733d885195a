//! A small HTTP/1 client for JSON services over plain TCP: kept-alive
//! connections to one `HOST:PORT`, a bearer key, and a timeout per request.
//! The sandbox fleet talks to `gradus sandbox serve` through it, and the
//! runtime's generator to inference servers.

use std::sync::Mutex;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A 429's `Retry-After`, in seconds (RFC 9110's delay form; a date or
/// garbage reads as absent). Callers clamp it to what they will wait.
pub fn retry_after(headers: &hyper::HeaderMap) -> Option<f64> {
    headers
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
}

/// Kept-alive connections to one service.
pub struct Pool {
    authority: String,
    api_key: Option<String>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Pool {
    /// Connections to `authority` (`HOST:PORT`), sending `api_key` as a bearer token.
    pub fn new(authority: &str, api_key: Option<String>) -> Self {
        Self {
            authority: authority.to_string(),
            api_key,
            idle: Mutex::default(),
        }
    }

    /// `HOST:PORT`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Drops every kept connection (after the service failed).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A kept-alive connection (`true`), or a new one.
    async fn connection(&self) -> Result<(SendRequest<Full<Bytes>>, bool), String> {
        loop {
            let cached = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match cached {
                Some(mut c) if !c.is_closed() => {
                    if c.ready().await.is_ok() {
                        return Ok((c, true));
                    }
                }
                Some(_) => continue,
                None => break,
            }
        }
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.authority))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((send, false))
    }

    fn request(&self, method: &str, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(k) = &self.api_key {
            b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {k}"));
        }
        b.body(Full::new(body)).expect("valid request")
    }

    /// One request; the status, headers and body, or why it failed. A
    /// kept-alive connection the server has since closed fails before any
    /// answer: the request then goes once more on a new connection (so a
    /// request may reach the server twice; callers make that harmless).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        let fut = async {
            let mut fresh_tried = false;
            let (resp, conn) = loop {
                let (mut conn, reused) = self.connection().await?;
                match conn
                    .send_request(self.request(method, path, body.clone()))
                    .await
                {
                    Ok(resp) => break (resp, conn),
                    Err(_) if reused && !fresh_tried => {
                        // Every kept connection may be as stale: drop them.
                        fresh_tried = true;
                        self.clear();
                    }
                    Err(e) => return Err(format!("{} {path}: {e}", self.authority)),
                }
            };
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| format!("{} {path}: reading the answer: {e}", self.authority))?
                .to_bytes();
            let closing = parts
                .headers
                .get(hyper::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if !closing {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            Ok((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| format!("{} {path}: no answer within {timeout:?}", self.authority))?
    }
}

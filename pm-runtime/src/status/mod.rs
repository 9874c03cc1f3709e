//! The status endpoint: a small HTTP server, opt-in, that shows what the manager runs.
//!
//! - `GET /metrics`: [`ProcessManager::metrics_text`], for Prometheus to scrape.
//! - `GET /status`: JSON: the manager's health and every process and pool with state, pid,
//!   restarts, health (from the latest checks) and metrics (cpu, memory, calls, errors,
//!   latency, per method).
//! - `GET /`: a self-contained HTML page (no external assets) that reads `/status` every two
//!   seconds and shows processes and pools: state, health, restarts, calls/s, p99, cpu and
//!   memory.
//!
//! A connection whose peer stops reading for 10 s is closed, as is one that sends no request
//! head for 10 s. It binds loopback unless told otherwise. A token, when set, must come with every request,
//! as `Authorization: Bearer <token>` or as `?token=<token>` (the page passes its own on);
//! bound anywhere but loopback it always has one: one is generated when none is given.

mod query;
mod snapshot;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pm_core::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::manager::WeakManager;
use crate::token::Token;
use crate::ProcessManager;
use pm_transport::WriteDeadline;
use snapshot::Snapshot;

/// The page `GET /` serves.
const PAGE: &str = include_str!("page.html");
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// How long a write may wait for a status client to read.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// Where and how the status endpoint listens.
///
/// ```
/// use pm_runtime::StatusOptions;
///
/// let local = StatusOptions::default(); // 127.0.0.1, a free port, no token
/// let shared = StatusOptions {
///     address: "0.0.0.0:9464".parse().expect("an address"),
///     token: Some("a-long-random-secret".into()),
/// };
/// # let _ = (local, shared);
/// ```
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The address to bind. Default: `127.0.0.1:0` (loopback, a free port).
    pub address: SocketAddr,
    /// The token requests must present (at least 16 characters). Default: none on loopback;
    /// bound elsewhere without one, a random token is generated (see [`StatusServer::token`]).
    pub token: Option<String>,
}

impl Default for StatusOptions {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
        }
    }
}

/// A running status endpoint, from [`ProcessManager::serve_status`]. It serves until
/// [`StatusServer::shutdown`] or until it is dropped; it does not keep the manager alive
/// (once the manager is dropped, requests are answered 503).
#[derive(Debug)]
pub struct StatusServer {
    address: SocketAddr,
    token: Option<Token>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusServer {
    /// The address it listens on (with the port the OS chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The token requests must present, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(Token::as_str)
    }

    /// The page's address, with the token in the query when there is one: what to open in a
    /// browser.
    pub fn url(&self) -> String {
        match self.token() {
            Some(token) => format!("http://{}/?token={}", self.address, query::encode(token)),
            None => format!("http://{}/", self.address),
        }
    }

    /// Stops listening and ends every connection (they belong to the listening task, so
    /// they end with it).
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProcessManager {
    /// Starts the status endpoint (`/metrics`, `/status`, `/`) on `options.address`.
    ///
    /// # Errors
    /// [`Error::Config`] for a token shorter than 16 characters, [`Error::Transport`] when
    /// the address cannot be bound or no token can be generated.
    pub async fn serve_status(&self, options: StatusOptions) -> Result<StatusServer, Error> {
        let token = match options.token {
            Some(token) if token.len() < 16 => {
                return Err(Error::Config(
                    "the status token must be at least 16 characters".into(),
                ))
            }
            Some(token) => Some(Token::from_string(token)),
            None if options.address.ip().is_loopback() => None,
            None => Some(Token::generate().map_err(|err| {
                Error::Transport(format!("cannot generate a status token: {err}"))
            })?),
        };
        let listener = TcpListener::bind(options.address).await.map_err(|err| {
            Error::Transport(format!(
                "cannot bind the status endpoint to {}: {err}",
                options.address
            ))
        })?;
        let address = listener
            .local_addr()
            .map_err(|err| Error::Transport(format!("status endpoint: {err}")))?;
        let shared = Arc::new(Shared {
            manager: self.downgrade(),
            token: token.clone(),
        });
        tracing::info!(%address, token = token.is_some(), "status endpoint listening");
        let task = tokio::spawn(accept(listener, shared));
        Ok(StatusServer {
            address,
            token,
            task,
        })
    }
}

struct Shared {
    manager: WeakManager,
    token: Option<Token>,
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(stream, peer, shared.clone()));
                    }
                    Err(err) => {
                        tracing::warn!(%err, "status endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&req, peer, &shared)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, WRITE_STALL)),
            service,
        )
        .await;
    if let Err(err) = served {
        tracing::debug!(%err, %peer, "status connection ended with an error");
    }
}

/// The token a request presents: the bearer header (the scheme matched in any case), or the
/// `token` query parameter (percent-decoded).
fn presented(req: &Request<Incoming>) -> Option<String> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    bearer.or_else(|| {
        req.uri()
            .query()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(query::decode)
    })
}

fn respond(req: &Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<Full<Bytes>> {
    if let Some(token) = &shared.token {
        if !presented(req).is_some_and(|given| token.matches(&given)) {
            tracing::warn!(%peer, path = req.uri().path(), "status request without a valid token refused");
            let mut response = text(StatusCode::UNAUTHORIZED, "a valid token is required\n");
            let headers = response.headers_mut();
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            // A client without the token gets one answer per connection, so it cannot hold a
            // connection open by piling up requests it never reads the answers to.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = req.uri().path();
    if !matches!(path, "/" | "/status" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /, /status or /metrics\n",
        );
    }
    let Some(pm) = shared.manager.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "the manager is gone\n");
    };
    match path {
        "/metrics" => body(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            pm.metrics_text(),
        ),
        "/status" => match serde_json::to_string(&Snapshot::take(&pm)) {
            Ok(json) => body(StatusCode::OK, "application/json", json),
            Err(err) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the status did not encode: {err}\n"),
            ),
        },
        _ => {
            let mut response = body(StatusCode::OK, "text/html; charset=utf-8", PAGE.to_owned());
            // Everything the page needs is inline; it may only talk back to this server.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; \
                     style-src 'unsafe-inline'; connect-src 'self'",
                ),
            );
            response
        }
    }
}

fn body(status: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", message.to_owned())
}

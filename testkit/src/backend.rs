//! A site backend: answers any request with 200 and JSON naming its site and region, echoing
//! the residency headers it received. `/sse` streams server-sent events, `/ws` echoes WebSocket
//! messages, `/healthz` answers active checks. The tests run several of these as real sites.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

#[derive(Clone)]
struct Identity {
    addr: SocketAddr,
    site: &'static str,
    region: &'static str,
    requests: Arc<AtomicU64>,
    /// TLS handshakes that failed (a client that refused this backend's certificate, or was
    /// refused for lacking one).
    failed_handshakes: Arc<AtomicU64>,
    /// Added before every echo answer (ms); lets tests make a site slow.
    delay_ms: Arc<AtomicU64>,
    /// Status of every echo answer (tests make a bad deploy answer 502).
    status: Arc<AtomicU16>,
    /// Status of `GET /healthz` (tests fail active checks with 503).
    health_status: Arc<AtomicU16>,
}

pub struct SiteBackend {
    identity: Identity,
    addr: SocketAddr,
    /// Accept loop and connection tasks; aborting them closes every socket (a "killed" site).
    tasks: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl SiteBackend {
    /// Starts on an OS-chosen loopback port.
    pub async fn start(site: &'static str, region: &'static str) -> std::io::Result<Self> {
        Self::start_with_tls(site, region, None).await
    }

    /// Starts on an OS-chosen loopback port, speaking TLS with `tls` when given.
    pub async fn start_with_tls(
        site: &'static str,
        region: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let identity = Identity {
            addr,
            site,
            region,
            requests: Arc::new(AtomicU64::new(0)),
            failed_handshakes: Arc::new(AtomicU64::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            status: Arc::new(AtomicU16::new(200)),
            health_status: Arc::new(AtomicU16::new(200)),
        };
        let app = Router::new()
            .route("/sse", get(sse))
            .route("/trailers", get(trailers))
            .route("/ws", get(ws))
            .route("/healthz", get(healthz))
            .fallback(echo)
            .with_state(identity.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let failed_handshakes = Arc::clone(&identity.failed_handshakes);
        tokio::spawn(async move {
            let mut connections = JoinSet::new();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let service = TowerToHyperService::new(app.clone());
                        let tls = tls.clone();
                        let failed_handshakes = Arc::clone(&failed_handshakes);
                        connections.spawn(async move {
                            let builder = auto::Builder::new(TokioExecutor::new());
                            let _ = match tls {
                                None => {
                                    builder
                                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                        .await
                                }
                                Some(acceptor) => {
                                    let Ok(stream) = acceptor.accept(stream).await else {
                                        failed_handshakes.fetch_add(1, Ordering::SeqCst);
                                        return;
                                    };
                                    builder
                                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                        .await
                                }
                            };
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            // Every connection is closed before the listener: once connecting is refused, no
            // request can reach this backend any more.
            connections.shutdown().await;
        });
        Ok(SiteBackend {
            identity,
            addr,
            tasks: std::sync::Mutex::new(Some(stop)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn site(&self) -> &'static str {
        self.identity.site
    }

    pub fn region(&self) -> &'static str {
        self.identity.region
    }

    /// Requests this backend has answered (WebSocket and SSE included).
    pub fn requests(&self) -> u64 {
        self.identity.requests.load(Ordering::SeqCst)
    }

    /// TLS handshakes with this backend that failed.
    pub fn failed_handshakes(&self) -> u64 {
        self.identity.failed_handshakes.load(Ordering::SeqCst)
    }

    /// Delays every later echo answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.identity
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every later echo answer gets this status.
    pub fn set_status(&self, status: u16) {
        self.identity.status.store(status, Ordering::SeqCst);
    }

    /// `GET /healthz` answers with this status from now on.
    pub fn set_health_status(&self, status: u16) {
        self.identity.health_status.store(status, Ordering::SeqCst);
    }

    /// Stops accepting and closes every open connection, like a crashed site.
    pub fn kill(&self) {
        if let Some(stop) = self.tasks.lock().expect("not poisoned").take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for SiteBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn echo(
    State(id): State<Identity>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    id.requests.fetch_add(1, Ordering::SeqCst);
    let delay = id.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let echoed: BTreeMap<&str, &str> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-residency-")
                || matches!(
                    name,
                    "x-request-id"
                        | "x-forwarded-for"
                        | "x-forwarded-proto"
                        | "x-forwarded-host"
                        | "host"
                )
        })
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("<binary>")))
        .collect();
    let status = StatusCode::from_u16(id.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let body = Json(serde_json::json!({
        "site": id.site,
        "region": id.region,
        "backend": id.addr.to_string(),
        "method": method.as_str(),
        "http_version": format!("{version:?}"),
        "path": uri.path_and_query().map_or("/", |p| p.as_str()),
        "body_bytes": body.len(),
        "headers": echoed,
        "header_names": headers.keys().map(|name| name.as_str()).collect::<Vec<_>>(),
    }));
    (status, body)
}

/// `GET /trailers`: a small body followed by the trailers `x-kept: yes` and
/// `x-residency-region: eu` (which the router must not pass on), for HTTP/2 callers.
async fn trailers(State(id): State<Identity>) -> axum::response::Response {
    id.requests.fetch_add(1, Ordering::SeqCst);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-kept", axum::http::HeaderValue::from_static("yes"));
    trailers.insert(
        "x-residency-region",
        axum::http::HeaderValue::from_static("eu"),
    );
    let frames = stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(axum::body::Bytes::from_static(
            id.site.as_bytes(),
        ))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    axum::response::Response::new(axum::body::Body::new(http_body_util::StreamBody::new(
        frames,
    )))
}

/// Health endpoint for active checks; not counted as traffic. Like nginx, it refuses an
/// HTTP/1.1 request without Host.
async fn healthz(State(id): State<Identity>, headers: HeaderMap) -> StatusCode {
    if !headers.contains_key("host") {
        return StatusCode::BAD_REQUEST;
    }
    StatusCode::from_u16(id.health_status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

#[derive(Deserialize)]
struct SseParams {
    n: Option<u32>,
    ms: Option<u64>,
}

async fn sse(
    State(id): State<Identity>,
    Query(params): Query<SseParams>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    id.requests.fetch_add(1, Ordering::SeqCst);
    let n = params.n.unwrap_or(3);
    let gap = Duration::from_millis(params.ms.unwrap_or(200));
    let site = id.site;
    Sse::new(stream::iter(0..n).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Ok(Event::default().data(format!("{site} event {i}")))
    }))
}

async fn ws(State(id): State<Identity>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    id.requests.fetch_add(1, Ordering::SeqCst);
    let site = id.site;
    upgrade.on_upgrade(move |socket| echo_socket(socket, site))
}

async fn echo_socket(mut socket: WebSocket, site: &'static str) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(format!("{site}: {}", text.as_str()).into()),
            Message::Binary(data) => Message::Binary(data),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

//! What one client may hold of the router (issue 14): `[proxy]` client limits.
//!
//! Pingora bounds each read of a request head, not the whole head, and once a request head
//! is read it waits for the next one on a keep-alive connection without any timeout. So an
//! idle socket, or one trickling a large head a byte at a time, would be held forever. This
//! layer sits between the listener and Pingora's HTTP/1 engine, as nginx's
//! `client_header_timeout`, `keepalive_timeout`, `keepalive_requests` and Envoy's connection
//! limit do:
//!
//! - it admits at most `max_client_connections` connections, refusing the rest with 503;
//! - for HTTP/1.x it reads each request head itself, bounded in time from the connection's
//!   accept (first request) or from the first byte of a later one, and in size, then hands
//!   the bytes to Pingora, which parses them again without another read;
//! - between requests it waits at most `client_keepalive_timeout_ms` for the next one, and
//!   closes idle connections when the router starts draining.
//!
//! HTTP/2 connections go to Pingora whole: they are admitted and counted here, and closed by
//! Pingora's own idle timeout (`client_h2_idle_timeout_ms`).
//!
//! Which bytes make a complete head is decided by [`judge_head`], pure and tested alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::request_id::RequestIds;
use crate::respond::ErrorCode;
use crate::state::SharedState;

/// The most headers Pingora's HTTP/1 parser accepts (its `MAX_HEADERS`): judging a head with
/// fewer would call a head complete that Pingora still reads on.
const PINGORA_MAX_HEADERS: usize = 256;

/// The 24-byte HTTP/2 connection preface (RFC 9113 3.4), for h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the bytes received so far say about a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// More bytes are needed.
    Partial,
    /// The head is complete: Pingora parses these bytes (and escapes what it can escape).
    Complete,
    /// The head is complete and no HTTP/1 parser reads it: 400 `bad_request`.
    Malformed,
    /// More than `max_head_bytes` without an end: 431.
    TooLarge,
}

/// Judges `buf`, the bytes of a request head received so far (possibly followed by body
/// bytes), against a size limit.
pub(crate) fn judge_head(buf: &[u8], max_head_bytes: usize) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; PINGORA_MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let ended = || find_head_end(buf).filter(|end| *end <= max_head_bytes);
    let too_large = buf.len() > max_head_bytes;
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head_bytes => Head::Complete,
        Ok(httparse::Status::Complete(_)) => Head::TooLarge,
        Ok(httparse::Status::Partial) if too_large => Head::TooLarge,
        Ok(httparse::Status::Partial) => Head::Partial,
        // Pingora percent-escapes request lines with illegal bytes and parses them again:
        // those heads are its to judge, once they are whole.
        Err(httparse::Error::Token | httparse::Error::Version) => match ended() {
            Some(_) => Head::Complete,
            None if too_large => Head::TooLarge,
            None => Head::Partial,
        },
        Err(_) => match ended() {
            Some(_) => Head::Malformed,
            None if too_large => Head::TooLarge,
            None => Head::Partial,
        },
    }
}

/// Where the blank line ending a head ends (httparse also accepts a bare LF line end).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).enumerate().find_map(|(i, w)| match w {
        b"\n\n" => Some(i + 2),
        b"\n\r" if buf.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// Client connections open now, against `proxy.max_client_connections`.
#[derive(Default)]
pub(crate) struct OpenConnections(AtomicUsize);

/// One admitted connection; its slot is released when it drops.
pub(crate) struct Slot<'a>(&'a OpenConnections);

impl OpenConnections {
    /// A slot if fewer than `max` connections are open.
    pub(crate) fn admit(&self, max: usize) -> Option<Slot<'_>> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self))
    }

    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Pingora's HTTP application behind the client limits.
pub struct ClientLimited<A> {
    app: Arc<A>,
    state: SharedState,
    open: OpenConnections,
    /// The plain listener also takes HTTP/2 with prior knowledge (`listen.h2c`).
    h2c: bool,
    metrics: Arc<Metrics>,
    ids: Arc<RequestIds>,
}

impl<A> ClientLimited<A> {
    pub fn new(
        app: A,
        state: SharedState,
        h2c: bool,
        metrics: Arc<Metrics>,
        ids: Arc<RequestIds>,
    ) -> Self {
        ClientLimited {
            app: Arc::new(app),
            state,
            open: OpenConnections::default(),
            h2c,
            metrics,
            ids,
        }
    }
}

/// Why the router cut a request before Pingora saw it (`residency_client_requests_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    HeaderTimeout,
    HeadTooLarge,
    MalformedHead,
}

impl Cut {
    pub(crate) const ALL: [Cut; 3] = [Cut::HeaderTimeout, Cut::HeadTooLarge, Cut::MalformedHead];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::HeadTooLarge => "head_too_large",
            Cut::MalformedHead => "malformed_head",
        }
    }

    fn code(self) -> ErrorCode {
        match self {
            Cut::HeaderTimeout => ErrorCode::RequestTimeout,
            Cut::HeadTooLarge => ErrorCode::HeadTooLarge,
            Cut::MalformedHead => ErrorCode::Block(regions::BlockCode::BadRequest),
        }
    }
}

/// How reading one request head ended.
enum HeadRead {
    /// `buf` holds a complete head (and maybe the start of its body).
    Complete,
    /// The client closed, went idle past the keep-alive timeout, or the router is draining.
    Gone,
    Cut(Cut),
}

#[async_trait]
impl<A> ServerApp for ClientLimited<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.state.load().snapshot.proxy.client;
        let Some(_slot) = self.open.admit(limits.max_connections) else {
            self.metrics.client_connection_refused();
            if stream.selected_alpn_proto() != Some(ALPN::H2) {
                let body = refusal(ErrorCode::TooManyConnections, &self.ids);
                finish_with(&mut stream, &body).await;
            }
            return None;
        };
        self.metrics
            .client_connections
            .set(self.open.count() as i64);
        let http2 = match stream.selected_alpn_proto() {
            Some(ALPN::H2) => true,
            _ if self.h2c && stream.get_ssl_digest().is_none() => {
                starts_with_h2_preface(&mut stream, limits.header_timeout).await
            }
            _ => false,
        };
        if http2 {
            ServerApp::process_new(&self.app, stream, shutdown).await;
        } else {
            self.serve_http1(stream, shutdown).await;
        }
        drop(_slot);
        self.metrics
            .client_connections
            .set(self.open.count() as i64);
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.app.as_ref()).await;
    }
}

impl<A> ClientLimited<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Pingora's HTTP/1 keep-alive loop, with the head of every request read here first.
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let mut persisted: Option<HttpPersistentSettings> = None;
        let mut first = true;
        // The first head counts from the accept, as nginx's client_header_timeout does.
        let mut head_began = Instant::now();
        loop {
            // Live values: a reload applies to the next request of an open connection.
            let limits = self.state.load().snapshot.proxy.client;
            let mut head = BytesMut::with_capacity(4096);
            if !first {
                match next_request_begins(
                    &mut stream,
                    &mut head,
                    limits.keepalive_timeout,
                    shutdown,
                )
                .await
                {
                    Some(began) => head_began = began,
                    None => return,
                }
            }
            let deadline = head_began + limits.header_timeout;
            match read_head(&mut stream, &mut head, deadline, limits.max_head_bytes).await {
                HeadRead::Complete => {}
                HeadRead::Gone => return,
                HeadRead::Cut(cut) => {
                    self.metrics.client_request_cut(cut);
                    finish_with(&mut stream, &refusal(cut.code(), &self.ids)).await;
                    return;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match persisted.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    // Pingora counts reuses: N requests on a connection are N - 1 reuses.
                    session.set_keepalive_reuses_remaining(Some(
                        limits.max_requests_per_connection.saturating_sub(1),
                    ));
                    session.set_keepalive(Some(limits.keepalive_timeout.as_secs().max(1)));
                }
            }
            if limits.keepalive_timeout.is_zero() || *shutdown.borrow() {
                session.set_keepalive(None);
            }
            if let ServerSession::H1(h1) = &mut session {
                h1.set_pipelined_prefix(head);
            }
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            (stream, persisted) = reused.consume();
            first = false;
        }
    }
}

/// Waits for the first byte of the next request on a keep-alive connection; `None` when the
/// connection closed, stayed idle past `keepalive`, or the router started draining.
async fn next_request_begins(
    stream: &mut Stream,
    head: &mut BytesMut,
    keepalive: Duration,
    shutdown: &ShutdownWatch,
) -> Option<Instant> {
    if *shutdown.borrow() {
        return None;
    }
    let mut shutdown = shutdown.clone();
    tokio::select! {
        read = tokio::time::timeout(keepalive, stream.read_buf(head)) => match read {
            Ok(Ok(n)) if n > 0 => Some(Instant::now()),
            _ => None,
        },
        // A closed watch means the server is going away too.
        _ = shutdown.changed() => None,
    }
}

/// Reads until `head` holds a whole request head, the deadline passes or the head grows past
/// `max_head_bytes`.
async fn read_head(
    stream: &mut Stream,
    head: &mut BytesMut,
    deadline: Instant,
    max_head_bytes: usize,
) -> HeadRead {
    loop {
        if !head.is_empty() {
            match judge_head(head, max_head_bytes) {
                Head::Complete => return HeadRead::Complete,
                Head::Malformed => return HeadRead::Cut(Cut::MalformedHead),
                Head::TooLarge => return HeadRead::Cut(Cut::HeadTooLarge),
                Head::Partial => {}
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(head)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed before a whole head: nothing to answer.
            Ok(_) => return HeadRead::Gone,
            // Silence from the start is an idle connection, not a slow request.
            Err(_) if head.is_empty() => return HeadRead::Gone,
            Err(_) => return HeadRead::Cut(Cut::HeaderTimeout),
        }
    }
}

/// Whether the connection opens with the HTTP/2 preface. Pingora waits for it untimed; here
/// the wait ends at the header timeout, after which the bytes are read as HTTP/1.
async fn starts_with_h2_preface(stream: &mut Stream, wait: Duration) -> bool {
    let mut preface = [0u8; H2_PREFACE.len()];
    matches!(
        tokio::time::timeout(wait, stream.try_peek(&mut preface)).await,
        Ok(Ok(true)) if preface == H2_PREFACE
    )
}

/// A complete HTTP/1.1 error response in the router's JSON shape, closing the connection.
fn refusal(code: ErrorCode, ids: &RequestIds) -> Vec<u8> {
    let request_id = ids.for_request(None);
    let body = crate::respond::ErrorBody {
        error: code.as_str(),
        message: code.message(),
        tenant: None,
        home_region: None,
        requested_region: None,
        request_id: request_id.as_str(),
    };
    let json = serde_json::to_vec(&body).expect("error bodies always serialize");
    let status = http::StatusCode::from_u16(code.status()).expect("router statuses are valid");
    let retry_after = if code == ErrorCode::TooManyConnections {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-request-id: {}\r\n{retry_after}connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        json.len(),
        request_id.as_str(),
    )
    .into_bytes();
    response.extend_from_slice(&json);
    response
}

/// Writes `response` and closes the connection, reading (and dropping) what the client still
/// sends for a moment, as nginx's lingering close does: closing with unread bytes would reset
/// the connection, and the client could lose the answer.
async fn finish_with(stream: &mut Stream, response: &[u8]) {
    const LINGER: Duration = Duration::from_millis(500);
    const LINGER_BYTES: usize = 256 * 1024;
    let written = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 200;

    #[test]
    fn heads_are_judged_as_pingora_will_read_them() {
        let long_value = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX));
        for (bytes, head) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], Head::Complete),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody bytes",
                Head::Complete,
            ),
            (b"GET / HTTP/1.1\nHost: a\n\n", Head::Complete),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", Head::Partial),
            (b"GET / HTTP/1.1\r\nHo", Head::Partial),
            (b"G", Head::Partial),
            // A request line Pingora may escape is its to judge once whole.
            (b"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", Head::Complete),
            (b"GET /a\"b HTTP/1.1\r\nHost: a\r\n", Head::Partial),
            // Heads no parser reads: a space before the colon, a NUL, a bare CR.
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Head::Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", Head::Malformed),
            (b"GET / HTTP/1.1\r\nHost: a\rb: c\r\n\r\n", Head::Malformed),
            // ... judged only once whole, so the answer is not lost to a reset.
            (b"GET / HTTP/1.1\r\nHost : a\r\n", Head::Partial),
            (long_value.as_bytes(), Head::TooLarge),
        ] {
            assert_eq!(
                judge_head(bytes, MAX),
                head,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let complete_but_large = format!("{long_value}\r\n");
        assert_eq!(
            judge_head(complete_but_large.as_bytes(), MAX),
            Head::TooLarge
        );
        let headers: String = (0..PINGORA_MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\n{headers}\r\n");
        assert_eq!(judge_head(many.as_bytes(), 1 << 20), Head::Malformed);
    }

    #[test]
    fn connections_past_the_cap_are_refused_and_slots_come_back() {
        let open = OpenConnections::default();
        let first = open.admit(2).unwrap();
        let second = open.admit(2).unwrap();
        assert!(open.admit(2).is_none());
        assert_eq!(open.count(), 2);
        drop(first);
        let third = open.admit(2).unwrap();
        assert!(open.admit(2).is_none());
        drop((second, third));
        assert_eq!(open.count(), 0);
    }

    #[test]
    fn refusals_are_complete_json_responses() {
        let response =
            String::from_utf8(refusal(ErrorCode::RequestTimeout, &RequestIds::default())).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "request_timeout");
        assert!(head.contains(json["request_id"].as_str().unwrap()));
        let busy = String::from_utf8(refusal(
            ErrorCode::TooManyConnections,
            &RequestIds::default(),
        ))
        .unwrap();
        assert!(busy.starts_with("HTTP/1.1 503 "));
        assert!(busy.contains("retry-after: 1\r\n"));
    }
}

//! The access log: one JSON line per request, the residency audit trail. It must be possible
//! to prove afterwards where each request went: tenant, home region, served region, site and
//! backend, the decision or block code, and the configuration generation that made it.
//!
//! Requests never wait for it: they push a small record onto a bounded lock-free queue and
//! move on. When the queue is full the record is dropped and counted
//! (`residency_access_log_dropped_total`). A writer thread resolves names and writes.
//!
//! The writer is not woken per record: it drains the queue every [`WRITE_INTERVAL`], or as
//! soon as the queue is half full. Waking it per record cost a futex call and a context switch
//! per request, a fifth of the proxy's CPU time when both shared a core.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use prometheus::IntCounter;

use regions::{RegionId, SiteId, TenantId};
use residency_config::AccessLogSettings;

use crate::state::RouterState;

/// One request, as the request path hands it over: ids, not names.
pub struct Record {
    pub unix_ms: u64,
    pub state: Arc<RouterState>,
    pub request_id: crate::request_id::RequestId,
    pub method: http::Method,
    pub tenant: Option<TenantId>,
    pub home_region: Option<RegionId>,
    pub served: Option<(RegionId, SiteId)>,
    pub backend: Option<SocketAddr>,
    /// `routed`, or the error code of the router's own answer.
    pub outcome: &'static str,
    pub status: u16,
    pub attempts: usize,
    pub duration_us: u64,
    pub bytes_sent: usize,
}

/// One line of the log. Serde's encoding of it (in the tests) is the reference that
/// [`Line::write_json`] is checked against.
#[cfg_attr(test, derive(serde::Serialize))]
struct Line<'a> {
    time_ms: u64,
    request_id: &'a str,
    method: &'a str,
    tenant: Option<&'a str>,
    home_region: Option<&'a str>,
    served_region: Option<&'a str>,
    site: Option<&'a str>,
    backend: Option<&'a SocketAddr>,
    outcome: &'a str,
    status: u16,
    attempts: usize,
    duration_us: u64,
    bytes_sent: usize,
    config_generation: u64,
}

/// How long a record may wait in the queue before it is written.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(20);

struct Queue {
    records: ArrayQueue<Record>,
    closed: AtomicBool,
}

/// The request path's handle.
pub struct AccessLog {
    queue: Arc<Queue>,
    writer: Thread,
    /// `residency_access_log_dropped_total`.
    dropped: IntCounter,
}

/// The writer thread's owner, which stops it.
pub struct AccessLogWriter {
    queue: Arc<Queue>,
    thread: JoinHandle<()>,
}

/// How long shutdown waits for the writer to write what is queued. A writer stuck on its file
/// (a FIFO nobody reads, a dead network mount) must not keep the process from exiting.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl AccessLog {
    /// Starts the writer thread. The file is opened there: opening can block (a FIFO
    /// without a reader, a slow network mount), and neither start-up nor requests may wait.
    pub fn start(
        settings: &AccessLogSettings,
        dropped: IntCounter,
    ) -> std::io::Result<(AccessLog, AccessLogWriter)> {
        let queue = Arc::new(Queue {
            records: ArrayQueue::new(settings.buffer_records),
            closed: AtomicBool::new(false),
        });
        let records = Arc::clone(&queue);
        let file = settings.file.clone();
        let dropped_by_writer = dropped.clone();
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let out: Option<Box<dyn std::io::Write + Send>> = match &file {
                    None => Some(Box::new(std::io::stdout())),
                    Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                        Ok(f) => Some(Box::new(f)),
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot open the access log; records are dropped");
                            None
                        }
                    },
                };
                write_all(&records, out, &dropped_by_writer);
            })?;
        let log = AccessLog {
            queue: Arc::clone(&queue),
            writer: handle.thread().clone(),
            dropped,
        };
        Ok((
            log,
            AccessLogWriter {
                queue,
                thread: handle,
            },
        ))
    }

    /// Never blocks: a full queue, or a closed log, drops the record and counts it.
    pub fn record(&self, record: Record) {
        let records = &self.queue.records;
        if self.queue.closed.load(Ordering::Relaxed) || records.push(record).is_err() {
            self.dropped.inc();
        } else if records.len() >= records.capacity() / 2 {
            // A burst: write now rather than at the next interval, before the queue fills.
            // (Unparking a running thread is one atomic operation.)
            self.writer.unpark();
        }
    }
}

impl AccessLogWriter {
    /// Writes what is queued and stops the writer, waiting at most [`CLOSE_WAIT`].
    pub fn close(self) {
        self.queue.closed.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while !self.thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    "the access log writer did not finish in time; queued records may be lost"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Line<'_> {
    /// The line as one JSON object and a newline, the fields in declaration order, `None` as
    /// `null`. Written by hand: serde_json's generic path (every key escaped, the address
    /// through `Display`) cost the writer thread about 6,000 instructions a record, and the
    /// writer shares the proxy's core (docs/performance.md).
    fn write_json(&self, buf: &mut Vec<u8>) {
        let mut fields = JsonObject::new(buf);
        fields.number("time_ms", self.time_ms);
        fields.string("request_id", Some(self.request_id));
        fields.string("method", Some(self.method));
        fields.string("tenant", self.tenant);
        fields.string("home_region", self.home_region);
        fields.string("served_region", self.served_region);
        fields.string("site", self.site);
        fields.address("backend", self.backend);
        fields.string("outcome", Some(self.outcome));
        fields.number("status", u64::from(self.status));
        fields.number("attempts", self.attempts as u64);
        fields.number("duration_us", self.duration_us);
        fields.number("bytes_sent", self.bytes_sent as u64);
        fields.number("config_generation", self.config_generation);
        fields.end();
    }
}

/// Writes one JSON object's fields; keys are the constant names above, so never escaped.
struct JsonObject<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> JsonObject<'b> {
    fn new(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        JsonObject { buf, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn string(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            None => self.buf.extend_from_slice(b"null"),
            // Names, ids, methods and codes are plain ASCII: copied as they are.
            Some(v)
                if v.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
            {
                self.buf.push(b'"');
                self.buf.extend_from_slice(v.as_bytes());
                self.buf.push(b'"');
            }
            // Anything else is escaped by serde_json, so there is one JSON string encoder.
            Some(v) => serde_json::to_writer(&mut *self.buf, v).expect("writing to a Vec"),
        }
    }

    fn address(&mut self, key: &str, value: Option<&SocketAddr>) {
        let mut text = [0u8; 64];
        let text = value.map(|addr| crate::addr_text::socket_addr_text(*addr, &mut text));
        self.string(key, text);
    }

    fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

/// Writes records until closed; with no `out` (the file could not be opened), counts each
/// as dropped.
fn write_all(queue: &Queue, out: Option<Box<dyn std::io::Write + Send>>, dropped: &IntCounter) {
    let mut out = out.map(std::io::BufWriter::new);
    let mut buf = Vec::with_capacity(512);
    loop {
        let closing = queue.closed.load(Ordering::Acquire);
        let mut wrote = false;
        // Write what is queued, then flush once: records reach the file within one batch.
        while let Some(record) = queue.records.pop() {
            wrote = true;
            let topology = &record.state.snapshot.topology;
            let region = |r: RegionId| topology.region(r).name.as_str();
            let line = Line {
                time_ms: record.unix_ms,
                request_id: record.request_id.as_str(),
                method: record.method.as_str(),
                tenant: record.tenant.as_ref().map(TenantId::as_str),
                home_region: record.home_region.map(region),
                served_region: record.served.map(|(r, _)| region(r)),
                site: record.served.map(|(_, s)| topology.site(s).name.as_str()),
                backend: record.backend.as_ref(),
                outcome: record.outcome,
                status: record.status,
                attempts: record.attempts,
                duration_us: record.duration_us,
                bytes_sent: record.bytes_sent,
                config_generation: record.state.generation,
            };
            buf.clear();
            line.write_json(&mut buf);
            let written = out.as_mut().is_some_and(|out| out.write_all(&buf).is_ok());
            if !written {
                dropped.inc();
            }
        }
        if let Some(out) = out.as_mut().filter(|_| wrote) {
            if let Err(e) = out.flush() {
                tracing::error!(error = %e, "cannot write the access log");
            }
        }
        if closing {
            return;
        }
        std::thread::park_timeout(WRITE_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Plain names, and strings that need escaping: quotes, backslashes, controls, non-ASCII.
        prop_oneof![
            "[a-z0-9-]{0,12}",
            any::<String>(),
            "[\"\\\\\\x00-\\x1f\\x7f é]{0,6}"
        ]
    }

    proptest! {
        /// The hand-written line is the JSON serde_json writes for the same fields.
        #[test]
        fn line_is_what_serde_writes(
            numbers in any::<(u64, u16, usize, u64, usize, u64)>(),
            strings in (text(), text(), text(), text()),
            optional in (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text())),
            backend in proptest::option::of(any::<SocketAddr>()),
        ) {
            let (time_ms, status, attempts, duration_us, bytes_sent, config_generation) = numbers;
            let line = Line {
                time_ms,
                request_id: &strings.0,
                method: &strings.1,
                tenant: optional.0.as_deref(),
                home_region: optional.1.as_deref(),
                served_region: optional.2.as_deref(),
                site: Some(&strings.2),
                backend: backend.as_ref(),
                outcome: &strings.3,
                status,
                attempts,
                duration_us,
                bytes_sent,
                config_generation,
            };
            let mut written = Vec::new();
            line.write_json(&mut written);
            let mut expected = serde_json::to_vec(&line).unwrap();
            expected.push(b'\n');
            prop_assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(expected).unwrap());
        }
    }
}

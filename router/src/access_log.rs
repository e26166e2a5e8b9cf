//! The access log: one JSON line per request, the residency audit trail. It must be possible
//! to prove afterwards where each request went: tenant, home region, served region, site and
//! backend, the decision or block code, and the configuration generation that made it.
//!
//! Requests never wait for it: they hand a small record to a bounded queue and move on. When
//! the queue is full the record is dropped and counted (`residency_access_log_dropped_total`).
//! A writer thread resolves names and writes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use config::AccessLogSettings;
use regions::{RegionId, SiteId, TenantId};
use serde::Serialize;

use crate::state::RouterState;

/// One request, as the request path hands it over: ids, not names.
pub struct Record {
    pub unix_ms: u64,
    pub state: Arc<RouterState>,
    pub request_id: String,
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

#[derive(Serialize)]
struct Line<'a> {
    time_ms: u64,
    request_id: &'a str,
    method: &'a str,
    tenant: Option<&'a str>,
    home_region: Option<&'a str>,
    served_region: Option<&'a str>,
    site: Option<&'a str>,
    backend: Option<String>,
    outcome: &'a str,
    status: u16,
    attempts: usize,
    duration_us: u64,
    bytes_sent: usize,
    config_generation: u64,
}

pub struct AccessLog {
    queue: SyncSender<Record>,
}

impl AccessLog {
    /// Starts the writer thread. The file is opened there: opening can block (a FIFO
    /// without a reader, a slow network mount), and neither start-up nor requests may wait.
    pub fn start(settings: &AccessLogSettings) -> std::io::Result<AccessLog> {
        let (queue, records) = sync_channel(settings.buffer_records);
        let file = settings.file.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let out: Box<dyn std::io::Write + Send> = match &file {
                    None => Box::new(std::io::stdout()),
                    Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                        Ok(f) => Box::new(f),
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot open the access log; records are dropped");
                            for _ in records {
                                crate::metrics::global().access_log_dropped.inc();
                            }
                            return;
                        }
                    },
                };
                write_all(records, out);
            })?;
        Ok(AccessLog { queue })
    }

    /// Never blocks: a full queue drops the record and counts it.
    pub fn record(&self, record: Record) {
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                crate::metrics::global().access_log_dropped.inc();
            }
        }
    }
}

fn write_all(records: Receiver<Record>, out: Box<dyn std::io::Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(record) = records.recv() {
        let mut next = Some(record);
        // Write what is queued, then flush once: records reach the file within one batch.
        while let Some(record) = next {
            let topology = &record.state.snapshot.topology;
            let region = |r: RegionId| topology.region(r).name.as_str();
            let line = Line {
                time_ms: record.unix_ms,
                request_id: &record.request_id,
                method: record.method.as_str(),
                tenant: record.tenant.as_ref().map(TenantId::as_str),
                home_region: record.home_region.map(region),
                served_region: record.served.map(|(r, _)| region(r)),
                site: record.served.map(|(_, s)| topology.site(s).name.as_str()),
                backend: record.backend.map(|b| b.to_string()),
                outcome: record.outcome,
                status: record.status,
                attempts: record.attempts,
                duration_us: record.duration_us,
                bytes_sent: record.bytes_sent,
                config_generation: record.state.generation,
            };
            if serde_json::to_writer(&mut out, &line).is_err() || out.write_all(b"\n").is_err() {
                crate::metrics::global().access_log_dropped.inc();
            }
            next = records.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "cannot write the access log");
        }
    }
}

//! Following etcd: a full read at one revision, then the watch from the next revision, with
//! a quorum probe and a progress request every second to know the registry is current. Any
//! error drops the connection and retries the next member with backoff and jitter; the last
//! applied registry keeps serving meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use residency_admin::Unavailable;

use crate::policy::{self, KeyChange, Resync};
use crate::store::Connection;
use crate::Inner;

/// How often the sync checks that it is current.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Where the sync is, kept between connections.
pub(crate) struct Position {
    /// The last revision applied; 0 before anything was.
    pub(crate) applied: i64,
    pub(crate) cluster: Option<u64>,
    /// Set when the next connection must start with a full read.
    pub(crate) resync: Option<Resync>,
}

/// Runs until the router stops.
pub(crate) async fn follow_forever(inner: Arc<Inner>, mut position: Position) {
    let mut connection = Connection::new(Arc::clone(&inner.settings));
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let error = follow(&inner, &mut connection, &mut position).await;
        inner.metrics().registry_connected.set(0);
        // A no-op when the failing request already moved on to the next member.
        connection.failed();
        if started.elapsed() > Duration::from_secs(10) {
            attempt = 0;
        }
        let wait = policy::backoff(attempt, jitter());
        attempt = attempt.saturating_add(1);
        tracing::warn!(error = %error.0, next_endpoint = connection.endpoint(), retry_in_ms = wait.as_millis() as u64, applied_revision = position.applied, "lost the etcd registry; serving the last applied one");
        tokio::time::sleep(wait).await;
    }
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// One connection's worth of following; returns why it ended.
async fn follow(
    inner: &Arc<Inner>,
    connection: &mut Connection,
    position: &mut Position,
) -> Unavailable {
    let keys = &inner.keys;
    let (revision, cluster) = match connection.probe(keys).await {
        Ok(answer) => answer,
        Err(e) => return e,
    };
    if let Some(reason) =
        policy::judge_answer(position.applied, position.cluster, revision, cluster)
    {
        tracing::error!(reason = reason.as_str(), applied_revision = position.applied, etcd_revision = revision, "etcd's answer does not continue what this router applied; reading the whole registry again");
        position.resync = Some(reason);
    }
    if position.applied == 0 && position.resync.is_none() {
        position.resync = Some(Resync::Start);
    }
    if let Some(reason) = position.resync {
        if let Err(e) = relist(inner, connection, position, reason).await {
            return e;
        }
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(position.applied + 1)
        .with_progress_notify()
        // One revision may delete a million keys: etcd splits its events instead of failing.
        .with_fragment();
    let prefix = keys.tenants();
    let mut stream = match connection
        .run(|c| async move {
            let mut watch = c
                .watch_client()
                .max_decoding_message_size(crate::store::MAX_PAGE_BYTES);
            watch.watch(prefix, Some(options)).await
        })
        .await
    {
        Ok(stream) => stream,
        Err(e) => return e,
    };
    // Connected, but not current until the watch has caught up with a probe (below): a
    // reconnect after a long partition must not count as fresh before its backlog is in.
    inner.metrics().registry_connected.set(1);
    let mut probe = tokio::time::interval(PROBE_EVERY);
    // (revision the probe saw, when it was sent): current once the watch has reached it.
    let mut awaiting: Option<(i64, Instant)> = None;
    loop {
        tokio::select! {
            message = stream.message() => {
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Unavailable("the watch ended".into()),
                    Err(e) => return Unavailable(format!("the watch failed: {e}")),
                };
                if response.canceled() {
                    if response.compact_revision() > 0 {
                        tracing::warn!(compact_revision = response.compact_revision(), applied_revision = position.applied, "the watch's revision was compacted away; reading the whole registry again");
                        position.resync = Some(Resync::Compacted);
                    }
                    return Unavailable(format!("the watch was cancelled: {}", response.cancel_reason()));
                }
                let header_revision = response.header().map_or(0, |h| h.revision());
                let changes: Vec<KeyChange> = response.events().iter().filter_map(|event| {
                    let kv = event.kv()?;
                    let id = keys.tenant_id(kv.key())?.to_owned();
                    Some(match event.event_type() {
                        EventType::Put => KeyChange::Put { id, json: kv.value().to_vec() },
                        EventType::Delete => KeyChange::Delete { id },
                    })
                }).collect();
                if response.events().is_empty() {
                    // Creation, or a progress notice: every change up to the header revision
                    // has been sent. Only freshness follows from it: the applied revision is
                    // that of the last tenant change, so that publishing it (itself a write)
                    // does not feed the next notice. A creation's header is etcd's revision
                    // *now*, not how far the events reach, so it proves nothing.
                    if let (Some((seen, _)), false) = (awaiting, response.created()) {
                        if header_revision >= seen {
                            inner.mark_fresh();
                            awaiting = None;
                        }
                    }
                    continue;
                }
                let last = response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max().unwrap_or(header_revision);
                if !changes.is_empty() {
                    if let Err(e) = apply(inner, changes, last).await {
                        return e;
                    }
                }
                // etcd 3.4 may send a progress notice behind an event already sent
                // (etcd-io/etcd#15220): the position only moves forward.
                position.applied = position.applied.max(last);
            }
            _ = probe.tick() => {
                if let Some((_, sent)) = awaiting {
                    if sent.elapsed() > inner.settings.timeout * 2 {
                        return Unavailable("the watch stopped answering progress requests".into());
                    }
                }
                let (revision, cluster) = match connection.probe(keys).await {
                    Ok(answer) => answer,
                    Err(e) => return e,
                };
                if let Some(reason) = policy::judge_answer(position.applied, position.cluster, revision, cluster) {
                    tracing::error!(reason = reason.as_str(), applied_revision = position.applied, etcd_revision = revision, "etcd's answer does not continue what this router applied; reading the whole registry again");
                    position.resync = Some(reason);
                    return Unavailable(format!("etcd answered at revision {revision}, behind {} already applied", position.applied));
                }
                if awaiting.is_none() {
                    awaiting = Some((revision, Instant::now()));
                }
                if let Err(e) = stream.request_progress().await {
                    return Unavailable(format!("cannot ask the watch for progress: {e}"));
                }
            }
        }
    }
}

/// Reads every tenant at one revision and installs the result, deletions included.
pub(crate) async fn relist(
    inner: &Arc<Inner>,
    connection: &mut Connection,
    position: &mut Position,
    reason: Resync,
) -> Result<(), Unavailable> {
    let started = Instant::now();
    let (revision, cluster, kvs) = connection.list(&inner.keys.tenants()).await?;
    // Moved, not copied: at a million tenants every copy is another 100 MB.
    let listed: Vec<(String, Vec<u8>)> = kvs
        .into_iter()
        .filter_map(|kv| {
            let (key, value) = kv.into_key_value();
            let id = inner.keys.tenant_id(&key)?.to_owned();
            Some((id, value))
        })
        .collect();
    let tenants = listed.len();
    let task_inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || {
        task_inner.install(revision, &mut |snapshot| {
            policy::relist(&snapshot.registry, &listed, &snapshot.topology)
        })
    })
    .await
    .map_err(|e| Unavailable(format!("installing the registry failed: {e}")))??;
    inner
        .metrics()
        .registry_resyncs
        .with_label_values(&[reason.as_str()])
        .inc();
    position.applied = revision;
    position.cluster = Some(cluster);
    position.resync = None;
    inner.set_cluster(cluster);
    inner.mark_fresh();
    tracing::info!(
        reason = reason.as_str(),
        revision,
        tenants,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "registry read from etcd"
    );
    Ok(())
}

async fn apply(
    inner: &Arc<Inner>,
    changes: Vec<KeyChange>,
    revision: i64,
) -> Result<(), Unavailable> {
    let task_inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || {
        task_inner.install(revision, &mut |snapshot| {
            policy::apply_changes(&snapshot.registry, &changes, &snapshot.topology)
        })
    })
    .await
    .map_err(|e| Unavailable(format!("applying the change failed: {e}")))?
}

//! Fleet mode (SPEC 10): every router of a fleet serves one registry, kept in etcd v3.
//!
//! - `sync`: each router reads the registry at one revision, then follows etcd's watch,
//!   applying changes in revision order; it keeps serving the last applied registry when
//!   etcd is unreachable, and says so (`residency_registry_*` metrics).
//! - `cache`: a checksummed local copy, written after changes, that a router starts from
//!   when etcd is down at start.
//! - [`Fleet`] implements the admin API's [`FleetRegistry`] (compare-and-swap writes, each in
//!   one transaction with its audit entry) and [`AuditTrail`] (the fleet's one hash chain).
//! - `policy`: the rules, without I/O, with their tests.
//!
//! The router's state is reached only through [`RegistrySink`], which the binary implements
//! on its reloader: registry changes from etcd take the same lock as reloads.

pub mod cache;
mod keys;
mod policy;
mod store;
mod sync;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use regions::TenantId;
use residency_admin::audit::{AuditTrail, Entry, Filter};
use residency_admin::{
    CommitError, Committed, FleetRegistry, FleetView, RouterView, StoredTenant, TenantWrite,
    Unavailable,
};
use residency_config::{EtcdSettings, Registry, RegistryStatus, Snapshot};
use residency_dataplane::metrics::Metrics;

use keys::{range_end, Keys};
use store::Connection;

/// A registry change from etcd, for the router to judge and serve.
pub struct Proposed {
    pub registry: Registry,
    /// The tenants a watch batch changed, so the mass-move guard need not compare the whole
    /// registry for every move; `None` after a full read.
    pub changed: Option<Vec<TenantId>>,
}

/// What the fleet changes in the router it runs in.
pub trait RegistrySink: Send + Sync + 'static {
    /// The configuration served now.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// Under the router's reload lock: `build` makes the next registry from the live
    /// snapshot, which is then served with `status`, unless the mass-move guard holds it
    /// (`force` overrides the guard). Returns whether it was installed.
    fn install(
        &self,
        build: &mut dyn FnMut(&Snapshot) -> Proposed,
        status: RegistryStatus,
        force: bool,
    ) -> Result<(), String>;

    /// Serves the current registry with `status` (staleness took or gave back privileges).
    fn set_status(&self, status: RegistryStatus);
}

/// How long a router's entry in `GET /v1/fleet` outlives its last renewal.
const LEASE_TTL_S: i64 = 10;
/// The cache is rewritten at most this often, and at most 1/20 of the time: at a million
/// tenants a rewrite takes about half a second of a core, which a stream of moves must not
/// turn into a core's worth of cache writes.
const CACHE_EVERY: Duration = Duration::from_secs(2);
const CACHE_SHARE: u32 = 20;

pub(crate) struct Inner {
    pub(crate) settings: Arc<EtcdSettings>,
    pub(crate) keys: Keys,
    sink: Arc<dyn RegistrySink>,
    metrics: Arc<Metrics>,
    applied: tokio::sync::watch::Sender<i64>,
    cluster: AtomicU64,
    /// When the registry was last known to be etcd's latest (or the cache's age at start).
    fresh: Mutex<Instant>,
    loaded: AtomicBool,
    /// `residency-router reload --force`: the next change held by the mass-move guard goes in.
    force: AtomicBool,
    /// Admin API calls: their own connection, so a slow full read never holds them up.
    admin: tokio::sync::Mutex<Connection>,
    version: &'static str,
}

impl Inner {
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn mark_fresh(&self) {
        *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn staleness(&self) -> Duration {
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn status(&self) -> RegistryStatus {
        policy::registry_status(
            self.loaded.load(Ordering::Acquire),
            self.staleness(),
            self.settings.max_staleness,
        )
    }

    pub(crate) fn set_applied(&self, revision: i64) {
        self.applied.send_if_modified(|applied| {
            let advanced = revision > *applied;
            if advanced {
                *applied = revision;
            }
            advanced
        });
        self.metrics.registry_revision.set(*self.applied.borrow());
    }

    pub(crate) fn set_cluster(&self, cluster: u64) {
        self.cluster.store(cluster, Ordering::Release);
    }

    /// Installs the registry `build` makes, as revision `revision`. Blocking.
    pub(crate) fn install(
        &self,
        revision: i64,
        build: &mut dyn FnMut(&Snapshot) -> policy::Applied,
    ) -> Result<(), Unavailable> {
        let mut invalid = Vec::new();
        let mut build_registry = |snapshot: &Snapshot| {
            let applied = build(snapshot);
            invalid = applied.invalid;
            Proposed {
                registry: applied.registry,
                changed: applied.changed,
            }
        };
        self.loaded.store(true, Ordering::Release);
        let status = self.status();
        let force = self.force.swap(false, Ordering::AcqRel);
        if let Err(held) = self.sink.install(&mut build_registry, status, force) {
            self.metrics.registry_held.set(1);
            tracing::error!(revision, reason = %held, "registry change from etcd held; check it, then `residency-router reload --force` to apply it");
            return Err(Unavailable(format!("held by the mass-move guard: {held}")));
        }
        self.metrics.registry_held.set(0);
        for (tenant, why) in &invalid {
            tracing::error!(%tenant, problem = %why, revision, "invalid tenant record in etcd: the tenant keeps its previous record");
        }
        self.metrics
            .registry_invalid_records
            .inc_by(invalid.len() as u64);
        self.set_applied(revision);
        Ok(())
    }
}

/// A router's part in the fleet: the sync, its cache, its lease; and the API's store.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
    /// The fleet's own runtime: admin calls block on it from their blocking threads.
    runtime: Arc<Runtime>,
}

struct Runtime {
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Fleet {
    /// Starts following etcd for the router behind `sink`. Before returning, tries etcd once
    /// (within the request deadline), then the cache: the router starts with a registry when
    /// either is good, and with none (every tenant request refused with 503) otherwise.
    pub fn start(
        settings: Arc<EtcdSettings>,
        sink: Arc<dyn RegistrySink>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Fleet> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fleet")
            .enable_all()
            .build()?;
        let (applied, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            keys: Keys::new(&settings.prefix),
            admin: tokio::sync::Mutex::new(Connection::new(Arc::clone(&settings))),
            settings,
            sink,
            metrics,
            applied,
            cluster: AtomicU64::new(0),
            fresh: Mutex::new(Instant::now()),
            loaded: AtomicBool::new(false),
            force: AtomicBool::new(false),
            version: env!("CARGO_PKG_VERSION"),
        });
        let fleet = Fleet {
            inner: Arc::clone(&inner),
            runtime: Arc::new(Runtime {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
            }),
        };
        let mut position = sync::Position {
            applied: 0,
            cluster: None,
            resync: None,
        };
        let first = fleet.block_on(async {
            let mut connection = Connection::new(Arc::clone(&inner.settings));
            // Each member once: one that is down must not send the router to its cache.
            let mut tries = inner.settings.endpoints.len();
            loop {
                let result = sync::relist(
                    &inner,
                    &mut connection,
                    &mut position,
                    policy::Resync::Start,
                )
                .await;
                tries -= 1;
                if result.is_ok() || tries == 0 {
                    break result;
                }
            }
        });
        let mut from_cache = 0;
        if let Err(e) = first {
            tracing::warn!(error = %e.0, "etcd is unreachable at start; trying the local cache");
            fleet.start_from_cache(&mut position);
            from_cache = position.applied;
        }
        for reason in policy::Resync::ALL {
            inner
                .metrics
                .registry_resyncs
                .with_label_values(&[reason.as_str()]);
        }
        let handle = fleet.handle();
        handle.spawn(sync::follow_forever(Arc::clone(&inner), position));
        handle.spawn(watch_staleness(Arc::clone(&inner)));
        handle.spawn(publish_self(Arc::clone(&inner)));
        handle.spawn(write_cache(Arc::clone(&inner), from_cache));
        Ok(fleet)
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle.clone()
    }

    /// Stops following etcd and lets the router's lease lapse (the router is stopping).
    pub fn stop(&self) {
        let runtime = self
            .runtime
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.handle().block_on(future)
    }

    fn start_from_cache(&self, position: &mut sync::Position) {
        let inner = &self.inner;
        let settings = &inner.settings;
        let now = unix_now();
        let cached = match cache::read(
            &settings.cache,
            &settings.prefix,
            now,
            settings.cache_max_age,
        ) {
            Ok(cached) => cached,
            Err(refused) => {
                tracing::error!(cache = %settings.cache.display(), reason = %refused, "not starting from the cache: no registry until etcd answers; every tenant request is refused (503 registry_unavailable)");
                return;
            }
        };
        let header = cached.header.clone();
        // Checked against this configuration's regions before anything is served from it.
        let topology = inner.sink.snapshot().topology.clone();
        let registry = String::from_utf8(cached.body)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                residency_config::registry_from_text(&settings.cache, &text, &topology)
                    .map_err(|e| e.to_string())
            });
        let mut registry = match registry {
            Ok(registry) => Some(registry),
            Err(problems) => {
                tracing::error!(%problems, "the cache does not fit this configuration; no registry until etcd answers, every tenant request is refused (503 registry_unavailable)");
                return;
            }
        };
        let age = Duration::from_secs(now.saturating_sub(header.written_at_unix));
        // Older than this process's clock can say: as stale as can be.
        let fresh = Instant::now()
            .checked_sub(age)
            .or_else(|| Instant::now().checked_sub(settings.max_staleness + Duration::from_secs(1)))
            .unwrap_or_else(Instant::now);
        *inner.fresh.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        let installed = inner.install(header.revision, &mut |_| policy::Applied {
            registry: registry.take().unwrap_or_default(),
            invalid: Vec::new(),
            changed: None,
        });
        if let Err(e) = installed {
            tracing::error!(error = %e.0, "cannot start from the cache");
            return;
        }
        position.applied = header.revision;
        position.cluster = Some(header.cluster_id);
        inner.set_cluster(header.cluster_id);
        tracing::warn!(
            revision = header.revision,
            age_s = age.as_secs(),
            "serving the registry from the local cache until etcd answers"
        );
    }

    /// `reload --force`: the registry change the mass-move guard holds now, if any, is
    /// applied. Nothing is armed for a later change when none is held.
    pub fn force_next(&self) {
        if self.inner.metrics.registry_held.get() == 1 {
            self.inner.force.store(true, Ordering::Release);
        }
    }

    /// A read for the admin API on the fleet's runtime; a member that does not answer is
    /// left for the next one.
    fn read<T>(
        &self,
        op: impl AsyncFn(&mut Connection, &Keys) -> Result<T, Unavailable>,
    ) -> Result<T, Unavailable> {
        let inner = &self.inner;
        self.block_on(async {
            let mut connection = inner.admin.lock().await;
            retry_members(&inner.settings, &mut connection, &inner.keys, op).await
        })
    }

    /// A write, tried once: one whose answer was lost may have been applied, and retrying it
    /// would report the caller's own change as a conflict (or audit it twice). The caller
    /// gets `503`, reads again, and sees.
    fn write<T>(
        &self,
        op: impl AsyncFnOnce(&mut Connection, &Keys) -> Result<T, Unavailable>,
    ) -> Result<T, Unavailable> {
        let inner = &self.inner;
        self.block_on(async {
            let mut connection = inner.admin.lock().await;
            op(&mut connection, &inner.keys).await
        })
    }
}

/// Operator tools (`registry import` / `export`, `audit export`): one short-lived connection.
fn with_store<T>(
    settings: &Arc<EtcdSettings>,
    op: impl AsyncFn(&mut Connection, &Keys) -> Result<T, Unavailable>,
) -> Result<T, Unavailable> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Unavailable(e.to_string()))?;
    let keys = Keys::new(&settings.prefix);
    runtime.block_on(async {
        let mut connection = Connection::new(Arc::clone(settings));
        retry_members(settings, &mut connection, &keys, op).await
    })
}

/// `op`, tried on up to three members in turn until one answers.
async fn retry_members<T>(
    settings: &EtcdSettings,
    connection: &mut Connection,
    keys: &Keys,
    op: impl AsyncFn(&mut Connection, &Keys) -> Result<T, Unavailable>,
) -> Result<T, Unavailable> {
    let mut tries = settings.endpoints.len().clamp(1, 3);
    loop {
        match op(connection, keys).await {
            Ok(value) => return Ok(value),
            Err(e) if tries <= 1 => return Err(e),
            Err(_) => tries -= 1,
        }
    }
}

/// Tenant records as the store keeps them: (id, record JSON).
pub type Records = Vec<(String, Vec<u8>)>;

/// Every tenant record in the store, at one revision.
pub fn export_registry(settings: &Arc<EtcdSettings>) -> Result<(i64, Records), Unavailable> {
    with_store(settings, async |c, keys| {
        let (revision, _, kvs) = c.list(&keys.tenants()).await?;
        Ok((
            revision,
            kvs.into_iter()
                .filter_map(|kv| Some((keys.tenant_id(kv.key())?.to_owned(), kv.value().to_vec())))
                .collect(),
        ))
    })
}

/// The fleet's audit chain as etcd holds it at one revision.
pub struct ExportedAudit {
    /// The entries, oldest first.
    pub lines: Vec<Vec<u8>>,
    /// `(seq, hash)` of `P/audit-head`: a chain cut at its end verifies link by link, but no
    /// longer ends here.
    pub head: (u64, String),
}

/// Every audit entry, with the chain's head read at the same revision.
pub fn export_audit(settings: &Arc<EtcdSettings>) -> Result<ExportedAudit, Unavailable> {
    with_store(settings, async |c, keys| {
        // `P/audit/...` and `P/audit-head` share the prefix `P/audit`: one read, one revision.
        let entries = keys.audit();
        let (_, _, kvs) = c.list(entries.trim_end_matches('/')).await?;
        let mut head = (0, residency_admin::audit::GENESIS.to_owned());
        let mut lines = Vec::new();
        for kv in kvs {
            if kv.key() == keys.audit_head().as_bytes() {
                let parsed: store::Head = serde_json::from_slice(kv.value()).map_err(|e| {
                    Unavailable(format!("the audit head in etcd is unreadable: {e}"))
                })?;
                head = (parsed.seq, parsed.hash);
            } else if kv.key().starts_with(entries.as_bytes()) {
                lines.push(kv.value().to_vec());
            }
        }
        Ok(ExportedAudit { lines, head })
    })
}

/// Audit entries per page of `GET /v1/audit` (filters may skip most of them).
const AUDIT_PAGE: i64 = 1_000;

/// Operations per transaction: etcd's default `--max-txn-ops` is 128, and one goes to the
/// audit entry and one to the chain's head.
const IMPORT_CHUNK: usize = 120;

/// Writes `tenants` (id, record JSON) into the store, `IMPORT_CHUNK` per transaction, each
/// transaction with an audit entry `registry.import` naming how many it wrote. Tenants the
/// store holds that are not in `tenants` are left alone. Returns the last revision written.
pub fn import_registry(
    settings: &Arc<EtcdSettings>,
    tenants: &[(String, Vec<u8>)],
    actor: &str,
) -> Result<i64, Unavailable> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Unavailable(e.to_string()))?;
    let keys = &Keys::new(&settings.prefix);
    // Each transaction tried once (a retry after a lost answer would audit a chunk twice); a
    // failed import says how far it got, and running it again writes the same records.
    let mut written = 0;
    let imported = runtime.block_on(async {
        let c = &mut Connection::new(Arc::clone(settings));
        let mut revision = 0;
        for chunk in tenants.chunks(IMPORT_CHUNK) {
            loop {
                let entry = Entry {
                    actor: actor.to_owned(),
                    action: "registry.import".to_owned(),
                    outcome: "applied".to_owned(),
                    status: 200,
                    after: Some(serde_json::json!({
                        "tenants": chunk.len(),
                        "first": chunk.first().map(|t| t.0.as_str()),
                        "last": chunk.last().map(|t| t.0.as_str()),
                    })),
                    request_id: "cli".to_owned(),
                    ..Entry::default()
                };
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|(id, json)| TxnOp::put(keys.tenant(id), json.clone(), None))
                    .collect();
                let head = c.head(keys).await?;
                if let Some((r, _)) = c.append(keys, entry, head, Vec::new(), ops).await? {
                    revision = r;
                    written += chunk.len();
                    break;
                }
            }
        }
        Ok(revision)
    });
    imported.map_err(|e: Unavailable| {
        Unavailable(format!(
            "{}; {written} of {} tenants were imported, run the import again",
            e.0,
            tenants.len()
        ))
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Staleness, every half second: the gauge, and the privileges it costs.
async fn watch_staleness(inner: Arc<Inner>) {
    let mut served = inner.sink.snapshot().registry_status;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let loaded = inner.loaded.load(Ordering::Acquire);
        let staleness = if loaded {
            inner.staleness()
        } else {
            Duration::ZERO
        };
        inner
            .metrics
            .registry_staleness
            .set(staleness.as_secs_f64());
        let status = inner.status();
        if status != served {
            if status.replication_suspended {
                tracing::error!(staleness_s = staleness.as_secs(), max_staleness_s = inner.settings.max_staleness.as_secs(), "the registry is stale: replication exceptions are suspended (home regions still served) until etcd answers");
            } else {
                tracing::info!("the registry is current again: replication exceptions are served");
            }
            let sink = Arc::clone(&inner.sink);
            let _ = tokio::task::spawn_blocking(move || sink.set_status(status)).await;
            served = status;
        }
    }
}

/// Keeps `P/routers/<id>` under a lease, with the revision this router applied.
async fn publish_self(inner: Arc<Inner>) {
    let mut connection = Connection::new(Arc::clone(&inner.settings));
    let mut applied = inner.applied.subscribe();
    let key = inner.keys.router(&inner.settings.router_id);
    let mut attempt = 0;
    loop {
        let result: Result<(), Unavailable> = async {
            let lease = connection.run(|mut c| async move { c.lease_grant(LEASE_TTL_S, None).await }).await?.id();
            let mut renew = tokio::time::interval(Duration::from_secs(LEASE_TTL_S as u64 / 4));
            loop {
                let view = RouterView {
                    id: inner.settings.router_id.clone(),
                    region: inner.settings.router_region.clone(),
                    applied_revision: *applied.borrow_and_update(),
                    version: inner.version.to_owned(),
                };
                let json = serde_json::to_vec(&view).expect("views serialize");
                connection.put_with_lease(key.clone(), json, lease).await?;
                attempt = 0;
                tokio::select! {
                    changed = applied.changed() => { if changed.is_err() { return Ok(()); } }
                    _ = renew.tick() => {
                        let (mut keeper, mut stream) = connection.run(|mut c| async move { c.lease_keep_alive(lease).await }).await?;
                        connection.run(|_| async move { keeper.keep_alive().await }).await?;
                        let alive = connection.run(|_| async move { stream.message().await }).await?;
                        if alive.is_none_or(|a| a.ttl() <= 0) {
                            return Err(Unavailable("the lease expired".into()));
                        }
                    }
                }
            }
        }
        .await;
        if result.is_ok() {
            return;
        }
        tokio::time::sleep(policy::backoff(attempt, 0.5)).await;
        attempt += 1;
    }
}

/// Rewrites the cache after changes, at most every [`CACHE_EVERY`] (or [`CACHE_SHARE`] times
/// the last write). A registry that came from the cache is not written back: that would make
/// an old copy look young.
async fn write_cache(inner: Arc<Inner>, from_cache: i64) {
    let mut applied = inner.applied.subscribe();
    let mut written = from_cache;
    let mut pause = CACHE_EVERY;
    loop {
        let revision = *applied.borrow_and_update();
        if revision != written && inner.loaded.load(Ordering::Acquire) {
            let started = Instant::now();
            let task = Arc::clone(&inner);
            let wrote = tokio::task::spawn_blocking(move || {
                let snapshot = task.sink.snapshot();
                let body = residency_config::registry_json(&snapshot.registry, &snapshot.topology);
                let settings = &task.settings;
                let cluster = task.cluster.load(Ordering::Acquire);
                cache::write(
                    &settings.cache,
                    &settings.prefix,
                    cluster,
                    revision,
                    unix_now(),
                    &body,
                )
            })
            .await;
            pause = CACHE_EVERY.max(started.elapsed() * CACHE_SHARE);
            match wrote {
                Ok(Ok(())) => written = revision,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, cache = %inner.settings.cache.display(), "cannot write the registry cache")
                }
                Err(e) => tracing::error!(error = %e, "the cache writer failed"),
            }
        }
        if applied.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

impl FleetRegistry for Fleet {
    fn read_tenant(&self, id: &TenantId) -> Result<Option<StoredTenant>, Unavailable> {
        let key = self.inner.keys.tenant(id.as_str());
        let found = self.read(async |c, _| c.get(key.clone()).await)?;
        Ok(found.map(|(json, mod_revision)| StoredTenant { json, mod_revision }))
    }

    fn commit(&self, write: TenantWrite) -> Result<Committed, CommitError> {
        let key = self.inner.keys.tenant(write.id.as_str());
        let committed = self.write(async |c, keys| {
            let head = c.head(keys).await?;
            let when = vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                write.expected_mod_revision,
            )];
            let op = match &write.json {
                Some(json) => TxnOp::put(key.clone(), json.clone(), None),
                None => TxnOp::delete(key.clone(), None),
            };
            c.append(keys, write.entry.clone(), head, when, vec![op])
                .await
        })?;
        match committed {
            Some((revision, _)) => Ok(Committed { revision }),
            None => Err(CommitError::Conflict),
        }
    }

    fn wait_applied_here(&self, revision: i64, timeout: Duration) -> bool {
        let mut applied = self.inner.applied.subscribe();
        self.block_on(async {
            tokio::time::timeout(timeout, applied.wait_for(|a| *a >= revision))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }

    fn wait_applied_everywhere(
        &self,
        revision: i64,
        timeout: Duration,
    ) -> Result<Vec<String>, Unavailable> {
        let until = Instant::now() + timeout;
        loop {
            let view = self.fleet()?;
            let lagging: Vec<String> = view
                .routers
                .iter()
                .filter(|r| r.applied_revision < revision)
                .map(|r| r.id.clone())
                .collect();
            if lagging.is_empty() || Instant::now() >= until {
                return Ok(lagging);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fleet(&self) -> Result<FleetView, Unavailable> {
        let (revision, _, kvs) = self.read(async |c, keys| c.list(&keys.routers()).await)?;
        let routers = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect();
        Ok(FleetView { revision, routers })
    }
}

impl AuditTrail for Fleet {
    fn append(&self, entry: Entry) -> std::io::Result<Entry> {
        for _ in 0..8 {
            let appended = self
                .write(async |c, keys| {
                    let head = c.head(keys).await?;
                    c.append(keys, entry.clone(), head, Vec::new(), Vec::new())
                        .await
                })
                .map_err(|e| std::io::Error::other(e.0))?;
            if let Some((_, entry)) = appended {
                return Ok(entry);
            }
        }
        Err(std::io::Error::other(
            "other routers kept appending to the audit chain; retry",
        ))
    }

    fn query(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> std::io::Result<(Vec<serde_json::Value>, bool)> {
        let mut start = self
            .inner
            .keys
            .audit_entry(filter.after_seq + 1)
            .into_bytes();
        let end = range_end(&self.inner.keys.audit());
        let mut found = Vec::new();
        loop {
            // Small pages: entries are ~400 bytes, and the answer stays under 4 MB.
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(AUDIT_PAGE);
            let from = start.clone();
            let mut page = self
                .read(async |c, _| {
                    let (from, options) = (from.clone(), options.clone());
                    c.run(|mut client| async move { client.get(from, Some(options)).await })
                        .await
                })
                .map_err(|e| std::io::Error::other(e.0))?;
            let more = page.more();
            let kvs = page.take_kvs();
            for kv in &kvs {
                let Ok(entry) = serde_json::from_slice::<serde_json::Value>(kv.value()) else {
                    continue;
                };
                if filter.matches(&entry) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(entry);
                }
            }
            match kvs.last() {
                Some(last) if more => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((found, false)),
            }
        }
    }

    fn head(&self) -> std::io::Result<(u64, String)> {
        let (head, _) = self
            .read(async |c, keys| c.head(keys).await)
            .map_err(|e| std::io::Error::other(e.0))?;
        Ok((head.seq, head.hash))
    }

    fn location(&self) -> String {
        format!("etcd {}{}", self.inner.settings.prefix, "/audit/")
    }

    fn take_over(&self) -> Result<bool, String> {
        // The chain's head is compared in every append: any number of writers is safe.
        Ok(true)
    }
}

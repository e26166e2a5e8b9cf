//! The seam between the admin API and whatever makes a registry change live: the binary's
//! reloader (changes and reloads take one lock), or an in-memory writer in tests; and, in
//! fleet mode, the shared store the changes go to instead of the registry file.

use std::sync::Arc;
use std::time::Duration;

use regions::TenantId;
use residency_config::Registry;

use crate::audit::Entry;
use residency_dataplane::state::RouterState;

/// Makes registry changes live.
pub trait RegistryWriter: Send + Sync {
    /// Takes the write lock (blocking): nothing else reloads or changes the registry until
    /// the returned lock is dropped.
    fn lock(&self) -> Box<dyn RegistryLock + '_>;
}

/// The write lock, held.
pub trait RegistryLock {
    /// The state the change applies to.
    fn current(&self) -> Arc<RouterState>;

    /// The registry's file changed on disk since it was loaded or written, and that version
    /// is not live: writing now would silently discard the edit.
    fn registry_changed_on_disk(&self) -> bool;

    /// Serves `registry` from the next request on, everything else unchanged. Called once
    /// the change is durable. Returns the new generation.
    fn swap_registry(&self, registry: Arc<Registry>) -> u64;
}

/// Fleet mode: the registry in a store every router shares (etcd), written with
/// compare-and-swap, each change in one transaction with its audit entry.
pub trait FleetRegistry: Send + Sync {
    /// The tenant as the store holds it now (a quorum read).
    fn read_tenant(&self, id: &TenantId) -> Result<Option<StoredTenant>, Unavailable>;

    /// Writes `write.json` (or deletes the tenant) and appends `write.entry` to the fleet's
    /// audit chain, atomically, if the tenant is still at `write.expected_mod_revision`.
    fn commit(&self, write: TenantWrite) -> Result<Committed, CommitError>;

    /// Blocks until this router serves `revision` or later; `false` after `timeout`.
    fn wait_applied_here(&self, revision: i64, timeout: Duration) -> bool;

    /// Blocks until every live router of the fleet has applied `revision`; the ids of those
    /// that have not after `timeout`.
    fn wait_applied_everywhere(
        &self,
        revision: i64,
        timeout: Duration,
    ) -> Result<Vec<String>, Unavailable>;

    /// The live routers and what each has applied.
    fn fleet(&self) -> Result<FleetView, Unavailable>;
}

/// A tenant's record as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredTenant {
    /// The record's JSON (`residency_config::tenant_json`).
    pub json: Vec<u8>,
    /// The revision of its last change: its `ETag`.
    pub mod_revision: i64,
}

/// One tenant change with its audit entry.
#[derive(Debug)]
pub struct TenantWrite {
    pub id: TenantId,
    /// 0 when the tenant must not exist yet.
    pub expected_mod_revision: i64,
    /// `None` deletes the tenant.
    pub json: Option<Vec<u8>>,
    /// The `applied` entry; its `seq`, `time` and `prev` are filled in by the store.
    pub entry: Entry,
}

#[derive(Debug)]
pub struct Committed {
    /// The store revision the change created.
    pub revision: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The tenant changed since it was read: read again.
    #[error("the tenant changed since it was read")]
    Conflict,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The store did not answer (no quorum, partitioned, down). Nothing was changed unless the
/// store says otherwise later: a write that timed out may still have been applied.
#[derive(Debug, thiserror::Error)]
#[error("the registry store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// `GET /v1/fleet`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FleetView {
    pub revision: i64,
    pub routers: Vec<RouterView>,
}

/// One router, as it publishes itself under a lease: gone when it stops renewing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterView {
    pub id: String,
    pub region: Option<String>,
    pub applied_revision: i64,
    pub version: String,
}

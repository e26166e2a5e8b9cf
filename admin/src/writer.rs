//! The seam between the admin API and whatever makes a registry change live: the binary's
//! reloader (changes and reloads take one lock), or an in-memory writer in tests.

use std::sync::Arc;

use residency_config::Registry;
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

//! Where registry changes made through the admin API are kept.
//!
//! The router reads the registry through `config::load` and changes it through a
//! [`RegistryStore`]; neither the data plane nor the API knows where it lives. [`FileStore`]
//! is the embedded default: the registry file itself, replaced atomically. A store on a
//! replicated engine (etcd, for fleets of routers) implements the same trait.

use std::io::Write as _;
use std::path::Path;

use regions::{TenantId, TenantRecord};

use crate::{Registry, Snapshot};

/// One tenant's new settings; `after: None` removes the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantChange {
    pub id: TenantId,
    pub after: Option<TenantRecord>,
}

pub trait RegistryStore: Send + Sync {
    /// Makes `registry` (`live`'s registry with `change` applied) durable. Returns only once
    /// the change survives a crash or power loss.
    fn commit(
        &self,
        change: &TenantChange,
        registry: &Registry,
        live: &Snapshot,
    ) -> std::io::Result<()>;
}

/// The registry file the live configuration names (`tenancy.registry`, which a reload may
/// change), rewritten whole: temporary file, fsync, rename over, fsync the directory. A
/// crash at any point leaves the old file or the new one, never a torn one.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileStore;

impl RegistryStore for FileStore {
    fn commit(
        &self,
        _change: &TenantChange,
        registry: &Registry,
        live: &Snapshot,
    ) -> std::io::Result<()> {
        let json = crate::registry_json(registry, &live.topology);
        replace_file(&live.registry_path, &json)
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Atomically replaces `path` with `bytes`, durably.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // The pid keeps two processes (an upgrade in progress) off each other's temporary file.
    let staged = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&staged, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left: {left:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "old").unwrap();
        // A directory in the way of the rename makes it fail after the data was written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(replace_file(&blocked, b"new").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 2, "the temporary file was removed");
    }
}

//! Where registry changes made through the admin API are kept.
//!
//! The router reads the registry through `residency_config::load` and changes it through a
//! [`RegistryStore`]; neither the data plane nor the API knows where it lives. [`FileStore`]
//! is the embedded default: the registry file itself, replaced atomically. A store on a
//! replicated engine (etcd, for fleets of routers) implements the same trait.
//!
//! A change is made in two steps so that the caller can put its audit entry between them:
//! [`RegistryStore::stage`] makes the new registry durable beside the live one without
//! publishing it (a crash after it changes nothing), and [`Staged::publish`] makes it the
//! registry. Whatever fails, the error says which registry the store now holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use regions::{TenantId, TenantRecord};

use crate::{Registry, Snapshot};

/// One tenant's new settings; `after: None` removes the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantChange {
    pub id: TenantId,
    pub after: Option<TenantRecord>,
}

pub trait RegistryStore: Send + Sync {
    /// Makes `registry` (`live`'s registry with `change` applied) durable where
    /// [`Staged::publish`] can publish it, without publishing it: on an error, or when the
    /// returned change is dropped unpublished, the store still holds the old registry.
    fn stage(
        &self,
        change: &TenantChange,
        registry: &Registry,
        live: &Snapshot,
    ) -> std::io::Result<Box<dyn Staged>>;

    /// Stages and publishes in one go, for callers with nothing to do in between.
    fn commit(
        &self,
        change: &TenantChange,
        registry: &Registry,
        live: &Snapshot,
    ) -> std::io::Result<()> {
        self.stage(change, registry, live)?
            .publish()
            .map_err(PublishError::into_io)
    }
}

/// A new registry, durable but not published yet. Dropping it unpublished abandons it.
pub trait Staged: Send {
    /// Makes the staged registry the store's registry. Returns only once the change
    /// survives a crash or power loss, or says which registry the store now holds.
    fn publish(self: Box<Self>) -> Result<(), PublishError>;
}

/// Why [`Staged::publish`] failed, by what the store holds afterwards.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store still holds the old registry; the staged one was abandoned.
    #[error("the new registry was not published: {0}")]
    NotPublished(std::io::Error),
    /// The store holds (and serves, to anyone who reads it) the new registry, but it is not
    /// known to survive a crash: the file was renamed into place and the directory could not
    /// be fsynced.
    #[error("the new registry is in place but may not survive a crash: {0}")]
    NotDurable(std::io::Error),
}

impl PublishError {
    fn into_io(self) -> std::io::Error {
        match self {
            PublishError::NotPublished(e) | PublishError::NotDurable(e) => e,
        }
    }
}

/// The registry file the live configuration names (`tenancy.registry`, which a reload may
/// change), rewritten whole: temporary file, fsync, rename over, fsync the directory. A
/// crash at any point leaves the old file or the new one, never a torn one.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileStore;

impl RegistryStore for FileStore {
    fn stage(
        &self,
        _change: &TenantChange,
        registry: &Registry,
        live: &Snapshot,
    ) -> std::io::Result<Box<dyn Staged>> {
        let json = crate::registry_json(registry, &live.topology);
        Ok(Box::new(StagedFile::write(&live.registry_path, &json)?))
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A temporary file beside its target, written and fsynced, not renamed yet. Removed when
/// dropped unpublished.
#[derive(Debug)]
pub struct StagedFile {
    staged: PathBuf,
    target: PathBuf,
    published: bool,
}

impl StagedFile {
    /// Writes `bytes` to a temporary file beside `target` and fsyncs it.
    pub fn write(target: &Path, bytes: &[u8]) -> std::io::Result<StagedFile> {
        let dir = parent_dir(target);
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        // The pid keeps two processes (an upgrade in progress) off each other's temporary file.
        let staged = StagedFile {
            staged: dir.join(format!(".{name}.{}.tmp", std::process::id())),
            target: target.to_owned(),
            published: false,
        };
        // On an error, dropping `staged` removes whatever was written.
        let mut file = std::fs::File::create(&staged.staged)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(staged)
    }

    /// Renames the file over its target, then fsyncs the directory so the rename survives.
    pub fn rename_into_place(mut self) -> Result<(), PublishError> {
        std::fs::rename(&self.staged, &self.target).map_err(PublishError::NotPublished)?;
        self.published = true;
        std::fs::File::open(parent_dir(&self.target))
            .and_then(|dir| dir.sync_all())
            .map_err(PublishError::NotDurable)
    }
}

impl Staged for StagedFile {
    fn publish(self: Box<Self>) -> Result<(), PublishError> {
        self.rename_into_place()
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_staged_file_is_durable_beside_the_old_one_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "old").unwrap();
        let staged = StagedFile::write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()).len(), 2, "staged beside the registry");
        staged.rename_into_place().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["tenants.json"]);
    }

    #[test]
    fn a_staged_file_dropped_unpublished_is_removed_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "old").unwrap();
        drop(StagedFile::write(&path, b"new").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["tenants.json"]);
    }

    #[test]
    fn a_failed_rename_is_not_published_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.json");
        std::fs::write(&path, "old").unwrap();
        // A non-empty directory in the way of the rename makes it fail after the data was
        // written and fsynced.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        let staged = StagedFile::write(&blocked, b"new").unwrap();
        assert!(matches!(
            staged.rename_into_place(),
            Err(PublishError::NotPublished(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(
            entries(dir.path()),
            ["blocked", "tenants.json"],
            "the temporary file was removed"
        );
    }
}

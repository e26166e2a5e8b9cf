use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::{Database, GeoIpError};

/// A database file that may be replaced while the router runs.
///
/// Readers call [`LiveDatabase::current`] (one atomic load). A poller calls
/// [`LiveDatabase::reload_if_changed`]; only a new file that opens and verifies is swapped in.
pub struct LiveDatabase {
    path: PathBuf,
    current: ArcSwap<Database>,
    /// Identity of the file last looked at, good or bad, so a broken file is reported once
    /// rather than on every poll.
    seen: Mutex<Option<Stamp>>,
    /// Identity of the file `current` was read from.
    serving: Mutex<Option<Stamp>>,
}

impl std::fmt::Debug for LiveDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDatabase")
            .field("path", &self.path)
            .field("current", &**self.current.load())
            .finish()
    }
}

/// What a reload attempt did.
#[derive(Debug)]
pub enum Reloaded {
    Unchanged,
    Swapped,
    /// The new file was refused; the previous database keeps serving.
    Kept(GeoIpError),
}

impl LiveDatabase {
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let seen = file_stamp(path);
        let database = Database::open(path)?;
        Ok(LiveDatabase {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(database),
            seen: Mutex::new(seen),
            serving: Mutex::new(seen),
        })
    }

    /// [`LiveDatabase::open`], or `open` (the database the running configuration has) when
    /// it serves `path` as the file is on disk now: a config or registry reload then neither
    /// re-reads nor re-verifies a database that did not change. A changed, broken or missing
    /// file is opened afresh, so it is judged (and refused) as at first load.
    pub fn open_reusing(path: &Path, open: Option<&Arc<Self>>) -> Result<Arc<Self>, GeoIpError> {
        let stamp = file_stamp(path);
        let serving_now = |db: &LiveDatabase| {
            stamp.is_some() && *db.serving.lock().unwrap_or_else(|p| p.into_inner()) == stamp
        };
        match open {
            Some(db) if db.path == path && serving_now(db) => Ok(Arc::clone(db)),
            _ => Ok(Arc::new(Self::open(path)?)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<Database>> {
        self.current.load()
    }

    /// Re-reads the file when its modification time or length changed. Blocking: call it from
    /// a background thread, never from a request.
    pub fn reload_if_changed(&self) -> Reloaded {
        let before = file_stamp(&self.path);
        if *self.seen.lock().unwrap_or_else(|p| p.into_inner()) == before {
            return Reloaded::Unchanged;
        }
        let opened = Database::open(&self.path);
        // A file still being written changes under us: judge it on the next poll instead.
        if file_stamp(&self.path) != before {
            return Reloaded::Unchanged;
        }
        // Read errors (a vanished file) are retried; a bad database is reported once.
        if !matches!(opened, Err(GeoIpError::Read { .. })) {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = before;
        }
        let database = match opened {
            Ok(database) => database,
            Err(e) => return Reloaded::Kept(e),
        };
        let kind = self.current.load().kind();
        if database.kind() != kind {
            // The country -> site table was checked against the kind at load; a silent
            // switch would quietly turn GeoIP into rotation.
            return Reloaded::Kept(GeoIpError::KindChanged {
                from: kind,
                to: database.kind(),
            });
        }
        self.current.store(Arc::new(database));
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = before;
        Reloaded::Swapped
    }
}

/// What tells one version of a file from another: a replacement by rename changes the
/// inode, an in-place rewrite the change time, even when size and mtime look the same.
/// The router's config watcher uses it too.
pub type Stamp = (SystemTime, u64, u64, i64, i64);

/// `None` when the file cannot be read.
pub fn file_stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.modified().ok()?,
        meta.len(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec(),
    ))
}

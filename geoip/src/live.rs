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
    /// (modified time, length) of the file last looked at, good or bad, so a broken file is
    /// reported once rather than on every poll.
    seen: Mutex<Option<(SystemTime, u64)>>,
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
        })
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
        let stamp = file_stamp(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == stamp {
                return Reloaded::Unchanged;
            }
            *seen = stamp;
        }
        match Database::open(&self.path) {
            Ok(database) => {
                self.current.store(Arc::new(database));
                Reloaded::Swapped
            }
            Err(e) => Reloaded::Kept(e),
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

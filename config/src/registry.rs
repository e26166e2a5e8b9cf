//! The tenant registry, compact enough for millions of tenants.
//!
//! Ids live back to back in one byte arena; each tenant is an 8-byte record (home region and
//! an index into a small table of distinct replication settings, which tenants share); a
//! hash table of `u32` tenant numbers indexes the ids. About 35 bytes per tenant in all, and
//! a lookup hashes the id once and compares bytes in place: no allocation.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use regions::{RegionId, Replication, TenantId, TenantRecord};

const NO_REPLICATION: u32 = u32::MAX;

/// One tenant, stored in the hash table itself so that a lookup touches the table and the
/// id bytes and nothing else.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Where the id starts in `ids`.
    start: u32,
    /// Index into `replications`, or `NO_REPLICATION`.
    replication: u32,
    /// Position in the registry file (for messages about duplicates).
    order: u32,
    len: u8,
    home: RegionId,
}

/// Tenant id -> record. Immutable once built.
#[derive(Clone, Default)]
pub struct Registry {
    ids: Vec<u8>,
    replications: Vec<Replication>,
    index: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.len())
            .field("distinct_replications", &self.replications.len())
            .finish()
    }
}

impl Registry {
    pub(crate) fn with_capacity(tenants: usize, id_bytes: usize) -> Self {
        Registry {
            ids: Vec::with_capacity(id_bytes),
            replications: Vec::new(),
            index: HashTable::with_capacity(tenants),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn id_of<'a>(ids: &'a [u8], entry: &Entry) -> &'a [u8] {
        &ids[entry.start as usize..entry.start as usize + usize::from(entry.len)]
    }

    fn record(&self, entry: &Entry) -> TenantRecord {
        TenantRecord {
            home: entry.home,
            replication: (entry.replication != NO_REPLICATION)
                .then(|| self.replications[entry.replication as usize]),
        }
    }

    fn find(&self, id: &[u8]) -> Option<&Entry> {
        let hash = self.hasher.hash_one(id);
        self.index.find(hash, |e| Self::id_of(&self.ids, e) == id)
    }

    pub fn get(&self, id: &TenantId) -> Option<TenantRecord> {
        self.find(id.as_bytes()).map(|e| self.record(e))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Every tenant, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TenantRecord)> {
        self.index.iter().map(|e| {
            let id =
                std::str::from_utf8(Self::id_of(&self.ids, e)).expect("ids are validated ASCII");
            (id, self.record(e))
        })
    }

    /// Every tenant, sorted by id (exports and the registry file).
    pub fn sorted(&self) -> Vec<(&str, TenantRecord)> {
        let mut tenants: Vec<(&str, TenantRecord)> = self.iter().collect();
        tenants.sort_unstable_by_key(|(id, _)| *id);
        tenants
    }

    /// Heap bytes held, for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity()
            + self.replications.capacity() * std::mem::size_of::<Replication>()
            + self.index.capacity() * (std::mem::size_of::<Entry>() + 1)
    }

    /// A copy with one tenant set to `record`, or removed (`None`). A removed id's bytes stay
    /// in the arena until the next full load: changes through the admin API are rare next
    /// to lookups, and this keeps a change to a copy of two flat arrays.
    pub fn with_change(&self, id: &TenantId, record: Option<TenantRecord>) -> Registry {
        self.with_changes([(*id, record)])
    }

    /// [`Registry::with_change`] for several tenants, in order, with one copy.
    pub fn with_changes(
        &self,
        changes: impl IntoIterator<Item = (TenantId, Option<TenantRecord>)>,
    ) -> Registry {
        let mut next = self.clone();
        for (id, record) in changes {
            next.set(&id, record);
        }
        next
    }

    fn set(&mut self, id: &TenantId, record: Option<TenantRecord>) {
        let bytes = id.as_bytes();
        let hash = self.hasher.hash_one(bytes);
        let ids = &self.ids;
        let found = self
            .index
            .find_entry(hash, |e| Self::id_of(ids, e) == bytes);
        match (found, record) {
            (Ok(entry), None) => {
                entry.remove();
            }
            (Ok(mut entry), Some(record)) => {
                let replication = Self::replication_index(&mut self.replications, record);
                let entry = entry.get_mut();
                entry.home = record.home;
                entry.replication = replication;
            }
            (Err(_), None) => {}
            (Err(_), Some(record)) => {
                let entry = Entry {
                    start: self.ids.len() as u32,
                    replication: Self::replication_index(&mut self.replications, record),
                    order: self.index.len() as u32,
                    len: bytes.len() as u8,
                    home: record.home,
                };
                self.ids.extend_from_slice(bytes);
                let (ids, hasher) = (&self.ids, &self.hasher);
                self.index
                    .insert_unique(hash, entry, |e| hasher.hash_one(Self::id_of(ids, e)));
            }
        }
    }

    fn replication_index(replications: &mut Vec<Replication>, record: TenantRecord) -> u32 {
        match record.replication {
            None => NO_REPLICATION,
            Some(r) => match replications.iter().position(|known| *known == r) {
                Some(i) => i as u32,
                None => {
                    replications.push(r);
                    replications.len() as u32 - 1
                }
            },
        }
    }

    /// Adds a tenant; `Err` carries the file position of the tenant that already has this id.
    pub(crate) fn insert(
        &mut self,
        id: &TenantId,
        record: TenantRecord,
        order: usize,
        replications: &mut HashMap<Replication, u32>,
    ) -> Result<(), usize> {
        let bytes = id.as_bytes();
        if let Some(existing) = self.find(bytes) {
            return Err(existing.order as usize);
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(bytes);
        let replication = match record.replication {
            None => NO_REPLICATION,
            Some(r) => *replications.entry(r).or_insert_with(|| {
                self.replications.push(r);
                self.replications.len() as u32 - 1
            }),
        };
        let entry = Entry {
            start,
            replication,
            order: order as u32,
            len: bytes.len() as u8,
            home: record.home,
        };
        let hash = self.hasher.hash_one(bytes);
        let (ids, hasher) = (&self.ids, &self.hasher);
        self.index
            .insert_unique(hash, entry, |e| hasher.hash_one(Self::id_of(ids, e)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use regions::{RegionSet, ReplicationMode, UnixTime};

    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn lookups_duplicates_and_shared_replications() {
        let mut registry = Registry::with_capacity(0, 0);
        let mut shared = HashMap::new();
        let replication = Replication {
            regions: [RegionId(0)].into_iter().collect::<RegionSet>(),
            mode: ReplicationMode::ReadReplica,
            expires_at: Some(UnixTime(5)),
        };
        for i in 0..10_000 {
            let record = TenantRecord {
                home: RegionId((i % 2) as u8),
                replication: (i % 3 == 0).then_some(replication),
            };
            registry
                .insert(&id(&format!("t-{i}")), record, i, &mut shared)
                .unwrap();
        }
        assert_eq!(registry.len(), 10_000);
        assert_eq!(
            registry.replications.len(),
            1,
            "equal replications are stored once"
        );
        let r = registry.get(&id("t-9999")).unwrap();
        assert_eq!(r.home, RegionId(1));
        assert_eq!(
            registry.get(&id("t-9")).unwrap().replication,
            Some(replication)
        );
        assert_eq!(registry.get(&id("t-10000")), None);
        assert_eq!(registry.get(&id("t")), None);
        let again = TenantRecord {
            home: RegionId(0),
            replication: None,
        };
        assert_eq!(
            registry.insert(&id("t-42"), again, 10_000, &mut shared),
            Err(42)
        );
        assert_eq!(registry.iter().count(), 10_000);
        assert!(registry
            .iter()
            .any(|(id, r)| id == "t-7" && r.home == RegionId(1)));
        let moved = TenantRecord {
            home: RegionId(0),
            replication: Some(replication),
        };
        let changed = registry
            .with_change(&id("t-9999"), Some(moved))
            .with_change(&id("t-1"), None)
            .with_change(&id("new"), Some(moved));
        assert_eq!(changed.get(&id("t-9999")), Some(moved));
        assert_eq!(changed.get(&id("t-1")), None);
        assert_eq!(changed.get(&id("new")), Some(moved));
        assert_eq!(changed.len(), 10_000);
        assert_eq!(changed.replications.len(), 1, "replications stay shared");
        assert_eq!(
            registry.get(&id("t-1")).map(|r| r.home),
            Some(RegionId(1)),
            "the original is untouched"
        );
        assert!(
            registry.heap_bytes() < 10_000 * 60,
            "{} bytes",
            registry.heap_bytes()
        );
    }
}

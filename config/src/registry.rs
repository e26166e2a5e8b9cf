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

#[derive(Clone, Copy, Debug)]
struct Compact {
    home: RegionId,
    replication: u32,
}

/// Tenant id -> record. Immutable once built.
#[derive(Clone, Default)]
pub struct Registry {
    ids: Vec<u8>,
    /// `ends[i]`: where tenant i's id ends in `ids` (it starts where tenant i-1's ends).
    ends: Vec<u32>,
    records: Vec<Compact>,
    replications: Vec<Replication>,
    index: HashTable<u32>,
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
            ends: Vec::with_capacity(tenants),
            records: Vec::with_capacity(tenants),
            replications: Vec::new(),
            index: HashTable::with_capacity(tenants),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn id(&self, tenant: u32) -> &[u8] {
        let i = tenant as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.ids[start..self.ends[i] as usize]
    }

    fn record(&self, tenant: u32) -> TenantRecord {
        let compact = self.records[tenant as usize];
        TenantRecord {
            home: compact.home,
            replication: (compact.replication != NO_REPLICATION)
                .then(|| self.replications[compact.replication as usize]),
        }
    }

    fn find(&self, id: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index.find(hash, |&t| self.id(t) == id).copied()
    }

    pub fn get(&self, id: &TenantId) -> Option<TenantRecord> {
        self.find(id.as_bytes()).map(|t| self.record(t))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every tenant in registry-file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TenantRecord)> {
        (0..self.records.len() as u32).map(|t| {
            let id = std::str::from_utf8(self.id(t)).expect("ids are validated ASCII");
            (id, self.record(t))
        })
    }

    /// Heap bytes held, for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity()
            + self.ends.capacity() * 4
            + self.records.capacity() * std::mem::size_of::<Compact>()
            + self.replications.capacity() * std::mem::size_of::<Replication>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    /// Adds a tenant; `Err` carries the position of the tenant that already has this id.
    pub(crate) fn insert(
        &mut self,
        id: &TenantId,
        record: TenantRecord,
        replications: &mut HashMap<Replication, u32>,
    ) -> Result<(), usize> {
        let bytes = id.as_bytes();
        if let Some(existing) = self.find(bytes) {
            return Err(existing as usize);
        }
        let tenant = self.records.len() as u32;
        self.ids.extend_from_slice(bytes);
        self.ends.push(self.ids.len() as u32);
        let replication = match record.replication {
            None => NO_REPLICATION,
            Some(r) => *replications.entry(r).or_insert_with(|| {
                self.replications.push(r);
                self.replications.len() as u32 - 1
            }),
        };
        self.records.push(Compact {
            home: record.home,
            replication,
        });
        let hash = self.hasher.hash_one(bytes);
        let (ids, ends) = (&self.ids, &self.ends);
        let hasher = &self.hasher;
        self.index.insert_unique(hash, tenant, |&t| {
            let i = t as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            hasher.hash_one(&ids[start..ends[i] as usize])
        });
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
                .insert(&id(&format!("t-{i}")), record, &mut shared)
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
        assert_eq!(registry.insert(&id("t-42"), again, &mut shared), Err(42));
        let ids: Vec<&str> = registry.iter().take(3).map(|(id, _)| id).collect();
        assert_eq!(ids, ["t-0", "t-1", "t-2"]);
        assert!(
            registry.heap_bytes() < 10_000 * 60,
            "{} bytes",
            registry.heap_bytes()
        );
    }
}

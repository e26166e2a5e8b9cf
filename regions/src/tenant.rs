//! Tenants, their home region and their replication choices.

use std::fmt;
use std::ops::Deref;

use thiserror::Error;

use crate::topology::RegionId;

pub const MAX_TENANT_ID_LEN: usize = 64;

/// For every byte: its lowercase form when it may appear in a tenant id, else 0.
const ID_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let lower = (b as u8).to_ascii_lowercase();
        if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == b'-' {
            table[b] = lower;
        }
        b += 1;
    }
    table
};

/// A validated tenant id: 1 to 64 of `[a-z0-9-]`, lowercased.
///
/// Stored inline so that parsing one from a request never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId {
    len: u8,
    bytes: [u8; MAX_TENANT_ID_LEN],
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum InvalidTenantId {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is longer than {MAX_TENANT_ID_LEN} characters")]
    TooLong,
    #[error("tenant id may only contain a-z, 0-9 and '-'")]
    BadCharacter,
}

impl TenantId {
    /// Parses raw bytes (from a header, a host label or a path segment), lowercasing ASCII.
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidTenantId> {
        if raw.is_empty() {
            return Err(InvalidTenantId::Empty);
        }
        if raw.len() > MAX_TENANT_ID_LEN {
            return Err(InvalidTenantId::TooLong);
        }
        let mut bytes = [0u8; MAX_TENANT_ID_LEN];
        for (slot, &b) in bytes.iter_mut().zip(raw) {
            // One table load per byte: the lowercased byte, or 0 when it is not allowed.
            let allowed = ID_BYTES[usize::from(b)];
            if allowed == 0 {
                return Err(InvalidTenantId::BadCharacter);
            }
            *slot = allowed;
        }
        Ok(TenantId {
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The id's bytes, without the UTF-8 check `as_str` makes: for hashing and comparing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes from the checked alphabet are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("tenant ids are ASCII by construction")
    }
}

impl Deref for TenantId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", self.as_str())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since the Unix epoch. The engine never reads a clock; callers pass `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

/// A set of regions as a bit mask (a topology has at most 64 regions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegionSet(u64);

impl RegionSet {
    pub const EMPTY: RegionSet = RegionSet(0);

    pub fn insert(&mut self, region: RegionId) {
        self.0 |= 1 << region.0;
    }

    pub fn contains(self, region: RegionId) -> bool {
        self.0 & (1 << region.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Regions in id order.
    pub fn iter(self) -> impl Iterator<Item = RegionId> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let next = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            Some(RegionId(next))
        })
    }
}

impl FromIterator<RegionId> for RegionSet {
    fn from_iter<I: IntoIterator<Item = RegionId>>(iter: I) -> Self {
        let mut set = RegionSet::EMPTY;
        for region in iter {
            set.insert(region);
        }
        set
    }
}

/// What a replica region may serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicationMode {
    /// Only safe reads: GET, HEAD, OPTIONS.
    ReadReplica,
    /// Any method.
    Active,
}

/// A tenant's explicit consent to have its data served from other regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Replication {
    pub regions: RegionSet,
    pub mode: ReplicationMode,
    /// Replication stops at this instant (exclusive). `None`: no expiry.
    pub expires_at: Option<UnixTime>,
}

impl Replication {
    pub fn is_active_at(&self, now: UnixTime) -> bool {
        self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// Everything the engine needs to know about one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub home: RegionId,
    pub replication: Option<Replication>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_lowercased_and_checked() {
        assert_eq!(TenantId::parse(b"Acme-42").unwrap().as_str(), "acme-42");
        assert_eq!(TenantId::parse(b""), Err(InvalidTenantId::Empty));
        assert_eq!(
            TenantId::parse(b"ac_me"),
            Err(InvalidTenantId::BadCharacter)
        );
        assert_eq!(
            TenantId::parse(b"ac me"),
            Err(InvalidTenantId::BadCharacter)
        );
        assert_eq!(
            TenantId::parse("acmé".as_bytes()),
            Err(InvalidTenantId::BadCharacter)
        );
        assert_eq!(TenantId::parse(&[b'a'; 64]).unwrap().len(), 64);
        assert_eq!(TenantId::parse(&[b'a'; 65]), Err(InvalidTenantId::TooLong));
    }

    #[test]
    fn equal_ids_compare_equal_regardless_of_input_case() {
        assert_eq!(TenantId::parse(b"ACME"), TenantId::parse(b"acme"));
    }

    #[test]
    fn replication_expiry_is_exclusive() {
        let replication = Replication {
            regions: RegionSet::EMPTY,
            mode: ReplicationMode::Active,
            expires_at: Some(UnixTime(100)),
        };
        assert!(replication.is_active_at(UnixTime(99)));
        assert!(!replication.is_active_at(UnixTime(100)));
        assert!(!replication.is_active_at(UnixTime(101)));
        let forever = Replication {
            expires_at: None,
            ..replication
        };
        assert!(forever.is_active_at(UnixTime(i64::MAX)));
    }

    #[test]
    fn region_sets_iterate_in_id_order() {
        let set: RegionSet = [RegionId(5), RegionId(0), RegionId(63)]
            .into_iter()
            .collect();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![RegionId(0), RegionId(5), RegionId(63)]
        );
        assert!(set.contains(RegionId(63)));
        assert!(!set.contains(RegionId(1)));
    }
}

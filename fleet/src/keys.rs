//! Where a fleet's data lives under its prefix `P` (every router of the fleet uses the same):
//!
//! | key | value |
//! |---|---|
//! | `P/tenants/<id>` | the tenant's record, a registry file entry's JSON |
//! | `P/audit/<seq, 20 digits>` | one audit entry, the line `audit verify` checks |
//! | `P/audit-head` | `{"seq": N, "hash": "..."}`: the chain's end, compared in every write |
//! | `P/routers/<id>` | a router's id, label, version and applied revision, under its lease |
//!
//! Tenant ids, regions and audit entries: routing metadata, never customer content.

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn tenants(&self) -> String {
        format!("{}/tenants/", self.prefix)
    }

    pub(crate) fn tenant(&self, id: &str) -> String {
        format!("{}/tenants/{id}", self.prefix)
    }

    /// The tenant id of a key under [`Keys::tenants`].
    pub(crate) fn tenant_id<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("/tenants/")
    }

    pub(crate) fn audit(&self) -> String {
        format!("{}/audit/", self.prefix)
    }

    pub(crate) fn audit_entry(&self, seq: u64) -> String {
        format!("{}/audit/{seq:020}", self.prefix)
    }

    pub(crate) fn audit_head(&self) -> String {
        format!("{}/audit-head", self.prefix)
    }

    pub(crate) fn routers(&self) -> String {
        format!("{}/routers/", self.prefix)
    }

    pub(crate) fn router(&self, id: &str) -> String {
        format!("{}/routers/{id}", self.prefix)
    }
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
pub(crate) fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_stay_under_their_prefix() {
        let keys = Keys::new("/residency");
        assert_eq!(keys.tenant("acme"), "/residency/tenants/acme");
        assert_eq!(keys.tenant_id(b"/residency/tenants/acme"), Some("acme"));
        assert_eq!(
            keys.tenant_id(b"/residency/audit/00000000000000000001"),
            None
        );
        assert_eq!(keys.tenant_id(b"/other/tenants/acme"), None);
        // Audit keys sort in chain order.
        assert!(keys.audit_entry(9) < keys.audit_entry(10));
        assert_eq!(
            range_end("/residency/tenants/"),
            b"/residency/tenants0".to_vec()
        );
        // A fleet under `/residency` never reads `/residency2`'s tenants.
        assert_eq!(
            Keys::new("/residency2").tenant_id(b"/residency/tenants/a"),
            None
        );
    }
}

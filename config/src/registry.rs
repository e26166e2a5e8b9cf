use std::collections::HashMap;

use regions::{TenantId, TenantRecord};

/// Tenant id -> record. Immutable once built.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    tenants: HashMap<TenantId, TenantRecord>,
}

impl Registry {
    pub fn get(&self, id: &TenantId) -> Option<&TenantRecord> {
        self.tenants.get(id)
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TenantId, &TenantRecord)> {
        self.tenants.iter()
    }

    /// Returns the previous record when `id` was already present.
    pub(crate) fn insert(&mut self, id: TenantId, record: TenantRecord) -> Option<TenantRecord> {
        self.tenants.insert(id, record)
    }
}

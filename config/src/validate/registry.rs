//! The tenant registry file: every tenant checked against the topology.

use std::collections::HashMap;
use std::path::Path;

use regions::Topology;

use crate::error::code;
use crate::file::RegistryFile;
use crate::tenant::{tenant_id, tenant_record, TenantError};
use crate::{ConfigError, Registry};

use super::Problems;

pub(super) fn registry(
    file: &RegistryFile<'_>,
    topology: &Topology,
    path: &Path,
    errors: &mut Vec<ConfigError>,
) -> Registry {
    let mut problems = Problems { file: path, errors };
    let id_bytes: usize = file.tenants.iter().map(|t| t.id.len()).sum();
    if id_bytes > u32::MAX as usize || file.tenants.len() > u32::MAX as usize {
        problems.add(
            code::OUT_OF_RANGE,
            "tenants",
            format!(
                "{} tenants with {id_bytes} bytes of ids",
                file.tenants.len()
            ),
            "split the registry: at most 4 GiB of ids and 2^32 tenants per router",
        );
        return Registry::default();
    }
    let mut registry = Registry::with_capacity(file.tenants.len(), id_bytes);
    let mut shared_replications = HashMap::new();
    for (i, tenant) in file.tenants.iter().enumerate() {
        // Locations are formatted only when there is a problem: a million clean tenants
        // should not cost a million strings.
        let mut report = |e: TenantError| {
            problems.add(
                e.code(),
                format!("tenants[{i}]{}", e.field()),
                e.to_string(),
                e.fix(),
            )
        };
        let id = tenant_id(&tenant.id).map_err(&mut report).ok();
        let record = tenant_record(&tenant.region, tenant.replication.as_ref(), topology)
            .map_err(|errors| errors.into_iter().for_each(&mut report))
            .ok();
        let (Some(id), Some(record)) = (id, record) else {
            continue;
        };
        if let Err(first) = registry.insert(&id, record, i, &mut shared_replications) {
            problems.add(
                code::DUPLICATE_NAME,
                format!("tenants[{i}].id"),
                format!("tenant `{id}` is already defined at tenants[{first}]"),
                "keep one record per tenant",
            );
        }
    }
    registry
}

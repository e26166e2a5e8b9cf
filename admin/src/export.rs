//! `GET /v1/export`, streamed: the registry is written in chunks as the client reads them, so
//! an export of a million tenants (about 50 MB of JSON) never sits in memory whole. Only
//! the sorted list of the tenants (two words each) is built up front.

use regions::Topology;
use residency_config::{Registry, TenantView};

/// Bytes per chunk handed to the connection.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Format {
    /// The registry file's format (`residency_config::registry_json`), one tenant per line.
    Json,
    /// One row per tenant; replica regions joined with `;` (names never hold one).
    Csv,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Writes the export of `registry`, sorted by id, as chunks of about `chunk_bytes`, each
/// handed to `send`; stops early once `send` returns `false` (the client went away).
pub(crate) fn write(
    format: Format,
    registry: &Registry,
    topology: &Topology,
    chunk_bytes: usize,
    send: impl FnMut(Vec<u8>) -> bool,
) {
    if format == Format::Json {
        return residency_config::write_registry_json(registry, topology, chunk_bytes, send);
    }
    let tenants = registry.sorted();
    let mut out = residency_config::Chunked::new(chunk_bytes, tenants.len() * 32, send);
    out.buf().extend_from_slice(
        b"id,region,replication_regions,replication_mode,replication_expires_at\n",
    );
    for (id, record) in tenants {
        let view = TenantView::new(id, &record, topology);
        let (regions, mode, expires) = match &view.replication {
            Some(r) => (
                r.regions.join(";"),
                r.mode,
                r.expires_at.clone().unwrap_or_default(),
            ),
            None => (String::new(), "", String::new()),
        };
        out.buf().extend_from_slice(
            format!("{},{},{regions},{mode},{expires}\n", view.id, view.region).as_bytes(),
        );
        if !out.hand_on_when_full() {
            return;
        }
    }
    out.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use regions::{RegionId, TenantRecord};

    fn topology() -> Topology {
        residency_config::testing::two_regions()
    }

    fn registry(tenants: usize) -> Registry {
        let mut registry = Registry::default();
        for n in 0..tenants {
            let id = residency_config::tenant_id(&format!("t-{n:05}")).unwrap();
            let record = TenantRecord {
                home: RegionId((n % 2) as u8),
                replication: None,
            };
            registry = registry.with_change(&id, Some(record));
        }
        registry
    }

    fn export(format: Format, registry: &Registry, chunk_bytes: usize) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        write(format, registry, &topology(), chunk_bytes, |c| {
            chunks.push(c);
            true
        });
        chunks
    }

    #[test]
    fn the_json_stream_is_the_registry_file_byte_for_byte() {
        let topology = topology();
        for tenants in [0, 1, 2, 500] {
            let registry = registry(tenants);
            let streamed = export(Format::Json, &registry, 256).concat();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(residency_config::registry_json(&registry, &topology)).unwrap(),
                "{tenants} tenants"
            );
        }
    }

    #[test]
    fn chunks_stay_near_their_size_and_the_csv_has_a_row_per_tenant() {
        let registry = registry(500);
        let chunks = export(Format::Csv, &registry, 1024);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < 1024 + 64));
        let csv = String::from_utf8(chunks.concat()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 501);
        assert_eq!(lines[1], "t-00000,us,,,");
        assert_eq!(lines[500], "t-00499,eu,,,");
    }

    #[test]
    fn a_client_that_goes_away_stops_the_export() {
        let registry = registry(500);
        let mut sent = 0;
        write(Format::Json, &registry, &topology(), 256, |_| {
            sent += 1;
            sent < 3
        });
        assert_eq!(sent, 3);
    }
}

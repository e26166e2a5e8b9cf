//! One tenant's residency settings, checked the same way wherever they come from (the
//! registry file, the admin API), and written back in the registry file's format.

use regions::{
    RegionSet, Replication, ReplicationMode, TenantId, TenantRecord, Topology, UnixTime,
};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::code;
use crate::file::{ReplicationFile, ReplicationModeFile};
use crate::Registry;

/// Why one tenant's settings are not acceptable. `field` is the place inside the tenant's
/// object (`.region`, `.replication.regions[1]`...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("`{id}`: {reason}")]
    InvalidId { id: String, reason: String },
    #[error("tenant id `{id}` is not lowercase")]
    NotLowercase { id: String },
    #[error("region `{name}` is not defined in the config")]
    UnknownRegion {
        field: String,
        name: String,
        valid: Vec<String>,
    },
    #[error("no replica region is listed")]
    NoReplicaRegions,
    #[error("`{name}` is the tenant's home region")]
    ReplicationToHome { field: String, name: String },
    #[error("`{name}` is listed twice")]
    DuplicateReplica { field: String, name: String },
    #[error("`{text}` is not an RFC 3339 time: {reason}")]
    BadExpiry { text: String, reason: String },
}

impl TenantError {
    /// A stable machine-readable code (the admin API's `error`), also the code of the
    /// registry's [`ConfigError`](crate::ConfigError) for it.
    pub fn code(&self) -> &'static str {
        match self {
            TenantError::InvalidId { .. } | TenantError::NotLowercase { .. } => {
                code::INVALID_TENANT
            }
            TenantError::UnknownRegion { .. } => code::UNKNOWN_REGION,
            TenantError::ReplicationToHome { .. } => code::REPLICATION_TO_HOME_REGION,
            TenantError::NoReplicaRegions | TenantError::DuplicateReplica { .. } => {
                code::INVALID_REPLICATION
            }
            TenantError::BadExpiry { .. } => code::INVALID_EXPIRY,
        }
    }

    pub fn field(&self) -> &str {
        match self {
            TenantError::InvalidId { .. } | TenantError::NotLowercase { .. } => ".id",
            TenantError::UnknownRegion { field, .. }
            | TenantError::ReplicationToHome { field, .. }
            | TenantError::DuplicateReplica { field, .. } => field,
            TenantError::NoReplicaRegions => ".replication.regions",
            TenantError::BadExpiry { .. } => ".replication.expires_at",
        }
    }

    pub fn fix(&self) -> String {
        match self {
            TenantError::InvalidId { .. } => "use 1 to 64 characters of a-z, 0-9 and '-'".into(),
            TenantError::NotLowercase { id } => {
                format!(
                    "write it as `{}`: ids are compared lowercased",
                    id.to_lowercase()
                )
            }
            TenantError::UnknownRegion { valid, .. } => format!("use one of: {}", valid.join(", ")),
            TenantError::NoReplicaRegions => {
                "list at least one region, or remove `replication`".into()
            }
            TenantError::ReplicationToHome { .. } => "replicate only to other regions".into(),
            TenantError::DuplicateReplica { .. } => "remove the duplicate".into(),
            TenantError::BadExpiry { .. } => "write e.g. `2027-01-01T00:00:00Z`".into(),
        }
    }
}

/// Parses a tenant id exactly as written: valid and already lowercase.
pub fn tenant_id(id: &str) -> Result<TenantId, TenantError> {
    match TenantId::parse(id.as_bytes()) {
        Ok(parsed) if parsed.as_str() == id => Ok(parsed),
        Ok(_) => Err(TenantError::NotLowercase { id: id.to_owned() }),
        Err(e) => Err(TenantError::InvalidId {
            id: id.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Checks one tenant's region and replication against the topology, reporting every problem.
/// Allocates nothing when the settings are valid (a registry has millions of them).
pub fn tenant_record(
    region: &str,
    replication: Option<&ReplicationFile<'_>>,
    topology: &Topology,
) -> Result<TenantRecord, Vec<TenantError>> {
    let mut errors = Vec::new();
    let lookup = |name: &str, field: &dyn Fn() -> String, errors: &mut Vec<TenantError>| {
        let id = topology.region_by_name(name);
        if id.is_none() {
            errors.push(TenantError::UnknownRegion {
                field: field(),
                name: name.to_owned(),
                valid: topology.regions().map(|(_, r)| r.name.clone()).collect(),
            });
        }
        id
    };
    let home = lookup(region, &|| ".region".to_owned(), &mut errors);
    let replication = replication.and_then(|r| {
        let before = errors.len();
        if r.regions.is_empty() {
            errors.push(TenantError::NoReplicaRegions);
        }
        let mut regions = RegionSet::EMPTY;
        for (j, name) in r.regions.iter().enumerate() {
            let field = || format!(".replication.regions[{j}]");
            match lookup(name, &field, &mut errors) {
                Some(replica) if Some(replica) == home => {
                    errors.push(TenantError::ReplicationToHome {
                        field: field(),
                        name: name.to_string(),
                    })
                }
                Some(replica) if regions.contains(replica) => {
                    errors.push(TenantError::DuplicateReplica {
                        field: field(),
                        name: name.to_string(),
                    })
                }
                Some(replica) => regions.insert(replica),
                None => {}
            }
        }
        let expires_at =
            r.expires_at
                .as_ref()
                .and_then(|text| match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(t) => Some(UnixTime(t.unix_timestamp())),
                    Err(e) => {
                        errors.push(TenantError::BadExpiry {
                            text: text.to_string(),
                            reason: e.to_string(),
                        });
                        None
                    }
                });
        (errors.len() == before).then_some(Replication {
            regions,
            mode: match r.mode {
                ReplicationModeFile::ReadReplica => ReplicationMode::ReadReplica,
                ReplicationModeFile::Active => ReplicationMode::Active,
            },
            expires_at,
        })
    });
    match home {
        Some(home) if errors.is_empty() => Ok(TenantRecord { home, replication }),
        _ => Err(errors),
    }
}

/// One tenant in the registry file's format (and the admin API's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantView<'a> {
    pub id: &'a str,
    pub region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationView<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationView<'a> {
    pub regions: Vec<&'a str>,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl<'a> TenantView<'a> {
    pub fn new(id: &'a str, record: &TenantRecord, topology: &'a Topology) -> Self {
        TenantView {
            id,
            region: &topology.region(record.home).name,
            replication: record.replication.map(|r| ReplicationView {
                regions: r
                    .regions
                    .iter()
                    .map(|region| topology.region(region).name.as_str())
                    .collect(),
                mode: mode_name(r.mode),
                expires_at: r.expires_at.map(rfc3339),
            }),
        }
    }
}

pub fn mode_name(mode: ReplicationMode) -> &'static str {
    match mode {
        ReplicationMode::ReadReplica => "read-replica",
        ReplicationMode::Active => "active",
    }
}

/// `2027-01-01T00:00:00Z`; times outside what RFC 3339 can write are clamped to its range.
pub fn rfc3339(t: UnixTime) -> String {
    let clamped = t.0.clamp(-62_135_596_800, 253_402_300_799);
    OffsetDateTime::from_unix_timestamp(clamped)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .expect("a clamped time formats")
}

/// The registry in its file format, tenants sorted by id, one per line (diffs stay readable).
pub fn registry_json(registry: &Registry, topology: &Topology) -> Vec<u8> {
    let mut whole = Vec::new();
    write_registry_json(registry, topology, usize::MAX, |chunk| {
        whole = chunk;
        true
    });
    whole
}

/// [`registry_json`] in chunks of about `chunk_bytes`, each handed to `send`, so that a large
/// registry can be streamed without being held whole; stops once `send` returns `false`.
pub fn write_registry_json(
    registry: &Registry,
    topology: &Topology,
    chunk_bytes: usize,
    send: impl FnMut(Vec<u8>) -> bool,
) {
    let tenants = registry.sorted();
    let mut out = Chunked::new(chunk_bytes, tenants.len() * 48, send);
    out.buf().extend_from_slice(b"{ \"tenants\": [");
    for (i, (id, record)) in tenants.iter().enumerate() {
        out.buf()
            .extend_from_slice(if i == 0 { b"\n  " } else { b",\n  " });
        serde_json::to_writer(out.buf(), &TenantView::new(id, record, topology))
            .expect("tenant views serialize");
        if !out.hand_on_when_full() {
            return;
        }
    }
    out.buf().extend_from_slice(b"\n] }\n");
    out.finish();
}

/// Bytes written in chunks of about `chunk_bytes`, each handed to `send` once full; `send`
/// returns `false` when nobody wants more (a client that went away).
pub struct Chunked<F: FnMut(Vec<u8>) -> bool> {
    buf: Vec<u8>,
    chunk_bytes: usize,
    capacity: usize,
    send: F,
}

impl<F: FnMut(Vec<u8>) -> bool> Chunked<F> {
    /// `size_hint`: about how many bytes there will be in all.
    pub fn new(chunk_bytes: usize, size_hint: usize, send: F) -> Self {
        let capacity = chunk_bytes.min(size_hint) + 512;
        Chunked {
            buf: Vec::with_capacity(capacity),
            chunk_bytes,
            capacity,
            send,
        }
    }

    /// The chunk being written.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Hands the chunk on once it holds `chunk_bytes`; `false` once nobody wants more.
    pub fn hand_on_when_full(&mut self) -> bool {
        if self.buf.len() < self.chunk_bytes {
            return true;
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.capacity));
        (self.send)(full)
    }

    /// Hands on the last chunk.
    pub fn finish(mut self) {
        (self.send)(std::mem::take(&mut self.buf));
    }
}

/// One tenant's record as a registry store holds it: the JSON of a registry file's entry
/// (`{"id": ..., "region": ..., "replication": ...}`), checked against `topology`. `id` is the
/// id the store keeps it under; a record naming another id is refused.
pub fn tenant_from_json(
    id: &str,
    json: &[u8],
    topology: &Topology,
) -> Result<(TenantId, TenantRecord), String> {
    let file: crate::file::TenantFile<'_> =
        serde_json::from_slice(json).map_err(|e| format!("not a tenant record: {e}"))?;
    if file.id != id {
        return Err(format!("the record names tenant `{}`, not `{id}`", file.id));
    }
    let id = tenant_id(id).map_err(|e| e.to_string())?;
    let record =
        tenant_record(&file.region, file.replication.as_ref(), topology).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {e}", e.field().trim_start_matches('.')))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    Ok((id, record))
}

/// The JSON a registry store keeps for one tenant: [`tenant_from_json`] reads it back.
pub fn tenant_json(id: &str, record: &TenantRecord, topology: &Topology) -> Vec<u8> {
    serde_json::to_vec(&TenantView::new(id, record, topology)).expect("tenant views serialize")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn topology() -> Topology {
        crate::testing::two_regions()
    }

    fn replication<'a>(regions: &[&'a str], expires_at: Option<&'a str>) -> ReplicationFile<'a> {
        ReplicationFile {
            regions: regions.iter().map(|r| Cow::Borrowed(*r)).collect(),
            mode: ReplicationModeFile::ReadReplica,
            expires_at: expires_at.map(Cow::Borrowed),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_field_and_code() {
        let topology = topology();
        let errors = tenant_record(
            "mars",
            Some(&replication(&["us", "us", "venus"], Some("soon"))),
            &topology,
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.code(), e.field())).collect();
        assert_eq!(
            found,
            vec![
                ("unknown_region", ".region"),
                ("invalid_replication", ".replication.regions[1]"),
                ("unknown_region", ".replication.regions[2]"),
                ("invalid_expiry", ".replication.expires_at"),
            ]
        );
        assert_eq!(errors[0].fix(), "use one of: us, eu");
        let home = tenant_record("eu", Some(&replication(&["eu"], None)), &topology).unwrap_err();
        assert_eq!(home[0].code(), "replication_to_home_region");
        let none = tenant_record("eu", Some(&replication(&[], None)), &topology).unwrap_err();
        assert_eq!(none[0].code(), "invalid_replication");
    }

    #[test]
    fn ids_must_be_valid_and_lowercase() {
        assert_eq!(tenant_id("acme-1").unwrap().as_str(), "acme-1");
        assert_eq!(tenant_id("Acme").unwrap_err().code(), "invalid_tenant");
        assert_eq!(tenant_id("a_b").unwrap_err().code(), "invalid_tenant");
        assert_eq!(tenant_id("").unwrap_err().code(), "invalid_tenant");
    }

    #[test]
    fn records_round_trip_through_the_file_format() {
        let topology = topology();
        let record = tenant_record(
            "eu",
            Some(&replication(&["us"], Some("2027-01-01T00:00:00Z"))),
            &topology,
        )
        .unwrap();
        let view = TenantView::new("globex", &record, &topology);
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"id":"globex","region":"eu","replication":{"regions":["us"],"mode":"read-replica","expires_at":"2027-01-01T00:00:00Z"}}"#
        );
        assert_eq!(rfc3339(UnixTime(i64::MAX)), "9999-12-31T23:59:59Z");
    }
}

//! The router's configuration: a TOML file and the JSON tenant registry it points to.
//!
//! Four layers, each with one job:
//! - [`file`]: the on-disk format, `serde(deny_unknown_fields)` structs and nothing else;
//! - `schema`: reads both files into those structs, reporting every unknown field and wrong
//!   type rather than only serde's first;
//! - `validate`: turns file structs into a [`Snapshot`], collecting *every* problem with its
//!   location and a fix instead of stopping at the first;
//! - [`Snapshot`]: the immutable, validated configuration the data plane serves from. It is
//!   built once per (re)load and shared behind an `Arc`, so swapping it is one pointer store.

mod error;
pub mod file;
mod registry;
mod schema;
mod snapshot;
mod store;
mod tenant;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use registry::Registry;
pub use snapshot::{
    AccessLogSettings, ActiveCheck, AdminSettings, AdminToken, AuditSettings, Backend, Balance,
    ClientLimits, GeoIpSettings, HealthSettings, HttpCheck, Listen, OutlierSettings, ProxySettings,
    ReloadSettings, Role, ServerSettings, SiteConfig, Snapshot,
};
pub use store::{
    parent_dir, FileStore, PublishError, RegistryStore, Staged, StagedFile, TenantChange,
};
pub use tenant::{
    mode_name, registry_json, rfc3339, tenant_id, tenant_record, write_registry_json, Chunked,
    ReplicationView, TenantError, TenantView,
};
pub use tls::{
    CertificateSet, ClientIdentity, ListenerTls, ServerCertificate, TlsSettings, TlsVersion,
    UpstreamTls, CLOCK_SKEW_SECONDS,
};

use std::path::Path;

/// Reads, parses and validates a config file and the registry it names.
pub fn load(config_path: &Path) -> Result<Snapshot, ConfigErrors> {
    validate::load(config_path)
}

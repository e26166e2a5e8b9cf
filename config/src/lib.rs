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
//!
//! # Error codes
//!
//! Every [`ConfigError`] has a [`code`](ConfigError::code): a stable, machine-readable name for
//! the kind of mistake, for tools to act on; the message is for people and may be reworded (the
//! code is not part of it). Problems found once a file has been read also have a
//! [`field`](ConfigError::field), their place in the document (`regions[1].sites[0].lat`); read
//! and parse errors have a line and column instead. A tenant's own problems carry the code
//! [`TenantError::code`] gives them, which is also the admin API's `error`.
//!
//! | code | meaning |
//! |------|---------|
//! | `unreadable_file` | a file cannot be read (missing, a directory, no permission): the config, the registry, or a certificate, key or GeoIP database the config names |
//! | `syntax` | the text is not well-formed TOML or JSON, or writes one key twice |
//! | `unknown_field` | a field the format does not have, often a misspelt one |
//! | `missing_field` | a field the format requires is not there |
//! | `wrong_type` | a value of the wrong type (a number for a string), or a word not allowed there |
//! | `invalid_file` | a file reads but does not hold what the setting needs: no certificate, a key that is not the certificate's, not a City or Country database |
//! | `missing_setting` | something required is not configured, or a setting is given without one it needs |
//! | `conflicting_settings` | settings that cannot hold together, or one that has no effect with the others |
//! | `invalid_address` | not a resolvable `host:port`, or not an IP address or CIDR |
//! | `invalid_name` | a region, site, certificate or token name, or a host name, not in the accepted form |
//! | `invalid_value` | another value not in the accepted form: a pattern, policy, role, TLS version, HTTP method, path, status range, country code or digest |
//! | `out_of_range` | a number or a count outside what is accepted: zero, or past a limit |
//! | `duplicate_name` | a name used twice where it must be unique: a region, site, host, certificate, DNS name, token or tenant |
//! | `duplicate_entry` | the same entry listed twice: a backend, a tenant source, a token's secret |
//! | `unknown_region` | a region that is not defined in the config |
//! | `unknown_site` | a site that is not defined in the config |
//! | `invalid_tenant` | a tenant id that is not valid, or not lowercase |
//! | `invalid_replication` | a tenant's replication lists no region, or one region twice |
//! | `replication_to_home_region` | a tenant replicates to its own home region |
//! | `invalid_expiry` | a replication expiry that is not an RFC 3339 time |

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
    ClientLimits, EtcdSettings, EtcdTls, GeoIpSettings, HealthSettings, HttpCheck, Listen,
    OutlierSettings, ProxySettings, RegistryStatus, ReloadSettings, Role, ServerSettings,
    SiteConfig, Snapshot,
};
pub use store::{
    parent_dir, FileStore, PublishError, RegistryStore, Staged, StagedFile, TenantChange,
};
pub use tenant::{
    mode_name, registry_json, rfc3339, tenant_from_json, tenant_id, tenant_json, tenant_record,
    write_registry_json, Chunked, ReplicationView, TenantError, TenantView,
};
pub use tls::{
    CertificateSet, ClientIdentity, ListenerTls, ServerCertificate, TlsSettings, TlsVersion,
    UpstreamTls, CLOCK_SKEW_SECONDS,
};

use std::path::Path;

/// Reads, parses and validates a config file and the registry it names.
pub fn load(config_path: &Path) -> Result<Snapshot, ConfigErrors> {
    validate::load(config_path, None)
}

/// [`load`] for a reload: what `running` has open and is unchanged on disk (the GeoIP
/// database) is reused rather than read and verified again.
pub fn reload(config_path: &Path, running: &Snapshot) -> Result<Snapshot, ConfigErrors> {
    validate::load(config_path, Some(running))
}

/// A registry document (`{"tenants": [...]}`) checked against `topology`, as a registry file
/// is; `path` names it in the errors.
pub fn registry_from_text(
    path: &Path,
    text: &str,
    topology: &regions::Topology,
) -> Result<Registry, ConfigErrors> {
    let mut errors = Vec::new();
    let registry = validate::registry_text(path, text, topology, &mut errors);
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(ConfigErrors(errors))
    }
}

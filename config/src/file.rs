//! The file formats exactly as operators write them. No defaults are resolved and nothing is
//! checked here beyond shape; `validate` does the rest.

use serde::Deserialize;

/// `router.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: ListenFile,
    pub tenancy: TenancyFile,
    pub regions: Vec<RegionFile>,
    #[serde(default)]
    pub proxy: ProxyFile,
    #[serde(default)]
    pub server: ServerFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    pub http: String,
    pub admin: Option<String>,
    pub metrics: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyFile {
    pub sources: Vec<SourceFile>,
    pub unknown: UnknownFile,
    /// Relative paths are resolved against the config file's directory.
    pub registry: String,
}

/// One of `{ host = "..." }`, `{ header = "..." }`, `{ path = "...", strip = bool }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub host: Option<String>,
    pub header: Option<String>,
    pub path: Option<String>,
    pub strip: Option<bool>,
}

/// `unknown = "reject"` or `unknown = { region = "us" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UnknownFile {
    Keyword(String),
    Fallback { region: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionFile {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub sites: Vec<SiteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub backends: Vec<String>,
}

/// `[proxy]`: data-plane behaviour. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    pub expose_decision: Option<bool>,
    pub connect_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub failed_backend_cooldown_ms: Option<u64>,
}

/// `[server]`: process behaviour. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub threads: Option<usize>,
    pub shutdown_grace_seconds: Option<u64>,
}

/// `tenants.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub tenants: Vec<TenantFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    pub id: String,
    pub region: String,
    pub replication: Option<ReplicationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationFile {
    pub regions: Vec<String>,
    pub mode: ReplicationModeFile,
    /// RFC 3339, e.g. `2027-01-01T00:00:00Z`.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicationModeFile {
    ReadReplica,
    Active,
}

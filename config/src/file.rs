//! The file formats exactly as operators write them. No defaults are resolved and nothing is
//! checked here beyond shape; `validate` does the rest.

use std::borrow::Cow;

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
    /// Health-check and outlier-detection defaults for every site.
    #[serde(default)]
    pub health: HealthFile,
    pub geoip: Option<GeoIpFile>,
    #[serde(default)]
    pub reload: ReloadFile,
    pub access_log: Option<AccessLogFile>,
    #[serde(default)]
    pub server: ServerFile,
    pub admin: Option<AdminFile>,
    pub tls: Option<TlsFile>,
}

/// `[tls]`: certificates of `listen.https` and the TLS policy of every hop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// `"1.3"` (default) or `"1.2"`.
    pub min_version: Option<String>,
    /// Offer HTTP/2 over TLS (ALPN); default true.
    pub h2: Option<bool>,
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
    pub admin: Option<ListenerTlsFile>,
    pub metrics: Option<ListenerTlsFile>,
}

/// `[[tls.certificates]]`: a chain and key; the names it serves are its DNS subject
/// alternative names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub name: String,
    /// PEM chain, leaf first; relative to the config file.
    pub cert: String,
    pub key: String,
    /// Served when the client's server name matches no certificate (default: the first).
    pub default: Option<bool>,
}

/// `[tls.admin]`, `[tls.metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    pub cert: String,
    pub key: String,
    /// Require client certificates issued by this CA bundle.
    pub client_ca: Option<String>,
}

/// `[regions.sites.tls]`: TLS from the router to the site's backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// Server name sent and verified; required unless `insecure_skip_verify`.
    pub sni: Option<String>,
    /// CA bundle the backends' certificates must chain to (default: the system's roots).
    pub ca: Option<String>,
    /// Client certificate and key, for backends that require mutual TLS.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Offer HTTP/2 to the backends (ALPN); default false.
    pub h2: Option<bool>,
    pub insecure_skip_verify: Option<bool>,
}

/// `[admin]`: the admin API served on `listen.admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// The audit log (JSON lines, hash-chained); relative to the config file.
    pub audit_log: String,
    /// The audit log is rotated when it would grow past this size.
    pub audit_max_file_bytes: Option<u64>,
    /// Rotated audit files younger than this are never deleted.
    pub audit_retention_days: Option<u32>,
    /// Largest request body the API reads.
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
    /// A TOML file of more `[[tokens]]` (relative to the config file): the callers kept apart
    /// from the config, e.g. in a Kubernetes Secret, and watched with it.
    pub tokens_file: Option<String>,
}

/// The file `admin.tokens_file` names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    #[serde(default)]
    pub tokens: Vec<TokenFile>,
}

/// `[[admin.tokens]]`: who may call the admin API. Only the token's SHA-256 is stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the bearer token (`residency-router token hash`).
    pub sha256: String,
    /// For `tenant-admin`: the tenants it manages.
    pub tenants: Option<Vec<String>>,
}

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// A file (relative to the config file) or `-` for standard output.
    pub path: String,
    pub buffer_records: Option<usize>,
}

/// `[reload]`: how changes are picked up, and the guard against a wrong registry file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadFile {
    pub watch: Option<bool>,
    pub watch_interval_ms: Option<u64>,
    pub max_moved_percent: Option<u32>,
    pub always_allowed_moves: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// Plain HTTP; at least one of `http` and `https` is required.
    pub http: Option<String>,
    pub https: Option<String>,
    pub admin: Option<String>,
    pub metrics: Option<String>,
    /// HTTP/2 with prior knowledge on `http`, next to HTTP/1.1.
    pub h2c: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyFile {
    pub sources: Vec<SourceFile>,
    pub unknown: UnknownFile,
    /// A file (relative paths are resolved against the config file's directory), or
    /// `{ etcd = { ... } }` for a fleet sharing one registry.
    pub registry: RegistrySetting,
}

/// `registry = "tenants.json"` or `registry = { etcd = { ... } }`. Read by hand rather than
/// as an untagged enum, so that a misspelt key inside the table is reported as itself.
#[derive(Debug)]
pub enum RegistrySetting {
    File(String),
    Etcd(Box<EtcdFile>),
}

impl<'de> Deserialize<'de> for RegistrySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RegistrySetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a registry file name, or a table `{ etcd = { endpoints = [...], prefix = \"/residency\", cache = \"registry.cache\" } }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RegistrySetting::File(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut etcd = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "etcd" if etcd.is_none() => {
                            etcd = Some(Box::new(map.next_value::<EtcdFile>()?))
                        }
                        "etcd" => return Err(serde::de::Error::duplicate_field("etcd")),
                        other => return Err(serde::de::Error::unknown_field(other, &["etcd"])),
                    }
                }
                etcd.map(RegistrySetting::Etcd)
                    .ok_or_else(|| serde::de::Error::missing_field("etcd"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[tenancy] registry = { etcd = { ... } }` (SPEC 10): the fleet's shared registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFile {
    /// `http://host:port` or `https://host:port` client URLs of the cluster's members.
    pub endpoints: Vec<String>,
    /// Every router of a fleet uses the same prefix: `/residency`.
    pub prefix: String,
    /// The local copy a router starts from when etcd is down (relative to the config file).
    pub cache: String,
    pub max_staleness_s: Option<u64>,
    pub cache_max_age_s: Option<u64>,
    /// This router in `GET /v1/fleet`; the host name by default.
    pub router_id: Option<String>,
    /// Where this router runs (a region or PoP label), shown in `GET /v1/fleet`.
    pub router_region: Option<String>,
    pub username: Option<String>,
    /// A file holding the password (kept out of the config, which is often in git).
    pub password_file: Option<String>,
    pub tls: Option<EtcdTlsFile>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsFile {
    /// PEM CA bundle the members' certificates chain to.
    pub ca: String,
    /// Client certificate and key, for clusters that require them.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// The name the members' certificates carry, when it is not the endpoints' host.
    pub domain: Option<String>,
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
    pub backends: Vec<BackendFile>,
    pub balance: Option<BalanceFile>,
    /// Overrides of the `[health]` defaults for this site, field by field.
    pub health: Option<HealthFile>,
    pub tls: Option<UpstreamTlsFile>,
}

/// `"ip:port"` or `{ address = "ip:port", weight = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BackendFile {
    Address(String),
    Weighted(WeightedBackendFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackendFile {
    pub address: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalanceFile {
    WeightedRoundRobin,
    LeastInFlight,
}

/// `[health]` and `[regions.sites.health]`. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub check: Option<CheckFile>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub start_unhealthy: Option<bool>,
    pub http_method: Option<String>,
    pub http_path: Option<String>,
    pub http_host: Option<String>,
    /// `[min, max]`, inclusive.
    pub http_expect_status: Option<Vec<u16>>,
    pub eject_after_failures: Option<u32>,
    pub base_ejection_ms: Option<u64>,
    pub max_ejection_ms: Option<u64>,
    pub max_ejected_percent: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckFile {
    None,
    Tcp,
    Http,
}

/// `[geoip]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpFile {
    /// A MaxMind City or Country database; relative paths are resolved against the config file.
    pub database: String,
    /// ISO country code -> site name, for Country databases.
    #[serde(default)]
    pub countries: std::collections::BTreeMap<String, String>,
    pub reload_check_ms: Option<u64>,
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
    pub upstream_keepalive_pool: Option<usize>,
    pub max_attempts: Option<u32>,
    /// CIDRs (or addresses) of proxies in front of the router whose `x-forwarded-for` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub client_keepalive_timeout_ms: Option<u64>,
    pub client_header_timeout_ms: Option<u64>,
    pub client_max_head_bytes: Option<usize>,
    pub max_requests_per_connection: Option<u32>,
    pub client_h2_idle_timeout_ms: Option<u64>,
    pub max_client_connections: Option<usize>,
}

/// `[server]`: process behaviour. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub threads: Option<usize>,
    pub shutdown_grace_seconds: Option<u64>,
    /// Unix socket for `residency-router reload`; relative to the config file.
    pub control_socket: Option<String>,
    /// Unix socket over which a running router hands its listeners to `run --upgrade`.
    pub upgrade_socket: Option<String>,
}

/// `tenants.json`. Strings borrow from the file's text: a million tenants parse without a
/// million small allocations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile<'a> {
    #[serde(borrow)]
    pub tenants: Vec<TenantFile<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub region: Cow<'a, str>,
    #[serde(borrow)]
    pub replication: Option<ReplicationFile<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationFile<'a> {
    #[serde(borrow)]
    pub regions: Vec<Cow<'a, str>>,
    pub mode: ReplicationModeFile,
    /// RFC 3339, e.g. `2027-01-01T00:00:00Z`.
    #[serde(borrow)]
    pub expires_at: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicationModeFile {
    ReadReplica,
    Active,
}

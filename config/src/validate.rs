//! File structs -> [`Snapshot`], collecting every problem instead of stopping at the first.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use regions::{
    HostPattern, PathPattern, TenantIdentifier, TenantSource, Topology, UnknownTenantPolicy,
};

use crate::file::{
    BackendFile, BalanceFile, CheckFile, ConfigFile, GeoIpFile, HealthFile, ListenerTlsFile,
    ProxyFile, RegistryFile, ReloadFile, ServerFile, SourceFile, UnknownFile, UpstreamTlsFile,
};
use crate::snapshot::{
    AccessLogSettings, ActiveCheck, AdminSettings, AdminToken, AuditSettings, Backend, Balance,
    ClientLimits, GeoIpSettings, HealthSettings, HttpCheck, Listen, OutlierSettings, ProxySettings,
    ReloadSettings, Role, ServerSettings, SiteConfig, MAX_HEAD_BYTES_LIMIT,
};
use crate::tenant::{tenant_id, tenant_record, TenantError};
use crate::tls::{self, CertificateSet, ListenerTls, TlsSettings, TlsVersion, UpstreamTls};
use crate::{ConfigError, ConfigErrors, Registry, Snapshot};

/// Accumulates problems for one file.
struct Problems<'a> {
    file: &'a Path,
    errors: &'a mut Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(&mut self, at: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_owned(),
            at: at.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

pub(crate) fn load(config_path: &Path) -> Result<Snapshot, ConfigErrors> {
    let text = read(config_path).map_err(|e| ConfigErrors(vec![e]))?;
    let file: ConfigFile = crate::schema::from_toml(config_path, &text).map_err(ConfigErrors)?;
    let registry_path = relative_to(config_path, &file.tenancy.registry);

    let mut errors = Vec::new();
    let mut problems = Problems {
        file: config_path,
        errors: &mut errors,
    };
    let listen = listen(&file, &mut problems);
    let health_defaults = health(
        &HealthSettings::default(),
        &file.health,
        "health",
        &mut problems,
    );
    let (topology, sites) = topology(&file, config_path, &health_defaults, &mut problems);
    let geoip = file
        .geoip
        .as_ref()
        .and_then(|g| geoip(g, config_path, &topology, &mut problems));
    let identifier = identifier(&file.tenancy.sources, &topology, &mut problems);
    let unknown = unknown_policy(&file.tenancy.unknown, &topology, &mut problems);
    let proxy = proxy_settings(&file.proxy, &mut problems);
    let server = server_settings(&file.server, config_path, &mut problems);
    let reload = reload_settings(&file.reload, &mut problems);
    let admin = admin_settings(&file, config_path, &mut problems);
    let tls = tls_settings(&file, config_path, &mut problems);
    let access_log = file.access_log.as_ref().map(|log| {
        let fix = "records held before dropping: 1 to 1000000, e.g. 8192";
        let mut buffer_records = positive(
            log.buffer_records,
            8192,
            "access_log.buffer_records",
            fix,
            &mut problems,
        );
        if buffer_records > 1_000_000 {
            problems.add(
                "access_log.buffer_records",
                format!("{buffer_records} records would be allocated up front"),
                fix,
            );
            buffer_records = 8192;
        }
        AccessLogSettings {
            file: (log.path != "-").then(|| relative_to(config_path, &log.path)),
            buffer_records,
        }
    });

    // The registry is checked even when the config has problems, so one run reports both.
    let registry = match read(&registry_path) {
        Ok(text) => match crate::schema::registry_from_json(&registry_path, &text) {
            Ok(file) => registry(&file, &topology, &registry_path, &mut errors),
            Err(found) => {
                errors.extend(found);
                Registry::default()
            }
        },
        Err(e) => {
            errors.push(e);
            Registry::default()
        }
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Snapshot {
        config_path: config_path.to_owned(),
        registry_path,
        listen: listen.expect("no listen errors were reported"),
        topology,
        identifier,
        unknown,
        registry: std::sync::Arc::new(registry),
        sites,
        geoip,
        proxy,
        reload,
        access_log,
        server,
        admin,
        tls,
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

fn socket_addr(value: &str, at: &str, problems: &mut Problems<'_>) -> Option<SocketAddr> {
    match value.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) | Err(_) => {
            problems.add(
                at,
                format!("`{value}` is not a resolvable `host:port` address"),
                "write an address such as `127.0.0.1:9101` or `backend.internal:8080`",
            );
            None
        }
    }
}

fn listen(file: &ConfigFile, problems: &mut Problems<'_>) -> Option<Listen> {
    let listen = &file.listen;
    if listen.http.is_none() && listen.https.is_none() {
        problems.add(
            "listen",
            "no listener for client traffic",
            "set listen.http (plain HTTP), listen.https (TLS), or both",
        );
    }
    let h2c = listen.h2c.unwrap_or(false);
    if h2c && listen.http.is_none() {
        problems.add(
            "listen.h2c",
            "h2c is served on listen.http, which is not set",
            "set listen.http, or remove h2c",
        );
    }
    let mut optional = |value: &Option<String>, at: &str| {
        value.as_deref().and_then(|v| socket_addr(v, at, problems))
    };
    Some(Listen {
        http: optional(&listen.http, "listen.http"),
        https: optional(&listen.https, "listen.https"),
        admin: optional(&listen.admin, "listen.admin"),
        metrics: optional(&listen.metrics, "listen.metrics"),
        h2c,
    })
}

fn topology(
    file: &ConfigFile,
    config_path: &Path,
    health_defaults: &HealthSettings,
    problems: &mut Problems<'_>,
) -> (Topology, Vec<SiteConfig>) {
    if file.regions.is_empty() {
        problems.add(
            "regions",
            "no region is configured",
            "add at least one [[regions]] table with one site",
        );
    }
    if file.regions.len() > Topology::MAX_REGIONS {
        problems.add(
            "regions",
            format!("{} regions configured", file.regions.len()),
            format!("configure at most {} regions", Topology::MAX_REGIONS),
        );
        return (Topology::default(), Vec::new());
    }

    let mut region_index: HashMap<&str, usize> = HashMap::new();
    let mut site_owner: HashMap<&str, &str> = HashMap::new();
    let mut host_owner: HashMap<String, &str> = HashMap::new();
    let mut backend_owner: HashMap<SocketAddr, String> = HashMap::new();
    // What goes into the topology: a problem is reported once and the offending item is left
    // out, never its whole region, so later checks (tenants naming the region) stay accurate.
    let mut accepted = Vec::new();
    let mut site_configs: Vec<SiteConfig> = Vec::new();

    for (r, region) in file.regions.iter().enumerate() {
        let at = format!("regions[{r}]");
        let name = region.name.as_str();
        let mut region_ok = true;
        if !is_name(name) {
            problems.add(
                format!("{at}.name"),
                format!("`{name}` is not a valid region name"),
                "use 1 to 32 characters of a-z, 0-9 and '-'",
            );
            region_ok = false;
        } else if let Some(first) = region_index.get(name) {
            problems.add(
                format!("{at}.name"),
                format!("region `{name}` is already defined at regions[{first}]"),
                "give every region a unique name, or merge the two tables",
            );
            region_ok = false;
        } else {
            region_index.insert(name, r);
        }

        let mut hosts = Vec::new();
        for (h, host) in region.hosts.iter().enumerate() {
            let host = host.to_ascii_lowercase();
            if !is_hostname(&host) {
                problems.add(
                    format!("{at}.hosts[{h}]"),
                    format!("`{host}` is not a host name"),
                    "write a bare host name such as `eu.api.example.com` (no scheme, port or path)",
                );
            } else if let Some(owner) = host_owner.get(&host) {
                problems.add(
                    format!("{at}.hosts[{h}]"),
                    format!("host `{host}` already names region `{owner}`"),
                    "a region host must name exactly one region",
                );
            } else {
                host_owner.insert(host.clone(), name);
                hosts.push(host);
            }
        }

        if region.sites.is_empty() {
            problems.add(
                format!("{at}.sites"),
                format!("region `{name}` has no site"),
                "add at least one [[regions.sites]] table with backends",
            );
        }
        let mut sites = Vec::new();
        let mut region_sites = Vec::new();
        for (s, site) in region.sites.iter().enumerate() {
            let at = format!("{at}.sites[{s}]");
            let mut site_ok = true;
            if !is_name(&site.name) {
                problems.add(
                    format!("{at}.name"),
                    format!("`{}` is not a valid site name", site.name),
                    "use 1 to 32 characters of a-z, 0-9 and '-'",
                );
                site_ok = false;
            } else if let Some(owner) = site_owner.get(site.name.as_str()) {
                problems.add(
                    format!("{at}.name"),
                    format!(
                        "site `{}` is already defined in region `{owner}`",
                        site.name
                    ),
                    "a site belongs to exactly one region: rename one of them",
                );
                site_ok = false;
            } else {
                site_owner.insert(&site.name, name);
            }
            if !(-90.0..=90.0).contains(&site.lat) {
                problems.add(
                    format!("{at}.lat"),
                    format!("latitude {} is out of range", site.lat),
                    "use a latitude between -90 and 90",
                );
            }
            if !(-180.0..=180.0).contains(&site.lon) {
                problems.add(
                    format!("{at}.lon"),
                    format!("longitude {} is out of range", site.lon),
                    "use a longitude between -180 and 180",
                );
            }
            if site.backends.is_empty() {
                problems.add(
                    format!("{at}.backends"),
                    format!("site `{}` has no backend", site.name),
                    "list at least one `ip:port` in backends",
                );
            }
            let mut backends = Vec::new();
            for (b, backend) in site.backends.iter().enumerate() {
                let at = format!("{at}.backends[{b}]");
                let (configured, weight) = match backend {
                    BackendFile::Address(address) => (address, 1),
                    BackendFile::Weighted(w) => (&w.address, w.weight),
                };
                if !(1..=1000).contains(&weight) {
                    problems.add(
                        format!("{at}.weight"),
                        format!("weight {weight} is out of range"),
                        "use a weight from 1 to 1000",
                    );
                }
                let Some(addr) = socket_addr(configured, &at, problems) else {
                    continue;
                };
                if let Some(first) = backend_owner.get(&addr) {
                    problems.add(
                        at,
                        format!("backend {addr} is already a backend of site `{first}`"),
                        "a backend belongs to exactly one site: remove one of the entries",
                    );
                    continue;
                }
                backend_owner.insert(addr, format!("{name}/{}", site.name));
                backends.push(Backend {
                    configured: configured.clone(),
                    addr,
                    weight: weight.clamp(1, 1000),
                });
            }
            let health = match &site.health {
                Some(overrides) => health(
                    health_defaults,
                    overrides,
                    &format!("{at}.health"),
                    problems,
                ),
                None => health_defaults.clone(),
            };
            if site_ok {
                sites.push((site.name.clone(), site.lat, site.lon));
                region_sites.push(SiteConfig {
                    backends,
                    balance: match site.balance {
                        None | Some(BalanceFile::WeightedRoundRobin) => Balance::WeightedRoundRobin,
                        Some(BalanceFile::LeastInFlight) => Balance::LeastInFlight,
                    },
                    health,
                    tls: site.tls.as_ref().and_then(|tls| {
                        upstream_tls(tls, config_path, &format!("{at}.tls"), problems)
                    }),
                });
            }
        }
        if region_ok {
            // Site ids are assigned in this same order, so site configs stay aligned with them.
            site_configs.extend(region_sites);
            accepted.push((name, hosts, sites));
        }
    }

    match Topology::new(accepted) {
        Ok(topology) => (topology, site_configs),
        Err(e) => {
            problems.add(
                "regions",
                e.to_string(),
                "fix the regions and sites named above",
            );
            (Topology::default(), Vec::new())
        }
    }
}

fn is_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn identifier(
    sources: &[SourceFile],
    topology: &Topology,
    problems: &mut Problems<'_>,
) -> TenantIdentifier {
    if sources.is_empty() {
        problems.add(
            "tenancy.sources",
            "no tenant source is configured",
            "add at least one of { host = \"{tenant}.app.example.com\" }, { header = \"x-tenant-id\" }, { path = \"/t/{tenant}/\" }",
        );
    }
    let mut parsed = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let at = format!("tenancy.sources[{i}]");
        let kinds = [&source.host, &source.header, &source.path]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if kinds != 1 {
            problems.add(
                at,
                format!(
                    "a source must have exactly one of `host`, `header` or `path`, found {kinds}"
                ),
                "split it into one source per table entry",
            );
            continue;
        }
        if source.strip.is_some() && source.path.is_none() {
            problems.add(
                format!("{at}.strip"),
                "`strip` only applies to a path source",
                "remove `strip`, or use it with `path`",
            );
        }
        let result = if let Some(pattern) = &source.host {
            HostPattern::parse(pattern).map(|p| {
                for (_, region) in topology.regions() {
                    for host in &region.hosts {
                        if p.extract(host).is_some() {
                            problems.add(
                                format!("{at}.host"),
                                format!("pattern `{pattern}` matches region host `{host}` of region `{}`", region.name),
                                "a region host is a region hint, never a tenant: use a tenant pattern under another domain, e.g. `{tenant}.app.example.com`",
                            );
                        }
                    }
                }
                TenantSource::Host(p)
            })
        } else if let Some(name) = &source.header {
            TenantSource::header(name)
        } else {
            let pattern = source.path.as_deref().unwrap_or_default();
            PathPattern::parse(pattern, source.strip.unwrap_or(false)).map(TenantSource::Path)
        };
        match result {
            Ok(source) if parsed.contains(&source) => problems.add(
                at,
                "the same tenant source is listed twice",
                "remove the duplicate",
            ),
            Ok(source) => parsed.push(source),
            Err(e) => problems.add(
                at,
                e.to_string(),
                "see the example in config/examples/router.toml",
            ),
        }
    }
    TenantIdentifier::new(parsed)
}

fn unknown_policy(
    unknown: &UnknownFile,
    topology: &Topology,
    problems: &mut Problems<'_>,
) -> UnknownTenantPolicy {
    match unknown {
        UnknownFile::Keyword(k) if k == "reject" => UnknownTenantPolicy::Reject,
        UnknownFile::Keyword(k) => {
            problems.add(
                "tenancy.unknown",
                format!("`{k}` is not a policy"),
                "write `unknown = \"reject\"` or `unknown = { region = \"NAME\" }`",
            );
            UnknownTenantPolicy::Reject
        }
        UnknownFile::Fallback { region } => match topology.region_by_name(region) {
            Some(id) => UnknownTenantPolicy::Fallback(id),
            None => {
                problems.add(
                    "tenancy.unknown.region",
                    format!("region `{region}` is not defined"),
                    format!("use one of: {}", region_list(topology)),
                );
                UnknownTenantPolicy::Reject
            }
        },
    }
}

fn region_list(topology: &Topology) -> String {
    let names: Vec<&str> = topology.regions().map(|(_, r)| r.name.as_str()).collect();
    names.join(", ")
}

/// `value` when set and non-zero, else `default`. Zero is reported: every such setting is a
/// count or a duration where zero would silently disable the proxy.
fn positive<T: Copy + PartialEq + From<u8>>(
    value: Option<T>,
    default: T,
    at: &str,
    fix: &str,
    problems: &mut Problems<'_>,
) -> T {
    match value {
        Some(v) if v == T::from(0) => {
            problems.add(at, "must be greater than 0", fix);
            default
        }
        Some(v) => v,
        None => default,
    }
}

/// Longest duration any setting accepts: past a day, a value is a typo, and it would
/// overflow the clocks the health state keeps.
const MAX_SETTING_MS: u64 = 24 * 60 * 60 * 1000;

fn millis(
    value: Option<u64>,
    default: Duration,
    at: &str,
    problems: &mut Problems<'_>,
) -> Duration {
    let default_ms = default.as_millis() as u64;
    let fix = "use a positive number of milliseconds, at most a day (86400000)";
    let ms = positive(value, default_ms, at, fix, problems);
    if ms > MAX_SETTING_MS {
        problems.add(at, format!("{ms} ms is longer than a day"), fix);
        return default;
    }
    Duration::from_millis(ms)
}

fn proxy_settings(file: &ProxyFile, problems: &mut Problems<'_>) -> ProxySettings {
    let d = ProxySettings::default();
    let at = |field: &str| format!("proxy.{field}");
    ProxySettings {
        expose_decision: file.expose_decision.unwrap_or(d.expose_decision),
        connect_timeout: millis(
            file.connect_timeout_ms,
            d.connect_timeout,
            &at("connect_timeout_ms"),
            problems,
        ),
        read_timeout: millis(
            file.read_timeout_ms,
            d.read_timeout,
            &at("read_timeout_ms"),
            problems,
        ),
        write_timeout: millis(
            file.write_timeout_ms,
            d.write_timeout,
            &at("write_timeout_ms"),
            problems,
        ),
        idle_timeout: millis(
            file.idle_timeout_ms,
            d.idle_timeout,
            &at("idle_timeout_ms"),
            problems,
        ),
        trusted_proxies: trusted_proxies(
            file.trusted_proxies.as_deref().unwrap_or_default(),
            problems,
        ),
        max_attempts: positive(
            file.max_attempts,
            d.max_attempts,
            &at("max_attempts"),
            "1 means no retry",
            problems,
        ),
        client: client_limits(file, problems),
    }
}

fn client_limits(file: &ProxyFile, problems: &mut Problems<'_>) -> ClientLimits {
    let d = ClientLimits::default();
    let keepalive_timeout = match file.client_keepalive_timeout_ms {
        // Zero is meaningful here: no keep-alive.
        Some(0) => Duration::ZERO,
        ms => millis(
            ms,
            d.keepalive_timeout,
            "proxy.client_keepalive_timeout_ms",
            problems,
        ),
    };
    let max_head_bytes = positive(
        file.client_max_head_bytes,
        d.max_head_bytes,
        "proxy.client_max_head_bytes",
        "use a number of bytes; 65536 holds any ordinary request head",
        problems,
    );
    if max_head_bytes > MAX_HEAD_BYTES_LIMIT {
        problems.add(
            "proxy.client_max_head_bytes",
            format!("{max_head_bytes} is more than the HTTP engine reads ({MAX_HEAD_BYTES_LIMIT})"),
            format!("use at most {MAX_HEAD_BYTES_LIMIT}"),
        );
    }
    ClientLimits {
        keepalive_timeout,
        header_timeout: millis(
            file.client_header_timeout_ms,
            d.header_timeout,
            "proxy.client_header_timeout_ms",
            problems,
        ),
        max_head_bytes: max_head_bytes.min(MAX_HEAD_BYTES_LIMIT),
        max_requests_per_connection: positive(
            file.max_requests_per_connection,
            d.max_requests_per_connection,
            "proxy.max_requests_per_connection",
            "1 closes every connection after its first request",
            problems,
        ),
        h2_idle_timeout: millis(
            file.client_h2_idle_timeout_ms,
            d.h2_idle_timeout,
            "proxy.client_h2_idle_timeout_ms",
            problems,
        ),
        max_connections: positive(
            file.max_client_connections,
            d.max_connections,
            "proxy.max_client_connections",
            "use the number of client connections the router may hold at once (and a file \
             descriptor limit above twice that)",
            problems,
        ),
    }
}

fn server_settings(
    file: &ServerFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> ServerSettings {
    let d = ServerSettings::default();
    ServerSettings {
        threads: positive(
            file.threads,
            d.threads,
            "server.threads",
            "omit it to use one thread per core",
            problems,
        ),
        shutdown_grace: file
            .shutdown_grace_seconds
            .map_or(d.shutdown_grace, Duration::from_secs),
        control_socket: file
            .control_socket
            .as_ref()
            .map(|p| relative_to(config_path, p)),
        upgrade_socket: file
            .upgrade_socket
            .as_ref()
            .map_or(d.upgrade_socket, |p| relative_to(config_path, p)),
    }
}

/// Paths in the config file are relative to the file's directory.
/// Six years, the retention auditors of the seed customers ask for.
const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 6 * 366;

fn admin_settings(
    file: &ConfigFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> Option<AdminSettings> {
    let admin = match (&file.listen.admin, &file.admin) {
        (None, None) => return None,
        (Some(_), None) => {
            problems.add(
                "admin",
                "listen.admin is set but there is no [admin] table",
                "add [admin] with `audit_log = \"audit.log\"` and [[admin.tokens]], or remove listen.admin",
            );
            return None;
        }
        (None, Some(_)) => {
            problems.add(
                "listen.admin",
                "[admin] is configured but the admin API has no address",
                "set listen.admin, e.g. `admin = \"127.0.0.1:9901\"`",
            );
            return None;
        }
        (Some(_), Some(admin)) => admin,
    };
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (i, token) in admin.tokens.iter().enumerate() {
        let at = |field: &str| format!("admin.tokens[{i}].{field}");
        if !is_name(&token.name) {
            problems.add(
                at("name"),
                format!("`{}` is not a usable name", token.name),
                "use 1 to 32 characters of a-z, 0-9 and '-' (it is written to the audit log)",
            );
        } else if let Some(j) = tokens.iter().position(|t| t.name == token.name) {
            problems.add(
                at("name"),
                format!("`{}` is already the name of admin.tokens[{j}]", token.name),
                "give every token its own name",
            );
        }
        let role = match Role::ALL.into_iter().find(|r| r.as_str() == token.role) {
            Some(role) => role,
            None => {
                problems.add(
                    at("role"),
                    format!("unknown role `{}`", token.role),
                    "use one of: operator, tenant-admin, auditor, viewer",
                );
                Role::Viewer
            }
        };
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(&token.sha256, &mut sha256).is_err() {
            problems.add(
                at("sha256"),
                "not 64 hexadecimal digits",
                "store the SHA-256 of the token: `residency-router token hash` prints it",
            );
        } else if let Some(j) = tokens.iter().position(|t| t.sha256 == sha256) {
            problems.add(
                at("sha256"),
                format!("the same token as admin.tokens[{j}]"),
                "give every caller its own token",
            );
        }
        let mut tenants = Vec::new();
        match (role, &token.tenants) {
            (Role::TenantAdmin, None) => problems.add(
                at("tenants"),
                "a tenant-admin token names no tenants",
                "list the tenants it manages, e.g. `tenants = [\"acme\"]`",
            ),
            (Role::TenantAdmin, Some(list)) => {
                if list.is_empty() {
                    problems.add(
                        at("tenants"),
                        "a tenant-admin token names no tenants",
                        "list the tenants it manages, e.g. `tenants = [\"acme\"]`",
                    );
                }
                for (j, id) in list.iter().enumerate() {
                    match tenant_id(id) {
                        Ok(id) => tenants.push(id),
                        Err(e) => {
                            problems.add(format!("{}[{j}]", at("tenants")), e.to_string(), e.fix())
                        }
                    }
                }
            }
            (_, Some(_)) => problems.add(
                at("tenants"),
                format!(
                    "only tenant-admin tokens are scoped to tenants, this one is `{}`",
                    role.as_str()
                ),
                "remove `tenants`, or make the role tenant-admin",
            ),
            (_, None) => {}
        }
        tokens.push(AdminToken {
            name: token.name.clone(),
            role,
            sha256,
            tenants,
        });
    }
    let max_file_bytes = positive(
        admin.audit_max_file_bytes,
        64 << 20,
        "admin.audit_max_file_bytes",
        "use a size in bytes of at least 65536, e.g. 67108864",
        problems,
    );
    if max_file_bytes < 65536 {
        problems.add(
            "admin.audit_max_file_bytes",
            format!("{max_file_bytes} bytes would rotate every few entries"),
            "use a size in bytes of at least 65536, e.g. 67108864",
        );
    }
    let retention_days = positive(
        admin.audit_retention_days,
        DEFAULT_AUDIT_RETENTION_DAYS,
        "admin.audit_retention_days",
        "use a number of days, e.g. 2196 (six years)",
        problems,
    );
    let max_body_bytes = positive(
        admin.max_body_bytes,
        64 << 10,
        "admin.max_body_bytes",
        "use a size in bytes, e.g. 65536",
        problems,
    );
    Some(AdminSettings {
        tokens,
        audit: AuditSettings {
            path: relative_to(config_path, &admin.audit_log),
            max_file_bytes,
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
        },
        max_body_bytes,
    })
}

fn relative_to(config_path: &Path, path: &str) -> std::path::PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(path)
}

fn reload_settings(file: &ReloadFile, problems: &mut Problems<'_>) -> ReloadSettings {
    let d = ReloadSettings::default();
    let max_moved_percent = match file.max_moved_percent {
        Some(p) if p > 100 => {
            problems.add(
                "reload.max_moved_percent",
                format!("{p}% is more than every tenant"),
                "use 0 to 100",
            );
            d.max_moved_percent
        }
        Some(p) => p,
        None => d.max_moved_percent,
    };
    ReloadSettings {
        watch: file.watch.unwrap_or(d.watch),
        watch_interval: millis(
            file.watch_interval_ms,
            d.watch_interval,
            "reload.watch_interval_ms",
            problems,
        ),
        max_moved_percent,
        always_allowed_moves: file.always_allowed_moves.unwrap_or(d.always_allowed_moves),
    }
}

fn trusted_proxies(list: &[String], problems: &mut Problems<'_>) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        match entry.parse::<ipnet::IpNet>() {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => match entry.parse::<std::net::IpAddr>() {
                Ok(ip) => nets.push(ip.into()),
                Err(_) => problems.add(
                    format!("proxy.trusted_proxies[{i}]"),
                    format!("`{entry}` is not a CIDR or an IP address"),
                    "write e.g. `10.0.0.0/8`, `127.0.0.1` or `fd00::/8`",
                ),
            },
        }
    }
    nets
}

/// Applies `overrides` on top of `base`, checking every field it sets and the combination.
fn health(
    base: &HealthSettings,
    overrides: &HealthFile,
    at: &str,
    problems: &mut Problems<'_>,
) -> HealthSettings {
    let o = overrides;
    let field = |name: &str| format!("{at}.{name}");
    let mut h = base.clone();
    if let Some(check) = o.check {
        h.check = match (check, &base.check) {
            (CheckFile::None, _) => ActiveCheck::Disabled,
            (CheckFile::Tcp, _) => ActiveCheck::Tcp,
            (CheckFile::Http, ActiveCheck::Http(inherited)) => ActiveCheck::Http(inherited.clone()),
            (CheckFile::Http, _) => ActiveCheck::Http(HttpCheck {
                method: "GET".into(),
                path: HttpCheck::DEFAULT_PATH.into(),
                host: HttpCheck::DEFAULT_HOST.into(),
                expect_status: 200..=399,
            }),
        };
    }
    let sets_http = o.http_method.is_some()
        || o.http_path.is_some()
        || o.http_host.is_some()
        || o.http_expect_status.is_some();
    match &mut h.check {
        ActiveCheck::Http(http) => {
            if let Some(method) = &o.http_method {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    problems.add(
                        field("http_method"),
                        format!("`{method}` is not an HTTP method"),
                        "write e.g. `GET` or `HEAD`",
                    );
                } else {
                    http.method = method.clone();
                }
            }
            if let Some(path) = &o.http_path {
                let parses = path.len() <= 4096 && path.parse::<http::uri::PathAndQuery>().is_ok();
                if !path.starts_with('/') || !parses {
                    problems.add(
                        field("http_path"),
                        format!("`{path}` is not a request path"),
                        "write a path starting with `/`, e.g. `/healthz`",
                    );
                } else {
                    http.path = path.clone();
                }
            }
            if let Some(host) = &o.http_host {
                if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
                    problems.add(
                        field("http_host"),
                        format!("`{host}` cannot be a Host header"),
                        "write a host name such as `health.internal`",
                    );
                } else {
                    http.host = host.clone();
                }
            }
            if let Some(range) = &o.http_expect_status {
                match range.as_slice() {
                    [min, max] if (100..=599).contains(min) && min <= max && *max <= 599 => {
                        http.expect_status = *min..=*max;
                    }
                    _ => problems.add(
                        field("http_expect_status"),
                        format!("{range:?} is not a status range"),
                        "write `[min, max]` within 100..=599, e.g. `[200, 399]`",
                    ),
                }
            }
        }
        _ if sets_http => problems.add(
            field("check"),
            "http_* settings are set but the check is not `http`",
            "set `check = \"http\"`, or remove the http_* settings",
        ),
        _ => {}
    }
    h.interval = millis(
        o.interval_ms,
        base.interval,
        &field("interval_ms"),
        problems,
    );
    h.timeout = millis(o.timeout_ms, base.timeout, &field("timeout_ms"), problems);
    let threshold_fix = "1 flips on the first result";
    h.healthy_threshold = positive(
        o.healthy_threshold,
        base.healthy_threshold,
        &field("healthy_threshold"),
        threshold_fix,
        problems,
    );
    h.unhealthy_threshold = positive(
        o.unhealthy_threshold,
        base.unhealthy_threshold,
        &field("unhealthy_threshold"),
        threshold_fix,
        problems,
    );
    h.start_unhealthy = o.start_unhealthy.unwrap_or(base.start_unhealthy);
    let b = &base.outlier;
    h.outlier = OutlierSettings {
        eject_after_failures: positive(
            o.eject_after_failures,
            b.eject_after_failures,
            &field("eject_after_failures"),
            "1 ejects on the first failure",
            problems,
        ),
        base_ejection: millis(
            o.base_ejection_ms,
            b.base_ejection,
            &field("base_ejection_ms"),
            problems,
        ),
        max_ejection: millis(
            o.max_ejection_ms,
            b.max_ejection,
            &field("max_ejection_ms"),
            problems,
        ),
        max_ejected_percent: match o.max_ejected_percent {
            Some(p) if p > 100 => {
                problems.add(
                    field("max_ejected_percent"),
                    format!("{p}% is more than all backends"),
                    "use 0 to 100 (0 turns passive ejection off)",
                );
                b.max_ejected_percent
            }
            Some(p) => p,
            None => b.max_ejected_percent,
        },
    };
    if h.start_unhealthy && h.check == ActiveCheck::Disabled {
        problems.add(
            field("start_unhealthy"),
            "backends would wait forever for a check that never runs",
            "turn on a check (`check = \"tcp\"` or `\"http\"`), or set `start_unhealthy = false`",
        );
    }
    if h.timeout > h.interval {
        problems.add(
            field("timeout_ms"),
            format!(
                "the check timeout ({:?}) is longer than its interval ({:?})",
                h.timeout, h.interval
            ),
            "make timeout_ms at most interval_ms",
        );
    }
    if h.outlier.base_ejection > h.outlier.max_ejection {
        problems.add(
            field("base_ejection_ms"),
            "the first ejection is longer than the longest one",
            "make base_ejection_ms at most max_ejection_ms",
        );
    }
    h
}

fn geoip(
    file: &GeoIpFile,
    config_path: &Path,
    topology: &Topology,
    problems: &mut Problems<'_>,
) -> Option<GeoIpSettings> {
    let path = relative_to(config_path, &file.database);
    let database = geoip::LiveDatabase::open_shared(&path)
        .map_err(|e| {
            problems.add(
                "geoip.database",
                e.to_string(),
                "point it at a MaxMind City or Country database (.mmdb), or remove [geoip]",
            )
        })
        .ok();
    // The table is checked even when the database is unreadable: every problem at once.
    let mut countries = std::collections::HashMap::new();
    for (code, site) in &file.countries {
        let at = format!("geoip.countries.{code}");
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.add(
                &at,
                format!("`{code}` is not an ISO 3166-1 alpha-2 code"),
                "write two capital letters, e.g. `DE`",
            );
            continue;
        }
        match topology.site_by_name(site) {
            Some(id) => {
                countries.insert(code.clone(), id);
            }
            None => problems.add(
                &at,
                format!("site `{site}` is not defined"),
                "name a site from [[regions.sites]]",
            ),
        }
    }
    let reload_check = millis(
        file.reload_check_ms,
        Duration::from_secs(5),
        "geoip.reload_check_ms",
        problems,
    );
    let database = database?;
    if database.current().kind() == geoip::Kind::Country && countries.is_empty() {
        problems.add(
            "geoip.countries",
            "a Country database needs a country -> site table",
            "add e.g. `countries = { DE = \"frankfurt\", IE = \"dublin\" }`",
        );
    }
    Some(GeoIpSettings {
        database,
        countries,
        reload_check,
    })
}

fn registry(
    file: &RegistryFile<'_>,
    topology: &Topology,
    path: &Path,
    errors: &mut Vec<ConfigError>,
) -> Registry {
    let mut problems = Problems { file: path, errors };
    let id_bytes: usize = file.tenants.iter().map(|t| t.id.len()).sum();
    if id_bytes > u32::MAX as usize || file.tenants.len() > u32::MAX as usize {
        problems.add(
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
            problems.add(format!("tenants[{i}]{}", e.field()), e.to_string(), e.fix())
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
                format!("tenants[{i}].id"),
                format!("tenant `{id}` is already defined at tenants[{first}]"),
                "keep one record per tenant",
            );
        }
    }
    registry
}

/// Adds a TLS file problem at `at`; `None` leaves the item out.
fn tls_checked<T>(
    result: Result<T, tls::TlsProblem>,
    at: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    result.map_err(|e| problems.add(at, e.problem, e.fix)).ok()
}

fn tls_settings(file: &ConfigFile, config_path: &Path, problems: &mut Problems<'_>) -> TlsSettings {
    let default = TlsSettings::default();
    let Some(tls) = &file.tls else {
        if file.listen.https.is_some() {
            problems.add(
                "listen.https",
                "listen.https is set but there is no [tls] table with certificates",
                "add [[tls.certificates]] with `name`, `cert` and `key`, or remove listen.https",
            );
        }
        return default;
    };
    let min_version = match tls.min_version.as_deref() {
        None | Some("1.3") => TlsVersion::Tls13,
        Some("1.2") => TlsVersion::Tls12,
        Some(other) => {
            problems.add(
                "tls.min_version",
                format!("`{other}` is not a TLS version the router speaks"),
                "use \"1.3\" (the default) or, only for clients that cannot do 1.3, \"1.2\"",
            );
            TlsVersion::Tls13
        }
    };
    match (file.listen.https.is_some(), tls.certificates.is_empty()) {
        (true, true) => problems.add(
            "tls.certificates",
            "listen.https is set but no certificate is configured",
            "add [[tls.certificates]] with `name`, `cert` and `key`",
        ),
        (false, false) => problems.add(
            "tls.certificates",
            "certificates are configured but listen.https is not set",
            "set listen.https, e.g. `https = \"0.0.0.0:8443\"`, or remove the certificates",
        ),
        _ => {}
    }
    let mut certificates = Vec::new();
    let mut default_index = None;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, certificate) in tls.certificates.iter().enumerate() {
        let at = format!("tls.certificates[{i}]");
        if !is_name(&certificate.name) || ["admin", "metrics"].contains(&certificate.name.as_str())
        {
            problems.add(
                format!("{at}.name"),
                format!("`{}` is not a usable certificate name", certificate.name),
                "use 1 to 32 of [a-z0-9-], other than `admin` and `metrics` (the listeners' own)",
            );
        }
        if let Some(first) = names.insert(&certificate.name, i) {
            problems.add(
                format!("{at}.name"),
                format!(
                    "`{}` is also the name of tls.certificates[{first}]",
                    certificate.name
                ),
                "give every certificate its own name",
            );
        }
        if certificate.default == Some(true) {
            if let Some(first) = default_index.replace(certificate.name.clone()) {
                problems.add(
                    format!("{at}.default"),
                    format!("`{first}` is already the default certificate"),
                    "mark at most one certificate `default = true`",
                );
            }
        }
        let loaded = tls::server_certificate(
            &certificate.name,
            relative_to(config_path, &certificate.cert),
            relative_to(config_path, &certificate.key),
        );
        if let Some(loaded) = tls_checked(loaded, &at, problems) {
            certificates.push((certificate.default == Some(true), loaded));
        }
    }
    let default_position = certificates.iter().position(|(d, _)| *d).unwrap_or(0);
    let certificates = certificates.into_iter().map(|(_, c)| c).collect();
    let certificates = match CertificateSet::new(certificates, default_position) {
        Ok(set) => set,
        Err((name, first, second)) => {
            problems.add(
                "tls.certificates",
                format!("`{name}` is a name of both certificate `{first}` and `{second}`"),
                "serve each name from one certificate: remove it from one of them",
            );
            CertificateSet::default()
        }
    };
    let mut listener = |table: &Option<ListenerTlsFile>, name: &str, listen: &Option<String>| {
        let table = table.as_ref()?;
        let at = format!("tls.{name}");
        if listen.is_none() {
            problems.add(
                &at,
                format!("[tls.{name}] is set but listen.{name} is not"),
                format!("set listen.{name} or remove [tls.{name}]"),
            );
        }
        let certificate = tls::server_certificate(
            name,
            relative_to(config_path, &table.cert),
            relative_to(config_path, &table.key),
        );
        let certificate = tls_checked(certificate, &at, problems)?;
        let client_ca_path = table
            .client_ca
            .as_ref()
            .map(|p| relative_to(config_path, p));
        let client_verifier = match &client_ca_path {
            Some(path) => Some(tls_checked(
                tls::client_verifier(path),
                &format!("{at}.client_ca"),
                problems,
            )?),
            None => None,
        };
        Some(ListenerTls {
            certificate: Arc::new(certificate),
            client_verifier,
            client_ca_path,
        })
    };
    let admin = listener(&tls.admin, "admin", &file.listen.admin);
    let metrics = listener(&tls.metrics, "metrics", &file.listen.metrics);
    TlsSettings {
        min_version,
        h2: tls.h2.unwrap_or(default.h2),
        certificates: Arc::new(certificates),
        admin,
        metrics,
    }
}

fn upstream_tls(
    file: &UpstreamTlsFile,
    config_path: &Path,
    at: &str,
    problems: &mut Problems<'_>,
) -> Option<UpstreamTls> {
    let insecure = file.insecure_skip_verify == Some(true);
    let sni = file.sni.clone().unwrap_or_default();
    // Pingora turns verification off for an empty SNI: that must be a decision, never a typo.
    if sni.is_empty() && !insecure {
        problems.add(
            format!("{at}.sni"),
            "no server name to verify the backends' certificates against",
            "set `sni` to the name on the backends' certificates; only for testing, \
             `insecure_skip_verify = true` turns verification off",
        );
    } else if !sni.is_empty() && !is_hostname(&sni) && sni.parse::<std::net::IpAddr>().is_err() {
        problems.add(
            format!("{at}.sni"),
            format!("`{sni}` is not a host name"),
            "use the DNS name (or IP address) on the backends' certificates",
        );
    }
    let [ca_path, cert_path, key_path] = [&file.ca, &file.client_cert, &file.client_key]
        .map(|path| path.as_ref().map(|p| relative_to(config_path, p)));
    let files: Vec<_> = [&ca_path, &cert_path, &key_path]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let ca = match &ca_path {
        Some(path) => {
            let at = format!("{at}.ca");
            let certificates = tls_checked(tls::certificates(path), &at, problems)?;
            let der = certificates.iter().map(|c| c.to_vec()).collect();
            // Pingora makes trust anchors of them on every connection: check that they can be.
            tls_checked(tls::trust_anchors(certificates, path), &at, problems)?;
            Some(der)
        }
        None => None,
    };
    let client = match (&cert_path, &key_path) {
        (Some(cert), Some(key)) => Some(tls_checked(
            tls::client_identity(cert, key),
            &format!("{at}.client_cert"),
            problems,
        )?),
        (None, None) => None,
        _ => {
            problems.add(
                at,
                "a client certificate needs both `client_cert` and `client_key`",
                "set both, or neither",
            );
            return None;
        }
    };
    Some(UpstreamTls {
        sni,
        verify: !insecure,
        ca,
        client,
        h2: file.h2.unwrap_or(false),
        files,
    })
}

//! File structs -> [`Snapshot`], collecting every problem instead of stopping at the first.
//!
//! One module per section of the config file, each turning its `file` structs into the
//! snapshot's settings and reporting what is wrong through [`Problems`]; this module holds the
//! entry point and the helpers several sections share:
//! - `listen`: `[listen]`;
//! - `topology`: `[[regions]]`, their sites and backends;
//! - `identify`: `[tenancy]` sources and the unknown-tenant policy;
//! - `proxy`: `[proxy]`, with client limits and trusted proxies;
//! - `health`: `[health]` and each site's overrides;
//! - `server`: the small process-level tables, `[server]`, `[reload]` and `[access_log]`;
//! - `admin`: `[admin]` and its tokens;
//! - `tls`: `[tls]` and each site's upstream `tls`;
//! - `geoip`: `[geoip]`;
//! - `registry`: the tenant registry file;
//! - `fleet`: the etcd store a fleet's registry lives in instead.

mod admin;
mod fleet;
mod geoip;
mod health;
mod identify;
mod listen;
mod proxy;
mod registry;
mod server;
mod tls;
mod topology;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::code;
use crate::file::{ConfigFile, RegistrySetting};
use crate::snapshot::{HealthSettings, RegistryStatus};
use crate::{ConfigError, ConfigErrors, Registry, Snapshot};

/// Accumulates problems for one file, each with the code of its kind of mistake (one of
/// `crate::error::code`, listed in `ConfigError::CODES`).
struct Problems<'a> {
    file: &'a Path,
    errors: &'a mut Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(
        &mut self,
        code: &'static str,
        at: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_owned(),
            code,
            at: at.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// `previous`: the configuration running now, whose open files a reload may reuse.
pub(crate) fn load(
    config_path: &Path,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, ConfigErrors> {
    let text = read(config_path).map_err(|e| ConfigErrors(vec![e]))?;
    let file: ConfigFile = crate::schema::from_toml(config_path, &text).map_err(ConfigErrors)?;

    let mut errors = Vec::new();
    let mut problems = Problems {
        file: config_path,
        errors: &mut errors,
    };
    let listen = listen::listen(&file, &mut problems);
    let health_defaults = health::health(
        &HealthSettings::default(),
        &file.health,
        "health",
        &mut problems,
    );
    let (topology, sites) = topology::topology(&file, config_path, &health_defaults, &mut problems);
    let geoip = file.geoip.as_ref().and_then(|g| {
        let open = previous.and_then(|p| p.geoip.as_ref()).map(|g| &g.database);
        geoip::geoip(g, config_path, &topology, open, &mut problems)
    });
    let identifier = identify::identifier(&file.tenancy.sources, &topology, &mut problems);
    let unknown = identify::unknown_policy(&file.tenancy.unknown, &topology, &mut problems);
    let proxy = proxy::proxy_settings(&file.proxy, &mut problems);
    let server = server::server_settings(&file.server, config_path, &mut problems);
    let reload = server::reload_settings(&file.reload, &mut problems);
    let admin = admin::admin_settings(&file, config_path, &mut problems);
    let tls = tls::tls_settings(&file, config_path, &mut problems);
    let access_log = file
        .access_log
        .as_ref()
        .map(|log| server::access_log_settings(log, config_path, &mut problems));

    let (registry_path, registry, etcd, registry_status) = match &file.tenancy.registry {
        RegistrySetting::File(name) => {
            let path = relative_to(config_path, name);
            // Checked even when the config has problems, so one run reports both.
            let registry = match read(&path) {
                Ok(text) => registry_text(&path, &text, &topology, &mut errors),
                Err(e) => {
                    errors.push(e);
                    Registry::default()
                }
            };
            (path, registry, None, RegistryStatus::SERVING)
        }
        RegistrySetting::Etcd(etcd) => {
            let settings = fleet::etcd_settings(etcd, config_path, &mut problems);
            let cache = relative_to(config_path, &etcd.cache);
            // The registry comes from etcd once the router runs. A reload keeps the one it
            // serves, checked against the new regions (a region it names may be gone).
            let running = previous.filter(|p| p.etcd.is_some());
            let (registry, status) = match running {
                Some(p) => {
                    let text = crate::registry_json(&p.registry, &p.topology);
                    let text = String::from_utf8(text).expect("registry JSON is UTF-8");
                    let label = Path::new("(the registry from etcd)");
                    let registry = registry_text(label, &text, &topology, &mut errors);
                    (registry, p.registry_status)
                }
                None => (
                    Registry::default(),
                    RegistryStatus {
                        loaded: false,
                        replication_suspended: false,
                    },
                ),
            };
            (cache, registry, settings.map(std::sync::Arc::new), status)
        }
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Snapshot {
        config_path: config_path.to_owned(),
        registry_path,
        etcd,
        registry_status,
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

/// A registry document read and checked against `topology`; problems are added to `errors`.
pub(crate) fn registry_text(
    path: &Path,
    text: &str,
    topology: &regions::Topology,
    errors: &mut Vec<ConfigError>,
) -> Registry {
    match crate::schema::registry_from_json(path, text) {
        Ok(file) => registry::registry(&file, topology, path, errors),
        Err(found) => {
            errors.extend(found);
            Registry::default()
        }
    }
}

/// A whole file as text; the error names the file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

/// A `host:port`, resolved once at load: a name that does not resolve is reported here, not
/// at the first request.
fn socket_addr(value: &str, at: &str, problems: &mut Problems<'_>) -> Option<SocketAddr> {
    match value.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) | Err(_) => {
            problems.add(
                code::INVALID_ADDRESS,
                at,
                format!("`{value}` is not a resolvable `host:port` address"),
                "write an address such as `127.0.0.1:9101` or `backend.internal:8080`",
            );
            None
        }
    }
}

/// The names of regions, sites, certificates and tokens: 1 to 32 of `[a-z0-9-]`.
fn is_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A DNS host name (region hosts, upstream SNI): dot-separated labels of `[A-Za-z0-9-]`.
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
            problems.add(code::OUT_OF_RANGE, at, "must be greater than 0", fix);
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
        problems.add(
            code::OUT_OF_RANGE,
            at,
            format!("{ms} ms is longer than a day"),
            fix,
        );
        return default;
    }
    Duration::from_millis(ms)
}

/// Paths in the config file are relative to the file's directory.
fn relative_to(config_path: &Path, path: &str) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(path)
}

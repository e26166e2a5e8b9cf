//! `[tenancy] registry = { etcd = { ... } }`: where a fleet's shared registry lives.

use std::path::Path;
use std::time::Duration;

use crate::error::code;
use crate::file::EtcdFile;
use crate::snapshot::{EtcdSettings, EtcdTls};

use super::{is_name, millis, positive, relative_to, Problems};

const DEFAULT_MAX_STALENESS_S: u64 = 300;
const DEFAULT_CACHE_MAX_AGE_S: u64 = 7 * 24 * 60 * 60;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn etcd_settings(
    file: &EtcdFile,
    config_path: &Path,
    problems: &mut Problems<'_>,
) -> Option<EtcdSettings> {
    let at = |field: &str| format!("tenancy.registry.etcd.{field}");
    let before = problems.errors.len();
    if file.endpoints.is_empty() {
        problems.add(
            code::MISSING_SETTING,
            at("endpoints"),
            "no etcd endpoint is listed",
            "list the client URLs of the cluster's members, e.g. `endpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]`",
        );
    }
    let tls_wanted = file.tls.is_some();
    for (i, endpoint) in file.endpoints.iter().enumerate() {
        let scheme = if endpoint.starts_with("https://") {
            "https"
        } else if endpoint.starts_with("http://") {
            "http"
        } else {
            problems.add(
                code::INVALID_ADDRESS,
                at(&format!("endpoints[{i}]")),
                format!("`{endpoint}` is not an `http://host:port` or `https://host:port` URL"),
                "write a member's client URL, e.g. `http://127.0.0.1:2379`",
            );
            continue;
        };
        let authority = &endpoint[scheme.len() + 3..];
        let well_formed = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !well_formed {
            problems.add(
                code::INVALID_ADDRESS,
                at(&format!("endpoints[{i}]")),
                format!("`{endpoint}` has no `host:port` after the scheme (or has a path)"),
                "write a member's client URL, e.g. `http://127.0.0.1:2379`",
            );
        } else if (scheme == "https") != tls_wanted {
            problems.add(
                code::CONFLICTING_SETTINGS,
                at(&format!("endpoints[{i}]")),
                format!("`{endpoint}` is {scheme}, but tenancy.registry.etcd.tls is {}", if tls_wanted { "set" } else { "not set" }),
                "use https:// endpoints with a [tls] table (ca = ...), or http:// endpoints without one",
            );
        }
    }
    let prefix = file.prefix.as_str();
    let prefix_ok = prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_ok {
        problems.add(
            code::INVALID_VALUE,
            at("prefix"),
            format!("`{prefix}` is not a usable key prefix"),
            "start with `/`, no trailing `/`, no spaces, e.g. `/residency`; every router of the fleet uses the same one",
        );
    }
    let seconds = |value: Option<u64>, default: u64, field: &str, problems: &mut Problems<'_>| {
        Duration::from_secs(positive(
            value,
            default,
            &at(field),
            "use a positive number of seconds",
            problems,
        ))
    };
    let max_staleness = seconds(
        file.max_staleness_s,
        DEFAULT_MAX_STALENESS_S,
        "max_staleness_s",
        problems,
    );
    let cache_max_age = seconds(
        file.cache_max_age_s,
        DEFAULT_CACHE_MAX_AGE_S,
        "cache_max_age_s",
        problems,
    );
    let timeout = millis(
        file.timeout_ms,
        DEFAULT_TIMEOUT,
        &at("timeout_ms"),
        problems,
    );
    let router_id = file.router_id.clone().unwrap_or_else(host_name);
    if !is_name(&router_id) && file.router_id.is_some() {
        problems.add(
            code::INVALID_NAME,
            at("router_id"),
            format!("`{router_id}` is not a usable router id"),
            "use 1 to 32 characters of a-z, 0-9 and '-', unique in the fleet",
        );
    }
    if let Some(label) = &file.router_region {
        if !is_name(label) {
            problems.add(
                code::INVALID_NAME,
                at("router_region"),
                format!("`{label}` is not a usable region or PoP label"),
                "use 1 to 32 characters of a-z, 0-9 and '-', e.g. `us-east`",
            );
        }
    }
    let credentials = match (&file.username, &file.password_file) {
        (None, None) => None,
        (Some(user), Some(password_file)) => {
            let path = relative_to(config_path, password_file);
            match std::fs::read_to_string(&path) {
                Ok(password) => Some((
                    user.clone(),
                    password.trim_end_matches(['\r', '\n']).to_owned(),
                )),
                Err(e) => {
                    problems.add(
                        code::UNREADABLE_FILE,
                        at("password_file"),
                        format!("cannot read {}: {e}", path.display()),
                        "point it at a file holding the etcd user's password",
                    );
                    None
                }
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            problems.add(
                code::MISSING_SETTING,
                at(if file.username.is_some() {
                    "password_file"
                } else {
                    "username"
                }),
                "etcd authentication needs both `username` and `password_file`",
                "set both, or neither",
            );
            None
        }
    };
    let tls = file.tls.as_ref().and_then(|tls| {
        let mut read = |field: &str, path: &str| match std::fs::read(relative_to(config_path, path))
        {
            Ok(pem) if pem.windows(10).any(|w| w == b"-----BEGIN") => Some(pem),
            Ok(_) => {
                problems.add(
                    code::INVALID_FILE,
                    at(&format!("tls.{field}")),
                    format!("{path} holds no PEM block"),
                    "point it at a PEM file",
                );
                None
            }
            Err(e) => {
                problems.add(
                    code::UNREADABLE_FILE,
                    at(&format!("tls.{field}")),
                    format!("cannot read {path}: {e}"),
                    "point it at a readable PEM file",
                );
                None
            }
        };
        let ca_pem = read("ca", &tls.ca)?;
        let identity_pem = match (&tls.cert, &tls.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((read("cert", cert)?, read("key", key)?)),
            _ => {
                problems.add(
                    code::MISSING_SETTING,
                    at("tls"),
                    "a client certificate needs both `cert` and `key`",
                    "set both, or neither",
                );
                return None;
            }
        };
        Some(EtcdTls {
            ca_pem,
            identity_pem,
            domain: tls.domain.clone(),
        })
    });
    (problems.errors.len() == before).then(|| EtcdSettings {
        endpoints: file.endpoints.clone(),
        prefix: prefix.to_owned(),
        cache: relative_to(config_path, &file.cache),
        max_staleness,
        cache_max_age,
        router_id,
        router_region: file.router_region.clone(),
        credentials,
        tls,
        timeout,
    })
}

/// The machine's name, as a router id: lowercase, cut to 32 characters of `[a-z0-9-]`.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    if name.is_empty() {
        "router".to_owned()
    } else {
        name
    }
}

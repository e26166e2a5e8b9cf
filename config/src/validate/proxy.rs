//! `[proxy]`: upstream timeouts and retries, client limits and trusted proxies.

use std::time::Duration;

use crate::error::code;
use crate::file::ProxyFile;
use crate::snapshot::{ClientLimits, ProxySettings, MAX_HEAD_BYTES_LIMIT};

use super::{millis, positive, Problems};

pub(super) fn proxy_settings(file: &ProxyFile, problems: &mut Problems<'_>) -> ProxySettings {
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
        upstream_keepalive_pool: upstream_keepalive_pool(file.upstream_keepalive_pool, problems),
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

/// Pingora sizes its pool's index for the whole bound at start, so a typo's worth of
/// connections would be memory taken up front.
const MAX_UPSTREAM_KEEPALIVE_POOL: usize = 100_000;

fn upstream_keepalive_pool(value: Option<usize>, problems: &mut Problems<'_>) -> usize {
    let at = "proxy.upstream_keepalive_pool";
    let default = ProxySettings::default().upstream_keepalive_pool;
    let fix = "use the idle backend connections to keep per worker thread: at least the client \
               connections one worker serves at once";
    match value {
        Some(n) if n == 0 || n > MAX_UPSTREAM_KEEPALIVE_POOL => {
            problems.add(
                code::OUT_OF_RANGE,
                at,
                format!("{n} is not between 1 and {MAX_UPSTREAM_KEEPALIVE_POOL}"),
                fix,
            );
            default
        }
        Some(n) => n,
        None => default,
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
            code::OUT_OF_RANGE,
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

fn trusted_proxies(list: &[String], problems: &mut Problems<'_>) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        match entry.parse::<ipnet::IpNet>() {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => match entry.parse::<std::net::IpAddr>() {
                Ok(ip) => nets.push(ip.into()),
                Err(_) => problems.add(
                    code::INVALID_ADDRESS,
                    format!("proxy.trusted_proxies[{i}]"),
                    format!("`{entry}` is not a CIDR or an IP address"),
                    "write e.g. `10.0.0.0/8`, `127.0.0.1` or `fd00::/8`",
                ),
            },
        }
    }
    nets
}

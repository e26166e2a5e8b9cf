use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regions::{SiteId, TenantIdentifier, Topology, UnknownTenantPolicy};

use crate::Registry;

/// A validated configuration: everything the data plane needs, resolved and indexed.
#[derive(Debug)]
pub struct Snapshot {
    pub config_path: PathBuf,
    pub registry_path: PathBuf,
    pub listen: Listen,
    pub topology: Topology,
    pub identifier: TenantIdentifier,
    pub unknown: UnknownTenantPolicy,
    pub registry: Registry,
    /// Backends per site, indexed by `SiteId`.
    pub backends: Vec<Vec<Backend>>,
    pub proxy: ProxySettings,
    pub server: ServerSettings,
}

impl Snapshot {
    pub fn site_backends(&self, site: SiteId) -> &[Backend] {
        &self.backends[usize::from(site.0)]
    }
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub http: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// One upstream `ip:port`, as configured and as resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub configured: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Add `x-residency-region` / `x-residency-site` to responses.
    pub expose_decision: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from a backend (response headers or body).
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long an idle upstream keep-alive connection is kept in the pool.
    pub idle_timeout: Duration,
    /// Upper bound of backends tried for one request (first attempt included).
    pub max_attempts: u32,
    /// How long a backend that failed a connect or timed out is skipped (passive health).
    pub failed_backend_cooldown: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            expose_decision: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_attempts: 4,
            failed_backend_cooldown: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

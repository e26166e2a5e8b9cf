use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regions::{SiteId, TenantId, TenantIdentifier, Topology, UnknownTenantPolicy};

use crate::tls::{TlsSettings, UpstreamTls};
use crate::Registry;

/// A validated configuration: everything the data plane needs, resolved and indexed.
/// Cloning is cheap next to the registry, which is shared.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub config_path: PathBuf,
    /// The registry file; in fleet mode, the local cache of the etcd registry.
    pub registry_path: PathBuf,
    /// `Some` in fleet mode: the registry lives in etcd, and `registry` is the last revision
    /// this router applied.
    pub etcd: Option<Arc<EtcdSettings>>,
    /// Whether `registry` can be served, and with which privileges.
    pub registry_status: RegistryStatus,
    pub listen: Listen,
    pub topology: Topology,
    pub identifier: TenantIdentifier,
    pub unknown: UnknownTenantPolicy,
    pub registry: Arc<Registry>,
    /// Per-site backends, balancing and health, indexed by `SiteId`.
    pub sites: Vec<SiteConfig>,
    pub geoip: Option<GeoIpSettings>,
    pub proxy: ProxySettings,
    pub reload: ReloadSettings,
    pub access_log: Option<AccessLogSettings>,
    pub server: ServerSettings,
    /// `None` when `listen.admin` is not set.
    pub admin: Option<AdminSettings>,
    pub tls: TlsSettings,
}

/// What the data plane may do with the registry it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryStatus {
    /// `false` only in fleet mode, before a registry came from etcd or a valid cache: every
    /// tenant request is then refused (503), never sent to a default region.
    pub loaded: bool,
    /// Fleet mode, past `max_staleness_s` without etcd: replication exceptions are not used
    /// (home regions are), since a revoked exception may not have reached this router.
    pub replication_suspended: bool,
}

impl RegistryStatus {
    pub const SERVING: RegistryStatus = RegistryStatus {
        loaded: true,
        replication_suspended: false,
    };
}

/// `[tenancy] registry = { etcd = { ... } }`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    /// Starts with `/`, no trailing `/`.
    pub prefix: String,
    pub cache: PathBuf,
    pub max_staleness: Duration,
    /// A cache older than this is not started from.
    pub cache_max_age: Duration,
    pub router_id: String,
    pub router_region: Option<String>,
    pub credentials: Option<(String, String)>,
    pub tls: Option<EtcdTls>,
    /// Each etcd request's deadline: a partitioned member must not hang a write or the sync.
    pub timeout: Duration,
}

#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub domain: Option<String>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_identity", &self.identity_pem.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

/// The admin API: who may call it, where changes are audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub tokens: Vec<AdminToken>,
    /// `admin.tokens_file`, watched with the config.
    pub tokens_file: Option<PathBuf>,
    pub audit: AuditSettings,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub path: PathBuf,
    /// The file is rotated before it grows past this size.
    pub max_file_bytes: u64,
    /// Rotated files are deleted only once their newest entry is older than this.
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the bearer token.
    pub sha256: [u8; 32],
    /// The tenants a `tenant-admin` manages; empty for other roles.
    pub tenants: Vec<TenantId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Operator,
    /// Reads and changes its own tenants' region and replication.
    TenantAdmin,
    /// Reads tenants, the audit log and exports.
    Auditor,
    /// Reads tenants and explains decisions.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Operator,
        Role::TenantAdmin,
        Role::Auditor,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// `None`: standard output.
    pub file: Option<PathBuf>,
    /// Records waiting to be written; past this, records are dropped (and counted) rather
    /// than slowing requests down.
    pub buffer_records: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Reload when the config, registry or GeoIP file changes.
    pub watch: bool,
    pub watch_interval: Duration,
    /// A reload that moves more than this share of tenants to another home region is refused
    /// unless forced: a guard against deploying the wrong registry file.
    pub max_moved_percent: u32,
    /// Moves of this many tenants or fewer are never refused.
    pub always_allowed_moves: u32,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            watch: true,
            watch_interval: Duration::from_secs(1),
            max_moved_percent: 10,
            always_allowed_moves: 10,
        }
    }
}

impl Snapshot {
    pub fn site(&self, site: SiteId) -> &SiteConfig {
        &self.sites[usize::from(site.0)]
    }

    /// Every TLS file the configuration names (certificates, keys and CA bundles of the
    /// listeners and of the sites): the file watcher reloads when one changes.
    pub fn tls_files(&self) -> impl Iterator<Item = &std::path::Path> {
        let sites = self.sites.iter().filter_map(|s| s.tls.as_ref());
        self.tls
            .files()
            .chain(sites.flat_map(|t| t.files.iter().map(PathBuf::as_path)))
    }

    pub fn backend_count(&self) -> usize {
        self.sites.iter().map(|s| s.backends.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    pub backends: Vec<Backend>,
    pub balance: Balance,
    pub health: HealthSettings,
    /// `None`: plain HTTP to the backends.
    pub tls: Option<UpstreamTls>,
}

/// How a site spreads requests over its available backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round-robin (nginx's algorithm).
    WeightedRoundRobin,
    /// Fewest requests in flight relative to weight; ties rotate.
    LeastInFlight,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    pub check: ActiveCheck,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing checks that make an unhealthy backend healthy.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that make a healthy backend unhealthy.
    pub unhealthy_threshold: u32,
    /// A backend takes traffic only after its first passing check.
    pub start_unhealthy: bool,
    pub outlier: OutlierSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActiveCheck {
    Disabled,
    Tcp,
    Http(HttpCheck),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    /// Host header of every check of the site (one request serves all its backends).
    pub host: String,
    pub expect_status: std::ops::RangeInclusive<u16>,
}

/// Passive health: backends that fail requests in a row are ejected for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Consecutive connect failures, timeouts or 5xx responses that eject a backend.
    pub eject_after_failures: u32,
    /// First ejection lasts this long; each repeat doubles it, up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// At most this share of a site's backends is ejected at once (at least one).
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone)]
pub struct GeoIpSettings {
    /// Opened and verified at load; swapped in place when the file changes.
    pub database: std::sync::Arc<geoip::LiveDatabase>,
    /// ISO country code -> site, for Country databases.
    pub countries: std::collections::HashMap<String, SiteId>,
    /// How often the database file is checked for changes.
    pub reload_check: Duration,
}

#[derive(Debug, Clone)]
pub struct Listen {
    /// Client traffic in plain HTTP, TLS, or both (at least one).
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// The `http` listener also serves HTTP/2 with prior knowledge (h2c).
    pub h2c: bool,
}

/// One upstream `ip:port`, as configured and as resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub configured: String,
    pub addr: SocketAddr,
    /// Share of the site's traffic relative to its other backends (1 to 1000).
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Add `x-residency-region` / `x-residency-site` to responses.
    pub expose_decision: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from a backend (response headers or body).
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long an idle upstream keep-alive connection is kept in the pool.
    pub idle_timeout: Duration,
    /// Idle upstream keep-alive connections kept per worker thread, over every backend (the
    /// least recently used is closed above it). Smaller than the client concurrency, most
    /// requests would open a new connection to their backend.
    pub upstream_keepalive_pool: usize,
    /// Upper bound of backends tried for one request (first attempt included).
    pub max_attempts: u32,
    /// Proxies whose `x-forwarded-for` entries are believed when finding the client address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub client: ClientLimits,
}

/// What one client may hold of the router, as nginx and Envoy bound it: an idle or slow
/// client costs a socket and a task, so each is bounded in time, and all together in number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// How long an idle keep-alive connection waits for its next request; zero turns
    /// keep-alive off (`Connection: close` on every response).
    pub keepalive_timeout: Duration,
    /// How long a request head (request line and headers) may take to arrive in full,
    /// counted from the connection's accept for its first request and from the first byte of
    /// every later one: a client trickling its head a byte at a time is cut here.
    pub header_timeout: Duration,
    /// Largest request head accepted (431 above it).
    pub max_head_bytes: usize,
    /// Requests one HTTP/1.1 connection may carry before the router closes it.
    pub max_requests_per_connection: u32,
    /// An HTTP/2 connection with no open stream for this long is closed.
    pub h2_idle_timeout: Duration,
    /// Client connections open at once, over every listener; more are refused (503).
    pub max_connections: usize,
}

/// Pingora's own bound on a request head: a larger limit could not be honoured.
pub const MAX_HEAD_BYTES_LIMIT: usize = 1_048_575;

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            keepalive_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            max_requests_per_connection: 1000,
            h2_idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            expose_decision: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            // As many as the router holds client connections: every one can keep its own.
            upstream_keepalive_pool: ClientLimits::default().max_connections,
            max_attempts: 4,
            trusted_proxies: Vec::new(),
            client: ClientLimits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Where `residency-router reload` reaches the running router.
    pub control_socket: Option<PathBuf>,
    /// Where a new process started with `run --upgrade` receives the listening sockets of the
    /// old one on its SIGQUIT (Pingora's zero-downtime upgrade).
    pub upgrade_socket: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: Duration::from_secs(10),
            control_socket: None,
            upgrade_socket: PathBuf::from("/tmp/residency-router-upgrade.sock"),
        }
    }
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            check: ActiveCheck::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            start_unhealthy: false,
            outlier: OutlierSettings {
                eject_after_failures: 5,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(300),
                max_ejected_percent: 50,
            },
        }
    }
}

impl HttpCheck {
    pub const DEFAULT_PATH: &'static str = "/healthz";
    pub const DEFAULT_HOST: &'static str = "localhost";
}

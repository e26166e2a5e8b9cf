//! A real cluster on loopback: site backends in this process (one server per backend, each on
//! an OS-chosen port) and the real `residency-router` binary as a child process.

#![allow(dead_code)] // not every part of the harness has a caller in every build

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use residency_testkit::{write_config, HeldPort, PortRegistry, SiteBackend, DEMO_SITES};

/// The registry most tests use. Expiry dates are far from today so the tests do not age.
pub const TEST_TENANTS: &str = r#"{ "tenants": [
  { "id": "acme",     "region": "us" },
  { "id": "globex",   "region": "eu", "replication": { "regions": ["us"], "mode": "read-replica" } },
  { "id": "initech",  "region": "eu", "replication": { "regions": ["us"], "mode": "active", "expires_at": "2099-01-01T00:00:00Z" } },
  { "id": "umbrella", "region": "eu", "replication": { "regions": ["us"], "mode": "active", "expires_at": "2020-01-01T00:00:00Z" } }
] }"#;

pub struct Options {
    /// Backends per site, in `DEMO_SITES` order (virginia, oregon, frankfurt, dublin).
    pub backends_per_site: [usize; 4],
    /// Extra `[proxy]` lines.
    pub proxy: &'static str,
    /// Extra top-level tables (`[server]`, `[health]`, `[geoip]`...).
    pub tables: String,
    /// Files written next to the config before the router starts (GeoIP databases).
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Runs on the started backends before the router starts.
    pub prepare: fn(&[Vec<SiteBackend>]),
    /// Extra lines inside each site's table, in `DEMO_SITES` order.
    pub site_lines: [&'static str; 4],
    /// Serve `/metrics` on a port of its own.
    pub metrics: bool,
    /// Serve the admin API (with [`admin_tables`]) on a port of its own.
    pub admin: bool,
    /// Serve `listen.https` on a port of its own (`tables` must then hold `[tls]`).
    pub https: bool,
    /// Backends that speak TLS: (site index, backend index, server config).
    pub backend_tls: Vec<(usize, usize, std::sync::Arc<rustls::ServerConfig>)>,
    /// HTTP/2 with prior knowledge on the plain listener (`listen.h2c`).
    pub h2c: bool,
    /// Run the router binary as a child process instead of in this one: for what only a
    /// process has (its log file, signals, SIGKILL, a TLS version policy of its own).
    pub process: bool,
    /// `tenancy.registry` as TOML (fleet mode: `{ etcd = { ... } }`); the registry file.
    pub registry: Option<String>,
    /// Listen as systemd does for what the router process tells it (`NOTIFY_SOCKET`): the
    /// socket is [`Cluster::notify`]. Needs `process`.
    pub notify: bool,
}

/// Bearer tokens of the test admin API, one per role. The tenant admin manages acme and initech.
pub const OPERATOR: &str = "operator-secret";
pub const TENANT_ADMIN: &str = "acme-admin-secret";
pub const AUDITOR: &str = "auditor-secret";
pub const VIEWER: &str = "viewer-secret";

/// `[admin]` with an audit log next to the config and a token per role.
pub fn admin_tables() -> String {
    let hash = residency_admin::auth::token_hash;
    format!(
        "[admin]\naudit_log = \"audit/audit.log\"\n\
         [[admin.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"acme-admin\"\nrole = \"tenant-admin\"\ntenants = [\"acme\", \"initech\"]\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"audit\"\nrole = \"auditor\"\nsha256 = \"{}\"\n\
         [[admin.tokens]]\nname = \"view\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        hash(OPERATOR),
        hash(TENANT_ADMIN),
        hash(AUDITOR),
        hash(VIEWER),
    )
}

/// A cluster serving the admin API (with [`admin_tables`]).
pub async fn admin_cluster() -> Cluster {
    Cluster::start_with(Options {
        admin: true,
        ..Options::default()
    })
    .await
}

/// [`admin_cluster`] with the router as a child process.
pub async fn admin_process_cluster() -> Cluster {
    Cluster::start_with(Options {
        admin: true,
        process: true,
        ..Options::default()
    })
    .await
}

/// The audit log of a cluster serving the admin API.
pub fn audit_log(cluster: &Cluster) -> PathBuf {
    cluster.dir.path().join("audit/audit.log")
}

/// `residency-router audit verify` on the cluster's audit log.
pub fn verify_audit(cluster: &Cluster) -> std::process::Output {
    router_command()
        .args(["audit", "verify"])
        .arg(audit_log(cluster))
        .output()
        .unwrap()
}

/// Asserts that `residency-router audit verify` accepts the cluster's audit log.
pub fn assert_audit_verifies(cluster: &Cluster) {
    let verify = verify_audit(cluster);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, and the task driving it.
pub async fn h2c_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

pub const FAST_SHUTDOWN: &str = "[server]\nshutdown_grace_seconds = 0\nthreads = 2\ncontrol_socket = \"control.sock\"\nupgrade_socket = \"upgrade.sock\"\n";

impl Default for Options {
    fn default() -> Self {
        Options {
            backends_per_site: [2, 1, 1, 1],
            proxy: "",
            tables: FAST_SHUTDOWN.to_owned(),
            files: Vec::new(),
            prepare: |_| {},
            site_lines: [""; 4],
            metrics: false,
            admin: false,
            https: false,
            backend_tls: Vec::new(),
            h2c: false,
            process: false,
            registry: None,
            notify: false,
        }
    }
}

pub struct Cluster {
    /// Where `/metrics` is served, when asked for.
    pub metrics: Option<SocketAddr>,
    /// Where the admin API is served, when asked for.
    pub admin: Option<SocketAddr>,
    /// Where `listen.https` is served, when asked for.
    pub https: Option<SocketAddr>,
    /// Backends per site, in `DEMO_SITES` order.
    pub sites: Vec<Vec<SiteBackend>>,
    pub router: Router,
    pub client: reqwest::Client,
    /// What the router sends systemd, with [`Options::notify`].
    pub notify: Option<std::os::unix::net::UnixDatagram>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let mut sites = Vec::new();
        for (s, ((region, site, _, _), count)) in
            DEMO_SITES.iter().zip(options.backends_per_site).enumerate()
        {
            let mut backends = Vec::new();
            for b in 0..count {
                let tls = options
                    .backend_tls
                    .iter()
                    .find(|(site, backend, _)| (*site, *backend) == (s, b))
                    .map(|(_, _, config)| config.clone());
                backends.push(
                    SiteBackend::start_with_tls(site, region, tls)
                        .await
                        .unwrap(),
                );
            }
            sites.push(backends);
        }
        (options.prepare)(&sites);
        let addrs: Vec<Vec<SocketAddr>> = sites
            .iter()
            .map(|backends| backends.iter().map(SiteBackend::addr).collect())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &options.files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let extra = format!("{}\n\n{}", options.proxy, options.tables);
        // Pingora binds the listener itself, so probe a free port and retry on the rare clash.
        let mut last_log = String::new();
        for _ in 0..5 {
            let listen = free_port();
            // Held until the router takes them: an in-process router is handed the listeners.
            let held_metrics = options.metrics.then(PortRegistry::hold);
            let held_admin = options.admin.then(PortRegistry::hold);
            let metrics = held_metrics.as_ref().map(HeldPort::addr);
            let admin = held_admin.as_ref().map(HeldPort::addr);
            let https = options.https.then(free_port);
            let mut listeners = Vec::new();
            listeners.extend(https.map(|h| ("https", h)));
            listeners.extend(metrics.map(|m| ("metrics", m)));
            listeners.extend(admin.map(|a| ("admin", a)));
            let extra = match admin {
                Some(_) => format!("{extra}\n\n{}", admin_tables()),
                None => extra.clone(),
            };
            let config = write_config(
                dir.path(),
                listen,
                &listeners,
                &addrs,
                TEST_TENANTS,
                &extra,
                &options.site_lines,
            )
            .unwrap();
            if let Some(registry) = &options.registry {
                let toml = std::fs::read_to_string(&config).unwrap();
                let setting = format!("registry = {registry}");
                std::fs::write(
                    &config,
                    toml.replacen("registry = \"tenants.json\"", &setting, 1),
                )
                .unwrap();
            }
            if options.h2c {
                let toml = std::fs::read_to_string(&config).unwrap();
                std::fs::write(
                    &config,
                    toml.replacen("[listen]\n", "[listen]\nh2c = true\n", 1),
                )
                .unwrap();
            }
            let notify_path = dir.path().join("notify.sock");
            let notify = options.notify.then(|| {
                let _ = std::fs::remove_file(&notify_path);
                std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap()
            });
            let started = if options.process {
                let (_, _) = (
                    held_metrics.map(HeldPort::release),
                    held_admin.map(HeldPort::release),
                );
                let notify_socket = notify.as_ref().map(|_| notify_path.as_path());
                RouterProcess::start(
                    &config,
                    listen,
                    dir.path().join("router.log"),
                    notify_socket,
                )
                .map(Router::Process)
            } else {
                InProcessRouter::start(
                    &config,
                    listen,
                    held_metrics.map(HeldPort::into_listener),
                    held_admin.map(HeldPort::into_listener),
                )
                .map(Router::InProcess)
            };
            match started {
                Ok(router) => {
                    if let Some(admin) = admin {
                        wait_for_port(admin);
                    }
                    let client = reqwest::Client::builder().no_proxy().build().unwrap();
                    return Cluster {
                        metrics,
                        admin,
                        https,
                        sites,
                        router,
                        client,
                        notify,
                        dir,
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("router did not start:\n{last_log}");
    }

    /// Kills the router with SIGKILL (no chance to clean up) and starts it again with the
    /// same config and ports.
    pub fn restart(&mut self) {
        let addr = self.router.addr();
        let process = self.router.process_mut();
        let _ = process.child.kill();
        let _ = process.child.wait();
        let log = self.dir.path().join("router-restarted.log");
        let notify_socket = self
            .notify
            .as_ref()
            .map(|_| self.dir.path().join("notify.sock"));
        self.router =
            RouterProcess::start(&self.config_path(), addr, log, notify_socket.as_deref())
                .map(Router::Process)
                .unwrap_or_else(|log| panic!("router did not restart:\n{log}"));
        if let Some(admin) = self.admin {
            wait_for_port(admin);
        }
        // Pooled connections went with the old process.
        self.client = reqwest::Client::builder().no_proxy().build().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.router.addr())
    }

    pub fn site(&self, name: &str) -> &[SiteBackend] {
        let i = DEMO_SITES
            .iter()
            .position(|s| s.1 == name)
            .expect("known site");
        &self.sites[i]
    }

    /// Kills every backend of `name` and returns once each refuses connections (and so has
    /// closed the connections it had).
    pub fn kill_site(&self, name: &str) {
        for backend in self.site(name) {
            backend.kill();
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpStream::connect_timeout(&backend.addr(), Duration::from_millis(100)).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "{} still accepts",
                    backend.addr()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Requests answered by every backend of `region`.
    pub fn region_requests(&self, region: &str) -> u64 {
        DEMO_SITES
            .iter()
            .zip(&self.sites)
            .filter(|(s, _)| s.0 == region)
            .flat_map(|(_, backends)| backends.iter().map(SiteBackend::requests))
            .sum()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("router.toml")
    }

    /// Replaces the registry the way deploy tools do: write aside, then rename over.
    pub fn replace_registry(&self, json: &str) {
        let staged = self.dir.path().join("tenants.json.new");
        std::fs::write(&staged, json).unwrap();
        std::fs::rename(&staged, self.dir.path().join("tenants.json")).unwrap();
    }

    /// Asks the running router to reload through its control socket.
    pub async fn reload(&self, force: bool) -> residency_router::reload::ControlAnswer {
        let socket = self.dir.path().join("control.sock");
        tokio::task::spawn_blocking(move || {
            residency_router::reload::request_reload(&socket, force)
        })
        .await
        .unwrap()
        .expect("the control socket answers")
    }

    /// The region that serves `tenant` right now.
    pub async fn region_of(&self, tenant: &str) -> String {
        let (status, _, body) = json(self.get("/", tenant).send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        body["region"].as_str().unwrap().to_owned()
    }

    pub fn get(&self, path: &str, tenant: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("x-tenant-id", tenant)
    }
}

/// The `residency-router` binary under test.
pub fn router_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_residency-router"))
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port for a listener the router binds itself: held by the registry until now,
/// and never handed to another test of this binary.
pub fn free_port() -> SocketAddr {
    residency_testkit::PortRegistry::hold().release()
}

/// The router under test: in this process, or the binary as a child process.
pub enum Router {
    InProcess(InProcessRouter),
    Process(RouterProcess),
}

impl Router {
    /// Where client traffic goes (`listen.http`).
    pub fn addr(&self) -> SocketAddr {
        match self {
            Router::InProcess(router) => router.addr,
            Router::Process(router) => router.addr,
        }
    }

    /// The child process, for tests that need one (`Options::process`).
    pub fn process(&self) -> &RouterProcess {
        match self {
            Router::Process(router) => router,
            Router::InProcess(_) => panic!(
                "this test needs the router as a process: set `process: true` in its Options"
            ),
        }
    }

    /// The process's log (`Options::process`).
    pub fn log_text(&self) -> String {
        self.process().log_text()
    }

    pub fn process_mut(&mut self) -> &mut RouterProcess {
        match self {
            Router::Process(router) => router,
            Router::InProcess(_) => panic!(
                "this test needs the router as a process: set `process: true` in its Options"
            ),
        }
    }
}

/// Waits up to 15 s for a router starting on `addr` to accept connections: `false` if it did
/// not, or if `gone` says it stopped first.
fn until_listening(addr: SocketAddr, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if gone() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `server::run` on a thread of this process, stopped (as by SIGTERM) when dropped. The
/// drop does not wait for the drain: the thread ends on its own within the grace period.
pub struct InProcessRouter {
    pub addr: SocketAddr,
    stopper: residency_router::server::Stopper,
}

impl InProcessRouter {
    pub fn start(
        config: &std::path::Path,
        addr: SocketAddr,
        metrics: Option<TcpListener>,
        admin: Option<TcpListener>,
    ) -> Result<Self, String> {
        use residency_router::server::{Launch, Stopper};
        // `ROUTER_TEST_LOG=1 cargo test ... -- --nocapture` shows what in-process routers log.
        if std::env::var_os("ROUTER_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .try_init();
        }
        let snapshot = residency_config::load(config).map_err(|e| e.to_string())?;
        let (stopper, stop) = Stopper::new();
        let launch = Launch {
            upgrade: false,
            stop,
            admin_listener: admin,
            metrics_listener: metrics,
            per_thread_runtimes: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("router-{}", addr.port()))
            .spawn(move || residency_router::server::run(snapshot, launch))
            .map_err(|e| e.to_string())?;
        let router = InProcessRouter { addr, stopper };
        if until_listening(addr, || thread.is_finished()) {
            return Ok(router);
        }
        Err(match thread.is_finished().then(|| thread.join()) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(()))) => "the router stopped by itself".to_owned(),
            Some(Err(_)) => "the router panicked".to_owned(),
            None => "the in-process router did not open its listener within 15 s".to_owned(),
        })
    }
}

impl Drop for InProcessRouter {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}

pub struct RouterProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl RouterProcess {
    /// Starts `residency-router run` and waits until it accepts connections.
    /// `Err` carries the log when it did not come up (e.g. the port was taken meanwhile).
    pub fn start(
        config: &std::path::Path,
        addr: SocketAddr,
        log: PathBuf,
        notify_socket: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = router_command();
        if let Some(socket) = notify_socket {
            command.env("NOTIFY_SOCKET", socket);
        }
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,residency_router=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut router = RouterProcess { child, addr, log };
        if until_listening(addr, || router.child.try_wait().unwrap().is_some()) {
            return Ok(router);
        }
        Err(router.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The TCP ports the router process listens on: its sockets, found in `/proc/PID/fd`,
    /// looked up in the kernel's TCP tables. Unlike connecting to a port, this cannot be
    /// fooled by another test's process that took the port over.
    pub fn listening_ports(&self) -> BTreeSet<u16> {
        let pid = self.child.id();
        let sockets: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("the router is gone ({e}):\n{}", self.log_text()))
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| {
                let inode = target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?;
                Some(inode.to_owned())
            })
            .collect();
        let mut ports = BTreeSet::new();
        for table in ["tcp", "tcp6"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
                .unwrap_or_else(|e| panic!("the router is gone ({e}):\n{}", self.log_text()));
            for row in text.lines().skip(1) {
                let fields: Vec<&str> = row.split_whitespace().collect();
                const LISTEN: &str = "0A";
                if fields[3] == LISTEN && sockets.contains(fields[9]) {
                    let (_, port) = fields[1].rsplit_once(':').expect("address:port");
                    ports.insert(u16::from_str_radix(port, 16).expect("hex port"));
                }
            }
        }
        ports
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a JSON response, returning status, headers and the body.
pub async fn json(
    response: reqwest::Response,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    (status, headers, body)
}

/// Sends raw bytes (for requests an HTTP client would refuse to build) and reads the reply.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends `count` GETs for `tenant` one after another; returns the statuses.
pub async fn send_many(cluster: &Cluster, tenant: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        let response = cluster.get("/", tenant).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// One request of a [`Load`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started: Instant,
    pub latency: Duration,
    /// `None` when the request failed below HTTP (reset, refused).
    pub status: Option<u16>,
    pub region: String,
    pub backend: String,
    pub error: Option<String>,
}

/// Clients sending GETs for one tenant back to back until stopped.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    pub fn start(cluster: &Cluster, tenant: &'static str, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (client, url, stop) = (cluster.client.clone(), cluster.url("/"), stop.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let started = Instant::now();
                        let sent = client.get(&url).header("x-tenant-id", tenant).send().await;
                        let mut outcome = Outcome {
                            started,
                            latency: Duration::ZERO,
                            status: None,
                            region: String::new(),
                            backend: String::new(),
                            error: None,
                        };
                        match sent {
                            Ok(response) => {
                                outcome.status = Some(response.status().as_u16());
                                let body: serde_json::Value =
                                    response.json().await.unwrap_or_default();
                                outcome.region =
                                    body["region"].as_str().unwrap_or_default().to_owned();
                                outcome.backend =
                                    body["backend"].as_str().unwrap_or_default().to_owned();
                            }
                            Err(e) => outcome.error = Some(format!("{e:?}")),
                        }
                        outcome.latency = started.elapsed();
                        outcomes.push(outcome);
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, clients }
    }

    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for client in self.clients {
            outcomes.extend(client.await.unwrap());
        }
        outcomes
    }
}

/// Outcomes that were not a 200.
pub fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.status != Some(200)).collect()
}

impl Cluster {
    /// The router's `/metrics` text.
    pub async fn scrape(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics.expect("metrics are on"));
        let response = self.client.get(url).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// One sample from `/metrics`: the value of `name` with exactly `labels` (as
    /// `key="value"` pairs, in any order), 0 when the series is absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.scrape().await;
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        wanted.sort();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (metric, mut found) = match series.split_once('{') {
                Some((metric, rest)) => (
                    metric,
                    rest.trim_end_matches('}')
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
                None => (series, Vec::new()),
            };
            found.sort();
            if metric == name && found == wanted {
                return value.parse().unwrap();
            }
        }
        0.0
    }

    /// Like [`Cluster::metric`], for series a request moves in the router's logging phase,
    /// which runs after the client has its answer: reads until the sample is `expected` or
    /// 5 s pass, then once more 100 ms later (to catch a double count), and returns that.
    pub async fn logged_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.metric(name, labels).await != expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.metric(name, labels).await
    }
}

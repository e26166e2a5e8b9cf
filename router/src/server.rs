//! Pingora server wiring: one HTTP proxy service, the side listeners, signals, graceful
//! shutdown. Everything a router owns (metrics registry, readiness, drain, request ids) is
//! made here and handed to the parts that use it: two routers in one process share nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use residency_admin::audit::AuditLog;
use residency_admin::{Admin, Api};
use residency_config::{FileStore, Snapshot};
use residency_dataplane::access_log::AccessLog;
use residency_dataplane::client_limits::ClientLimited;
use residency_dataplane::clock::Clock;
use residency_dataplane::health;
use residency_dataplane::lifecycle::{Drain, Readiness};
use residency_dataplane::metrics::Metrics;
use residency_dataplane::proxy::ResidencyProxy;
use residency_dataplane::request_id::RequestIds;
use residency_dataplane::state;
use residency_dataplane::tls::{self, Listener};
use tokio::signal::unix::{signal, SignalKind};

use crate::reload::{self, ReloadTriggers, Reloader};
use crate::side_listeners::{listener_config, AdminServer, MetricsServer};
use crate::successor::Successor;

/// How one router is started, beside its configuration.
pub struct Launch {
    /// Take over the listening sockets of a running router instead of binding them.
    pub upgrade: bool,
    /// What stops the router: the process's signals for the binary, a [`Stopper`] in tests.
    pub stop: Box<dyn ShutdownSignalWatch + Send + Sync>,
    /// Side listeners already bound (tests hold their ports until the router takes them);
    /// `None` binds `listen.admin` / `listen.metrics`.
    pub admin_listener: Option<std::net::TcpListener>,
    pub metrics_listener: Option<std::net::TcpListener>,
    /// One single-threaded runtime per worker thread (the binary), or work-stealing ones.
    /// A router run in a process that runs others after it must not use per-thread runtimes:
    /// pingora-runtime 0.9 remembers their handles per thread id in a process-wide table that
    /// outlives a stopped server (`CURRENT_HANDLE`), and a later worker given a recycled
    /// thread id spawns onto the stopped server's runtimes (its health checks are cancelled).
    pub per_thread_runtimes: bool,
}

impl Launch {
    /// The binary's `run`: stopped by SIGTERM/SIGINT (drain) or SIGQUIT (hand over to an
    /// upgrade); SIGUSR2 starts the upgrade itself ([`crate::successor`]).
    pub fn process(upgrade: bool, upgrade_socket: PathBuf) -> Self {
        Launch::with_signals(upgrade, Some(Successor { upgrade_socket }))
    }

    /// The demo: the process's signals, without SIGUSR2 (`demo` has no `--upgrade`).
    pub fn demo() -> Self {
        Launch::with_signals(false, None)
    }

    fn with_signals(upgrade: bool, successor: Option<Successor>) -> Self {
        Launch {
            upgrade,
            stop: Box::new(ProcessSignals { successor }),
            admin_listener: None,
            metrics_listener: None,
            per_thread_runtimes: true,
        }
    }
}

/// Pingora treats SIGINT as an immediate stop. Operators (and Ctrl-C in the demo) expect both
/// SIGTERM and SIGINT to drain in-flight requests, so both map to a graceful terminate.
/// SIGQUIT keeps Pingora's meaning: hand the listeners to an upgraded process. SIGUSR2 starts
/// that process first.
struct ProcessSignals {
    successor: Option<Successor>,
}

#[async_trait]
impl ShutdownSignalWatch for ProcessSignals {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut usr2 = signal(SignalKind::user_defined2()).expect("SIGUSR2 handler");
        loop {
            tokio::select! {
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::GracefulTerminate,
                _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
                _ = usr2.recv() => {
                    let Some(successor) = &self.successor else { continue };
                    // A stop while the successor starts is still a stop (the successor, never
                    // handed the listeners, gives up on its own).
                    let attempt = tokio::select! {
                        attempt = successor.start() => attempt,
                        _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                        _ = int.recv() => return ShutdownSignal::GracefulTerminate,
                    };
                    match attempt {
                        Ok(pid) => {
                            tracing::info!(pid, "the successor is ready for the listeners: handing over");
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(e) => tracing::error!(error = %e, "upgrade not done; this process keeps serving"),
                    }
                }
            }
        }
    }
}

/// Stops a router run in-process (tests): [`Stopper::stop`] is its SIGTERM.
pub struct Stopper(tokio::sync::watch::Sender<bool>);

struct StopRequested(Mutex<tokio::sync::watch::Receiver<bool>>);

impl Stopper {
    pub fn new() -> (Stopper, Box<dyn ShutdownSignalWatch + Send + Sync>) {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        (
            Stopper(sender),
            Box::new(StopRequested(Mutex::new(receiver))),
        )
    }

    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

#[async_trait]
impl ShutdownSignalWatch for StopRequested {
    async fn recv(&self) -> ShutdownSignal {
        let mut receiver = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = receiver.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Starts draining when the router is told to stop, whatever told it.
struct DrainOnStop {
    stop: Box<dyn ShutdownSignalWatch + Send + Sync>,
    drain: Drain,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnStop {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.stop.recv().await;
        self.drain.start();
        // An upgrade is no stop for systemd: the successor is the service now.
        if !matches!(signal, ShutdownSignal::GracefulUpgrade) {
            crate::notify::stopping();
        }
        signal
    }
}

/// Runs the router until it is told to stop, then drains for `shutdown_grace` and returns.
/// With `launch.upgrade`, takes over the listening sockets of a running router instead of
/// binding them: start this process, then send SIGQUIT to the old one.
pub fn run(snapshot: Snapshot, launch: Launch) -> Result<(), String> {
    let listen = snapshot.listen.clone();
    // Opened before anything listens: an admin API that cannot audit must not start. In
    // fleet mode the audit trail is the fleet's chain in etcd.
    let audit = match (&snapshot.admin, &snapshot.etcd) {
        (Some(admin), None) => Some(
            AuditLog::open(&admin.audit).map_err(|e| format!("cannot open the audit log: {e}"))?,
        ),
        _ => None,
    };

    // Before Pingora builds its first TLS config (the upstream connector, in the proxy).
    tls::install_policy(snapshot.tls.min_version)?;
    let clock = Clock::start();
    tls::warn_about(&snapshot, clock.unix_now());
    let h2 = snapshot.tls.h2;

    let conf = ServerConf {
        threads: snapshot.server.threads,
        // One single-threaded runtime per worker thread, as nginx has one event loop per
        // worker: no task queue shared between threads and no cross-thread wake-ups on the
        // request path. See docs/performance.md.
        work_stealing: !launch.per_thread_runtimes,
        // Pingora keeps serving in-flight requests for the grace period after the signal, then
        // gives its runtimes one more second before the process exits.
        grace_period_seconds: Some(snapshot.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        // Retries are bounded per request by `proxy.max_attempts`; retries of stale pooled
        // connections do not count against it, so Pingora's backstop leaves room for them.
        max_retries: snapshot.proxy.max_attempts as usize * 2 + 1,
        upgrade_sock: snapshot.server.upgrade_socket.display().to_string(),
        // Per worker thread. Pingora's default (128) is below the client concurrency of a busy
        // router, and past it most requests open a new backend connection (docs/performance.md).
        upstream_keepalive_pool_size: snapshot.proxy.upstream_keepalive_pool,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);

    // What this router owns, made once and handed to every part that uses it.
    let registry = prometheus::Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(process));
    }
    let metrics = Metrics::register_in(registry);
    let (readiness, ready_latch) = Readiness::new();
    let drain = Drain::default();
    let ids = Arc::new(RequestIds::default());

    let health = health::states_for(&snapshot, None);
    let (plans, supervisor) =
        health::supervisor(health::plan_for(&snapshot, &health), ready_latch, &clock);
    let health_checks = server.add_service(background_service("health checks", supervisor));
    // Pingora's bootstrap takes over a running router's listeners (`--upgrade`). As a service
    // after the first round of health checks: by the time a successor waits on the upgrade
    // socket, and its predecessor hands over, it has loaded everything and knows its backends.
    let bootstrap = server.bootstrap_as_a_service();
    bootstrap.add_dependency(&health_checks);
    let config_path = snapshot.config_path.clone();
    let (access_log, access_log_writer) = snapshot
        .access_log
        .as_ref()
        .and_then(|settings| {
            AccessLog::start(settings, metrics.access_log_dropped.clone())
                .map_err(|e| tracing::error!(error = %e, "cannot open the access log; requests are not logged"))
                .ok()
        })
        .unzip();
    let control_socket = snapshot.server.control_socket.clone();

    let shared = state::shared(snapshot, &health, &metrics, &clock);
    server
        .add_service(background_service(
            "service manager",
            crate::notify::NotifyReady {
                readiness: readiness.clone(),
                state: Arc::clone(&shared),
            },
        ))
        .add_dependency(&bootstrap);
    if let Some(addr) = listen.metrics {
        server.add_service(background_service(
            "metrics",
            MetricsServer {
                addr,
                bound: Mutex::new(launch.metrics_listener),
                tls: listener_config(&shared, Listener::Metrics)?,
                state: Arc::clone(&shared),
            },
        ));
    }
    let reloader = Arc::new(Reloader::new(
        config_path,
        Arc::clone(&shared),
        health,
        plans,
    ));
    // Fleet mode: the registry comes from etcd (or the cache) before the listeners open.
    let fleet = match shared.load().snapshot.etcd.clone() {
        Some(settings) => {
            let sink = Arc::clone(&reloader) as Arc<dyn residency_fleet::RegistrySink>;
            let fleet = residency_fleet::Fleet::start(settings, sink, Arc::clone(&metrics))
                .map_err(|e| format!("cannot start fleet mode: {e}"))?;
            let _ = reloader.fleet.set(fleet.clone());
            Some(fleet)
        }
        None => None,
    };
    // A successor without a registry (etcd unreachable, no valid cache) would refuse every
    // tenant; the predecessor, which has one, keeps serving instead.
    if launch.upgrade && !shared.load().snapshot.registry_status.loaded {
        return Err("upgrade refused: no registry (etcd unreachable and no valid cache); the running router keeps serving".to_owned());
    }
    server.add_service(background_service(
        "reload triggers",
        ReloadTriggers {
            reloader: Arc::clone(&reloader),
            control_socket,
        },
    ));
    let mut admin_api = None;
    let audit: Option<Arc<dyn residency_admin::audit::AuditTrail>> = match (&fleet, audit) {
        (Some(fleet), _) if listen.admin.is_some() => Some(Arc::new(fleet.clone())),
        (_, Some(log)) => Some(Arc::new(log)),
        _ => None,
    };
    if let (Some(addr), Some(audit)) = (listen.admin, audit) {
        let admin = Admin {
            state: Arc::clone(&shared),
            writer: Arc::clone(&reloader) as Arc<dyn residency_admin::RegistryWriter>,
            store: Arc::new(FileStore),
            audit,
            fleet: fleet
                .clone()
                .map(|f| Arc::new(f) as Arc<dyn residency_admin::FleetRegistry>),
            readiness,
            ids: Arc::clone(&ids),
        };
        let api = Arc::new(Api::new(Arc::new(admin)));
        admin_api = Some(Arc::clone(&api));
        server.add_service(background_service(
            "admin API",
            AdminServer {
                addr,
                bound: Mutex::new(launch.admin_listener),
                tls: listener_config(&shared, Listener::Admin)?,
                api,
            },
        ));
    }
    reload::watch_files(reloader, drain.clone());

    let https = match listen.https {
        Some(addr) => Some((addr, tls::https_settings(shared.clone(), h2)?)),
        None => None,
    };
    let client_limits = shared.load().snapshot.proxy.client;
    let mut http = HttpProxy::new(
        ResidencyProxy::new(
            Arc::clone(&shared),
            access_log,
            drain.clone(),
            Arc::clone(&ids),
        ),
        Arc::clone(&server.configuration),
    );
    http.handle_init_modules();
    // Opt-in HTTP/2 with prior knowledge on the plain listener, next to HTTP/1.1, for load
    // balancers that speak h2c to the edge. Off by default: a short HTTP/1.0 probe waits for
    // the 24 bytes of the HTTP/2 preface until the header timeout.
    let mut options = HttpServerOptions::default();
    options.h2c = listen.h2c;
    options.h2_idle_timeout = Some(client_limits.h2_idle_timeout);
    http.server_options = Some(options);
    let mut proxy = Service::new(
        "residency-proxy".to_owned(),
        ClientLimited::new(http, shared, listen.h2c, metrics, ids),
    );
    if let Some(addr) = listen.http {
        proxy.add_tcp(&addr.to_string());
    }
    if let Some((addr, settings)) = https {
        proxy.add_tls_with_settings(&addr.to_string(), None, settings);
    }
    // The listener opens once the first round of health checks is in, with the listening
    // sockets of the predecessor when there is one.
    server.add_service(proxy).add_dependency(&bootstrap);

    tracing::info!(http = ?listen.http, https = ?listen.https, "residency-router listening");
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnStop {
            stop: launch.stop,
            drain,
        }),
    });
    if let Some(writer) = access_log_writer {
        writer.close();
    }
    // Pingora cancels the runtimes' tasks once the grace period is over, so what the admin
    // API still counts of refused calls is audited here, after them.
    if let Some(api) = admin_api {
        api.audit_due_refusals(true);
    }
    if let Some(fleet) = fleet {
        fleet.stop();
    }
    tracing::info!("residency-router stopped");
    Ok(())
}

//! Pingora server wiring: one HTTP proxy service, signals, graceful shutdown.

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use residency_config::Snapshot;
use tokio::signal::unix::{signal, SignalKind};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pingora::services::background::background_service;

use residency_config::FileStore;

use crate::access_log::AccessLog;
use crate::admin::audit::AuditLog;
use crate::admin::{Admin, AdminServer, Api};
use crate::client_limits::ClientLimited;
use crate::health;
use crate::metrics::MetricsServer;
use crate::proxy::ResidencyProxy;
use crate::reload::{self, ReloadTriggers, Reloader};
use crate::state;

/// Pingora treats SIGINT as an immediate stop. Operators (and Ctrl-C in the demo) expect both
/// SIGTERM and SIGINT to drain in-flight requests, so both map to a graceful terminate.
/// SIGQUIT keeps Pingora's meaning: hand the listeners to an upgraded process.
struct DrainOnTermOrInt;

static DRAINING: AtomicBool = AtomicBool::new(false);

/// The process is shutting down or handing its listeners to an upgraded process: responses
/// close their connections so clients reconnect (to the new process, after an upgrade)
/// instead of reusing a connection that is about to go away.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnTermOrInt {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let signal = tokio::select! {
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        };
        DRAINING.store(true, Ordering::Relaxed);
        signal
    }
}

/// Binds one of the side listeners (metrics, admin), retrying each second: during an upgrade
/// the old process still holds the port for its grace period. `None` once shutting down.
pub async fn bind_when_free(
    addr: std::net::SocketAddr,
    what: &str,
    shutdown: &mut pingora::server::ShutdownWatch,
) -> Option<tokio::net::TcpListener> {
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot bind the {what} listener yet; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return None,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs the router until SIGTERM/SIGINT, then drains for `shutdown_grace` and returns.
/// With `upgrade`, takes over the listening sockets of a running router instead of binding
/// them: start this process, then send SIGQUIT to the old one.
pub fn run(snapshot: Snapshot, upgrade: bool) -> Result<(), String> {
    let listen = snapshot.listen.clone();
    // Opened before anything listens: an admin API that cannot audit must not start.
    let audit = match &snapshot.admin {
        Some(admin) => Some(
            AuditLog::open(&admin.audit).map_err(|e| format!("cannot open the audit log: {e}"))?,
        ),
        None => None,
    };

    // Before Pingora builds its first TLS config (the upstream connector, in the proxy).
    crate::tls::install_policy(snapshot.tls.min_version)?;
    crate::tls::warn_about(&snapshot);
    let h2 = snapshot.tls.h2;

    let conf = ServerConf {
        threads: snapshot.server.threads,
        // One single-threaded runtime per worker thread, as nginx has one event loop per
        // worker: no task queue shared between threads and no cross-thread wake-ups on the
        // request path. See docs/performance.md.
        work_stealing: false,
        // Pingora keeps serving in-flight requests for the grace period after the signal, then
        // gives its runtimes one more second before the process exits.
        grace_period_seconds: Some(snapshot.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        // Retries are bounded per request by `proxy.max_attempts`; retries of stale pooled
        // connections do not count against it, so Pingora's backstop leaves room for them.
        max_retries: snapshot.proxy.max_attempts as usize * 2 + 1,
        upgrade_sock: snapshot.server.upgrade_socket.display().to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let health = health::states_for(&snapshot, None);
    let (plans, supervisor) = health::supervisor(health::plan_for(&snapshot, &health));
    let health_checks = server.add_service(background_service("health checks", supervisor));
    let config_path = snapshot.config_path.clone();
    let (access_log, access_log_writer) = snapshot
        .access_log
        .as_ref()
        .and_then(|settings| {
            AccessLog::start(settings)
                .map_err(|e| tracing::error!(error = %e, "cannot open the access log; requests are not logged"))
                .ok()
        })
        .unzip();
    let control_socket = snapshot.server.control_socket.clone();

    let shared = state::shared(snapshot, &health);
    if let Some(addr) = listen.metrics {
        server.add_service(background_service(
            "metrics",
            MetricsServer {
                addr,
                tls: crate::tls::listener_config(&shared, crate::tls::Listener::Metrics)?,
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
    server.add_service(background_service(
        "reload triggers",
        ReloadTriggers {
            reloader: Arc::clone(&reloader),
            control_socket,
        },
    ));
    let mut admin_api = None;
    if let (Some(addr), Some(audit)) = (listen.admin, audit) {
        let admin = Admin {
            state: Arc::clone(&shared),
            reloader: Arc::clone(&reloader),
            store: Arc::new(FileStore),
            audit,
        };
        let api = Arc::new(Api::new(Arc::new(admin)));
        admin_api = Some(Arc::clone(&api));
        server.add_service(background_service(
            "admin API",
            AdminServer {
                addr,
                tls: crate::tls::listener_config(&shared, crate::tls::Listener::Admin)?,
                api,
            },
        ));
    }
    reload::watch_files(reloader);

    let https = match listen.https {
        Some(addr) => Some((addr, crate::tls::https_settings(Arc::clone(&shared), h2)?)),
        None => None,
    };
    let client_limits = shared.load().snapshot.proxy.client;
    let mut http = HttpProxy::new(
        ResidencyProxy::new(Arc::clone(&shared), access_log),
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
        ClientLimited::new(http, shared, listen.h2c),
    );
    if let Some(addr) = listen.http {
        proxy.add_tcp(&addr.to_string());
    }
    if let Some((addr, settings)) = https {
        proxy.add_tls_with_settings(&addr.to_string(), None, settings);
    }
    // The listener opens once the first round of health checks is in.
    server.add_service(proxy).add_dependency(&health_checks);

    tracing::info!(http = ?listen.http, https = ?listen.https, "residency-router listening");
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnTermOrInt),
    });
    if let Some(writer) = access_log_writer {
        writer.close();
    }
    // Pingora cancels the runtimes' tasks once the grace period is over, so what the admin
    // API still counts of refused calls is audited here, after them.
    if let Some(api) = admin_api {
        api.audit_due_refusals(true);
    }
    tracing::info!("residency-router stopped");
    Ok(())
}

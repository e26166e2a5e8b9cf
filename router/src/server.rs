//! Pingora server wiring: one HTTP proxy service, signals, graceful shutdown.

use async_trait::async_trait;
use config::Snapshot;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use std::sync::Arc;
use std::time::Duration;

use geoip::{LiveDatabase, Reloaded};

use crate::health;
use crate::proxy::ResidencyProxy;
use crate::state;

/// Pingora treats SIGINT as an immediate stop. Operators (and Ctrl-C in the demo) expect both
/// SIGTERM and SIGINT to drain in-flight requests, so both map to a graceful terminate.
/// SIGQUIT keeps Pingora's meaning: hand the listeners to an upgraded process.
struct DrainOnTermOrInt;

#[async_trait]
impl ShutdownSignalWatch for DrainOnTermOrInt {
    async fn recv(&self) -> ShutdownSignal {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        tokio::select! {
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}

/// Runs the router until SIGTERM/SIGINT, then drains for `shutdown_grace` and returns.
pub fn run(snapshot: Snapshot) {
    let listen = snapshot.listen.clone();
    for (name, addr) in [("admin", listen.admin), ("metrics", listen.metrics)] {
        if let Some(addr) = addr {
            tracing::warn!(%addr, "listen.{name} is configured but not served yet by this version");
        }
    }

    let conf = ServerConf {
        threads: snapshot.server.threads,
        // Pingora keeps serving in-flight requests for the grace period after the signal, then
        // gives its runtimes one more second before the process exits.
        grace_period_seconds: Some(snapshot.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        // Retries are bounded per request by `proxy.max_attempts`; retries of stale pooled
        // connections do not count against it, so Pingora's backstop leaves room for them.
        max_retries: snapshot.proxy.max_attempts as usize * 2 + 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let health = health::states_for(&snapshot);
    // The views registering check targets must outlive the server, hence the binding.
    let mut checks = health::active_checks(&snapshot, &health);
    for service in checks.services.drain(..) {
        server.add_service(service);
    }
    if let Some(geoip) = &snapshot.geoip {
        watch_geoip(Arc::clone(&geoip.database), geoip.reload_check);
    }

    let shared = state::shared(snapshot, &health);
    let mut proxy = http_proxy_service_with_name(
        &server.configuration,
        ResidencyProxy::new(shared),
        "residency-proxy",
    );
    proxy.add_tcp(&listen.http.to_string());
    server.add_service(proxy);

    tracing::info!(http = %listen.http, "residency-router listening");
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnTermOrInt),
    });
    tracing::info!("residency-router stopped");
}

/// Polls the GeoIP file on its own thread: reading and verifying a large database must never
/// stall request handling. A bad new file keeps the current database.
fn watch_geoip(database: Arc<LiveDatabase>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("geoip-reload".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            match database.reload_if_changed() {
                Reloaded::Unchanged => {}
                Reloaded::Swapped => tracing::info!(
                    path = %database.path().display(),
                    build_epoch = database.current().build_epoch(),
                    "GeoIP database reloaded"
                ),
                Reloaded::Kept(error) => tracing::error!(
                    path = %database.path().display(),
                    %error,
                    "GeoIP database not reloaded; the previous one keeps serving"
                ),
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the GeoIP reload thread; the database will not be reloaded");
    }
}

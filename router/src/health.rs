//! Backend health: active checks (Pingora's `HealthRegistry` + `HealthCheckService`, one per
//! site) and the per-backend state that passive outlier detection and balancing share.
//!
//! Request handling only ever reads [`BackendHealth`] atomics. The checks write them through
//! [`RecordingCheck`], which wraps Pingora's TCP/HTTP checks: it mirrors Pingora's threshold
//! verdicts, and adds what Pingora's `Health` lacks (start unhealthy until a first pass, and
//! re-admission of a passively ejected backend only after a passing check).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use config::{ActiveCheck, HealthSettings, Snapshot};
use futures_util::FutureExt;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends, HealthCheckService, HealthRegistry};
use pingora::prelude::*;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::ErrorType;

pub use crate::clock::now_ms;

/// Live state of one backend, shared by the data plane and the health checks.
#[derive(Debug)]
pub struct BackendHealth {
    pub addr: SocketAddr,
    /// Pingora's active-check verdict after thresholds. Starts true, as Pingora's does.
    active_up: AtomicBool,
    /// At least one active check passed (for `start_unhealthy`).
    passed_once: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Passive ejections so far; each one doubles the next back-off.
    ejections: AtomicU32,
    /// Ejected until this time (ms, see [`now_ms`]); 0 when never ejected.
    ejected_until_ms: AtomicU64,
    /// Ejected and waiting for a passing active check before it may return.
    awaiting_check: AtomicBool,
    in_flight: AtomicU32,
}

impl BackendHealth {
    pub fn new(addr: SocketAddr) -> Self {
        BackendHealth {
            addr,
            active_up: AtomicBool::new(true),
            passed_once: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            awaiting_check: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Active checks do not rule it out.
    pub fn actively_up(&self, start_unhealthy: bool) -> bool {
        self.active_up.load(Ordering::Relaxed)
            && (!start_unhealthy || self.passed_once.load(Ordering::Relaxed))
    }

    pub fn passively_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Relaxed)
            || self.awaiting_check.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request succeeded: the failure streak ends. After a long clean run (longer than the
    /// longest ejection) the back-off starts from the beginning again.
    pub fn record_success(&self, now_ms: u64, forget_after_ms: u64) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let ejected_until = self.ejected_until_ms.load(Ordering::Relaxed);
        if ejected_until != 0
            && now_ms > ejected_until.saturating_add(forget_after_ms)
            // Only forget the ejection this success outlived, never one that just happened.
            && self
                .ejected_until_ms
                .compare_exchange(ejected_until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed (connect, backend timeout, 5xx). Returns the failure streak length.
    /// Failures reported while the backend is ejected belong to requests sent before the
    /// ejection; counting them would re-eject it the moment it returns.
    pub fn record_failure(&self, now_ms: u64) -> u32 {
        if self.passively_ejected(now_ms) {
            return 0;
        }
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ejects for `base * 2^(n-1)` capped at `max`, n = this ejection's number. With active
    /// checks, the backend then also waits for a passing check. Returns the ejection length.
    pub fn eject(&self, now_ms: u64, base_ms: u64, max_ms: u64, wait_for_check: bool) -> u64 {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = base_ms.saturating_mul(1u64 << n.min(20)).min(max_ms);
        self.ejected_until_ms
            .store(now_ms.saturating_add(length), Ordering::Relaxed);
        self.awaiting_check.store(wait_for_check, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        length
    }

    fn observe_check(&self, passed: bool) {
        if !passed {
            return;
        }
        self.passed_once.store(true, Ordering::Relaxed);
        if self.awaiting_check.load(Ordering::Relaxed)
            && now_ms() >= self.ejected_until_ms.load(Ordering::Relaxed)
        {
            self.awaiting_check.store(false, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::info!(backend = %self.addr, "ejected backend passed a check and is back");
        }
    }
}

/// Counts one request on a backend for as long as it lives (least-in-flight balancing).
pub struct InFlight(Arc<BackendHealth>);

impl InFlight {
    pub fn start(backend: &Arc<BackendHealth>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(backend))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every backend's state, by address. A backend belongs to exactly one site (validated).
pub type HealthStates = HashMap<SocketAddr, Arc<BackendHealth>>;

pub fn states_for(snapshot: &Snapshot) -> HealthStates {
    snapshot
        .sites
        .iter()
        .flat_map(|site| &site.backends)
        .map(|b| (b.addr, Arc::new(BackendHealth::new(b.addr))))
        .collect()
}

/// Wraps a Pingora check and records every result in [`BackendHealth`].
struct RecordingCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    states: HealthStates,
}

impl RecordingCheck {
    fn state(&self, target: &Backend) -> Option<&Arc<BackendHealth>> {
        self.states.get(target.addr.as_inet()?)
    }
}

#[async_trait]
impl HealthCheck for RecordingCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = self.inner.check(target).await;
        if let Some(state) = self.state(target) {
            state.observe_check(result.is_ok());
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if let Some(state) = self.state(target) {
            state.active_up.store(healthy, Ordering::Relaxed);
            if healthy {
                tracing::info!(backend = %state.addr, "active health check: backend is up");
            } else {
                tracing::warn!(backend = %state.addr, "active health check: backend is down");
            }
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

fn pingora_check(settings: &HealthSettings) -> Option<Box<dyn HealthCheck + Send + Sync>> {
    let timeout = Some(settings.timeout);
    let (up, down) = (
        settings.healthy_threshold as usize,
        settings.unhealthy_threshold as usize,
    );
    match &settings.check {
        ActiveCheck::Disabled => None,
        ActiveCheck::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.consecutive_success = up;
            check.consecutive_failure = down;
            check.peer_template.options.connection_timeout = timeout;
            Some(check)
        }
        ActiveCheck::Http(http) => {
            let mut check = HttpHealthCheck::new(&http.host, false);
            check.consecutive_success = up;
            check.consecutive_failure = down;
            check.peer_template.options.connection_timeout = timeout;
            check.peer_template.options.read_timeout = timeout;
            let mut req = RequestHeader::build(http.method.as_str(), http.path.as_bytes(), None)
                .expect("method and path were validated");
            // HTTP/1.1 servers (nginx, Go) answer 400 to a request without Host.
            req.insert_header("host", http.host.as_str())
                .expect("host was validated");
            check.req = req;
            let expected = http.expect_status.clone();
            check.validator = Some(Box::new(move |response: &ResponseHeader| {
                if expected.contains(&response.status.as_u16()) {
                    Ok(())
                } else {
                    Error::e_explain(
                        ErrorType::HTTPStatus(response.status.as_u16()),
                        "health check status outside the expected range",
                    )
                }
            }));
            Some(Box::new(check))
        }
    }
}

/// The active checks of one configuration: Pingora background services to run, and the
/// backend views that register the targets (kept alive as long as the checks should run).
pub struct ActiveChecks {
    pub services: Vec<GenBackgroundService<HealthCheckService>>,
    _views: Vec<Backends>,
}

pub fn active_checks(snapshot: &Snapshot, states: &HealthStates) -> ActiveChecks {
    let mut services = Vec::new();
    let mut views = Vec::new();
    for (site_id, site) in snapshot.topology.sites() {
        let settings = &snapshot.site(site_id).health;
        let Some(check) = pingora_check(settings) else {
            continue;
        };
        let site_states: HealthStates = snapshot
            .site(site_id)
            .backends
            .iter()
            .map(|b| (b.addr, Arc::clone(&states[&b.addr])))
            .collect();
        // Keyed by address alone, so a weight change keeps a backend's health.
        let registry = Arc::new(HealthRegistry::with_equivalence(|backend: &Backend| {
            let mut hasher = DefaultHasher::new();
            backend.addr.hash(&mut hasher);
            hasher.finish()
        }));
        registry.set_health_check(Box::new(RecordingCheck {
            inner: check,
            states: site_states,
        }));
        let targets = snapshot
            .site(site_id)
            .backends
            .iter()
            .map(|b| Backend::new_with_weight(&b.addr.to_string(), b.weight as usize))
            .collect::<Result<_>>()
            .expect("validated addresses parse");
        let view = Backends::new_with_health_registry(Static::new(targets), Arc::clone(&registry));
        // Static discovery completes at once; this only publishes the view's targets.
        view.update(|_| {})
            .now_or_never()
            .expect("static discovery does not wait")
            .expect("static discovery does not fail");
        let mut service = HealthCheckService::new(registry);
        service.health_check_frequency = Some(settings.interval);
        service.parallel_health_check = true;
        services.push(background_service(
            &format!("health {}", site.name),
            service,
        ));
        views.push(view);
    }
    ActiveChecks {
        services,
        _views: views,
    }
}

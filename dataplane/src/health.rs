//! Backend health: active checks (Pingora's TCP/HTTP checks run through a `HealthRegistry` per
//! site) and the per-backend state that passive outlier detection and balancing share.
//!
//! Request handling only ever reads [`BackendHealth`] atomics. The checks write them through
//! [`RecordingCheck`], which applies the thresholds itself and adds what Pingora's `Health`
//! lacks (start unhealthy until a first pass, re-admission of a passively ejected backend only
//! after a passing check). Keeping the verdicts here, keyed by address, is what lets a reload
//! rebuild registries and pools without forgetting any backend's health.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends, HealthRegistry};
use pingora::prelude::*;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use pingora::ErrorType;
use residency_config::{ActiveCheck, HealthSettings, Snapshot};
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::lifecycle::ReadyLatch;

/// Live state of one backend, shared by the data plane and the health checks.
#[derive(Debug)]
pub struct BackendHealth {
    pub addr: SocketAddr,
    /// The active checks' verdict after thresholds. Starts up: a backend is trusted until its
    /// checks say otherwise (unless its site uses `start_unhealthy`).
    active_up: AtomicBool,
    /// At least one active check passed (for `start_unhealthy`).
    passed_once: AtomicBool,
    /// Consecutive passing / failing checks, for the thresholds.
    checks_passed_in_row: AtomicU32,
    checks_failed_in_row: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Passive ejections so far; each one doubles the next back-off.
    ejections: AtomicU32,
    /// Ejected until this time (ms, see [`Clock::now_ms`]); 0 when never ejected.
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
            checks_passed_in_row: AtomicU32::new(0),
            checks_failed_in_row: AtomicU32::new(0),
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

    /// Inside an ejection's back-off (whatever the checks say).
    pub fn ejection_running(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Relaxed)
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

    /// Ejects for [`ejection_ms`]. With active checks, the backend then also waits for a
    /// passing check. Returns the ejection length.
    pub fn eject(&self, now_ms: u64, base_ms: u64, max_ms: u64, wait_for_check: bool) -> u64 {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = ejection_ms(n, base_ms, max_ms);
        self.ejected_until_ms
            .store(now_ms.saturating_add(length), Ordering::Relaxed);
        self.awaiting_check.store(wait_for_check, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        length
    }

    /// One active check result. Thresholds live here rather than in Pingora's registry so
    /// that a registry rebuilt by a reload never forgets a verdict.
    pub(crate) fn observe_check(
        &self,
        passed: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
        now_ms: u64,
    ) {
        if passed {
            self.checks_failed_in_row.store(0, Ordering::Relaxed);
            let streak = self.checks_passed_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            self.passed_once.store(true, Ordering::Relaxed);
            if streak >= healthy_threshold && !self.active_up.swap(true, Ordering::Relaxed) {
                tracing::info!(backend = %self.addr, "active health check: backend is up");
            }
            if self.awaiting_check.load(Ordering::Relaxed)
                && now_ms >= self.ejected_until_ms.load(Ordering::Relaxed)
            {
                self.awaiting_check.store(false, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                tracing::info!(backend = %self.addr, "ejected backend passed a check and is back");
            }
        } else {
            self.checks_passed_in_row.store(0, Ordering::Relaxed);
            let streak = self.checks_failed_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= unhealthy_threshold && self.active_up.swap(false, Ordering::Relaxed) {
                tracing::warn!(backend = %self.addr, "active health check: backend is down");
            }
        }
    }
}

/// The length of ejection number `n + 1` (`n` earlier ones since the back-off was last
/// forgotten): `base * 2^n`, capped at `max`. The exponent stops at 20 so the shift cannot
/// overflow; `max` caps any realistic back-off long before.
pub(crate) fn ejection_ms(n: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms.saturating_mul(1u64 << n.min(20)).min(max_ms)
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

/// The health state of every backend of `snapshot`: carried over from `previous` for
/// backends that stay (a reload keeps what checks and outlier detection learnt), fresh for
/// new ones.
pub fn states_for(snapshot: &Snapshot, previous: Option<&HealthStates>) -> HealthStates {
    snapshot
        .sites
        .iter()
        .flat_map(|site| &site.backends)
        .map(|b| {
            let state = previous
                .and_then(|p| p.get(&b.addr))
                .map_or_else(|| Arc::new(BackendHealth::new(b.addr)), Arc::clone);
            (b.addr, state)
        })
        .collect()
}

/// Wraps a Pingora check and records every result in [`BackendHealth`].
struct RecordingCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    clock: Clock,
    states: HealthStates,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

#[async_trait]
impl HealthCheck for RecordingCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = self.inner.check(target).await;
        if let Some(state) = target.addr.as_inet().and_then(|a| self.states.get(a)) {
            state.observe_check(
                result.is_ok(),
                self.healthy_threshold,
                self.unhealthy_threshold,
                self.clock.now_ms(),
            );
        }
        result
    }

    /// Thresholds are applied in [`BackendHealth`]; Pingora's own flips are not used.
    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

fn pingora_check(
    settings: &HealthSettings,
    tls: Option<&residency_config::UpstreamTls>,
) -> Option<Box<dyn HealthCheck + Send + Sync>> {
    let timeout = Some(settings.timeout);
    match &settings.check {
        ActiveCheck::Disabled => None,
        ActiveCheck::Tcp => {
            let mut check = TcpHealthCheck::new();
            check.peer_template.options.connection_timeout = timeout;
            Some(check)
        }
        ActiveCheck::Http(http) => {
            let mut check = HttpHealthCheck::new(&http.host, false);
            if let Some(tls) = tls {
                crate::tls::PeerTls::new(tls).apply(&mut check.peer_template);
            }
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

/// What one site's checks need. A change to any of it restarts that site's check loop.
#[derive(Clone)]
pub struct SitePlan {
    name: String,
    settings: HealthSettings,
    backends: Vec<(SocketAddr, u32)>,
    /// HTTP checks speak TLS to a TLS site, with its verification and client certificate.
    tls: Option<residency_config::UpstreamTls>,
    states: HealthStates,
}

impl SitePlan {
    /// Same checks on the same live state: a loop for `other` can keep running for `self`.
    fn same_checks_as(&self, other: &SitePlan) -> bool {
        self.settings == other.settings
            && self.backends == other.backends
            && self.tls == other.tls
            && self.states.iter().all(|(addr, state)| {
                other
                    .states
                    .get(addr)
                    .is_some_and(|o| Arc::ptr_eq(state, o))
            })
    }
}

/// Every site with active checks in one configuration.
pub type CheckPlan = Vec<SitePlan>;

pub fn plan_for(snapshot: &Snapshot, states: &HealthStates) -> CheckPlan {
    snapshot
        .topology
        .sites()
        .filter(|(id, _)| snapshot.site(*id).health.check != ActiveCheck::Disabled)
        .map(|(id, site)| {
            let config = snapshot.site(id);
            SitePlan {
                name: site.name.clone(),
                settings: config.health.clone(),
                backends: config.backends.iter().map(|b| (b.addr, b.weight)).collect(),
                tls: config.tls.clone(),
                states: config
                    .backends
                    .iter()
                    .map(|b| (b.addr, Arc::clone(&states[&b.addr])))
                    .collect(),
            }
        })
        .collect()
}

/// One Pingora background service running every site's checks, re-planned on reload.
/// (Pingora's `HealthCheckService` would be simpler, but services cannot be added after the
/// server starts, and a reload can add sites.)
pub struct HealthSupervisor {
    plans: watch::Receiver<Arc<CheckPlan>>,
    /// Released once every site has had its first round of checks (what `/readyz` waits for).
    ready: std::sync::Mutex<Option<ReadyLatch>>,
    clock: Clock,
}

pub fn supervisor(
    initial: CheckPlan,
    ready: ReadyLatch,
    clock: &Clock,
) -> (watch::Sender<Arc<CheckPlan>>, HealthSupervisor) {
    let (sender, plans) = watch::channel(Arc::new(initial));
    let supervisor = HealthSupervisor {
        plans,
        ready: std::sync::Mutex::new(Some(ready)),
        clock: clock.clone(),
    };
    (sender, supervisor)
}

#[async_trait]
impl BackgroundService for HealthSupervisor {
    /// Ready once every site has had its first round of checks, so that the proxy (which
    /// depends on this service) opens its listener knowing which backends are up. The wait
    /// is bounded by the longest check timeout.
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.run(shutdown, Some(ready)).await;
    }

    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown, None).await;
    }
}

impl HealthSupervisor {
    async fn run(&self, mut shutdown: ShutdownWatch, mut ready: Option<ServiceReadyNotifier>) {
        let mut plans = self.plans.clone();
        let mut running: HashMap<String, (SitePlan, tokio::task::JoinHandle<()>)> = HashMap::new();
        loop {
            let plan = plans.borrow_and_update().clone();
            running.retain(|name, (current, task)| {
                let keep = plan
                    .iter()
                    .any(|p| &p.name == name && p.same_checks_as(current));
                if !keep {
                    task.abort();
                }
                keep
            });
            let mut first_rounds = Vec::new();
            for site in plan.iter() {
                if !running.contains_key(&site.name) {
                    let (done, first_round) = oneshot::channel();
                    first_rounds.push(first_round);
                    let task =
                        tokio::spawn(run_site_checks(site.clone(), self.clock.clone(), done));
                    running.insert(site.name.clone(), (site.clone(), task));
                }
            }
            if let Some(ready) = ready.take() {
                let longest = plan
                    .iter()
                    .map(|s| s.settings.timeout)
                    .max()
                    .unwrap_or_default();
                let all = futures_util::future::join_all(first_rounds);
                let _ = tokio::time::timeout(longest + Duration::from_secs(1), all).await;
                if let Some(latch) = self.ready.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    latch.release();
                }
                ready.notify_ready();
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                changed = plans.changed() => if changed.is_err() { break },
            }
        }
        for (_, (_, task)) in running {
            task.abort();
        }
    }
}

async fn run_site_checks(plan: SitePlan, clock: Clock, first_round: oneshot::Sender<()>) {
    let mut first_round = Some(first_round);
    let Some(check) = pingora_check(&plan.settings, plan.tls.as_ref()) else {
        return;
    };
    // Keyed by address alone, so a weight change keeps a backend's health.
    let registry = Arc::new(HealthRegistry::with_equivalence(|backend: &Backend| {
        let mut hasher = DefaultHasher::new();
        backend.addr.hash(&mut hasher);
        hasher.finish()
    }));
    registry.set_health_check(Box::new(RecordingCheck {
        inner: check,
        clock,
        states: plan.states.clone(),
        healthy_threshold: plan.settings.healthy_threshold,
        unhealthy_threshold: plan.settings.unhealthy_threshold,
    }));
    let targets = plan
        .backends
        .iter()
        .map(|(addr, weight)| Backend::new_with_weight(&addr.to_string(), *weight as usize))
        .collect::<Result<_>>()
        .expect("validated addresses parse");
    let view = Backends::new_with_health_registry(Static::new(targets), Arc::clone(&registry));
    if let Err(e) = view.update(|_| {}).await {
        tracing::error!(site = %plan.name, error = %e, "cannot register health-check targets");
        return;
    }
    loop {
        registry.run_health_check(true).await;
        if let Some(done) = first_round.take() {
            let _ = done.send(());
        }
        tokio::time::sleep(plan.settings.interval).await;
    }
}

#[cfg(test)]
mod tests;

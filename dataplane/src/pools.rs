//! Backend pools per site: which backends may take a request, and which one takes it.
//!
//! A backend is available when active checks do not rule it out and it is not passively
//! ejected. Passive ejection (outlier detection) is capped per site so that one bad deploy
//! cannot empty a site by itself; active checks are never overruled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use regions::{SiteHealth, SiteId};
use residency_config::{ActiveCheck, Balance, OutlierSettings, SiteConfig, Snapshot};

use crate::clock::Clock;
use crate::health::{BackendHealth, HealthStates, InFlight};
use crate::tls::PeerTls;
use pingora::upstreams::peer::HttpPeer;

pub struct Pools {
    sites: Vec<SitePool>,
    clock: Clock,
}

struct SitePool {
    backends: Vec<Arc<BackendHealth>>,
    weights: Vec<u32>,
    /// Smooth weighted round-robin order of backend indexes.
    schedule: Vec<usize>,
    next: AtomicUsize,
    balance: Balance,
    start_unhealthy: bool,
    /// Ejected backends return only after a passing check when checks run.
    active_checks: bool,
    outlier: OutlierSettings,
    max_ejected: usize,
    /// Serialises the rare eject decision so the cap holds under concurrency.
    ejecting: Mutex<()>,
    tls: Option<PeerTls>,
}

impl SitePool {
    fn new(site: &SiteConfig, states: &HealthStates) -> Self {
        let weights: Vec<u32> = site.backends.iter().map(|b| b.weight).collect();
        SitePool {
            backends: site
                .backends
                .iter()
                .map(|b| Arc::clone(&states[&b.addr]))
                .collect(),
            schedule: smooth_weighted_schedule(&weights),
            weights,
            next: AtomicUsize::new(0),
            balance: site.balance,
            start_unhealthy: site.health.start_unhealthy,
            active_checks: site.health.check != ActiveCheck::Disabled,
            outlier: site.health.outlier.clone(),
            max_ejected: ejection_cap(site.backends.len(), site.health.outlier.max_ejected_percent),
            ejecting: Mutex::new(()),
            tls: site.tls.as_ref().map(PeerTls::new),
        }
    }

    fn available(&self, backend: usize, now_ms: u64) -> bool {
        let active_ok =
            !self.active_checks || self.backends[backend].actively_up(self.start_unhealthy);
        active_ok && !self.passively_out(backend, now_ms)
    }

    /// Ejected by outlier detection. Without checks, a verdict carried over from when the site
    /// had them (waiting for a passing check) would never clear: only the back-off counts.
    fn passively_out(&self, backend: usize, now_ms: u64) -> bool {
        let b = &self.backends[backend];
        if self.active_checks {
            b.passively_ejected(now_ms)
        } else {
            b.ejection_running(now_ms)
        }
    }

    fn record_success(&self, backend: usize, now_ms: u64) {
        let forget_after = self.outlier.max_ejection.as_millis() as u64;
        self.backends[backend].record_success(now_ms, forget_after);
    }

    /// `now` is read again once the ejection lock is held: the wait can outlast a tick.
    fn record_failure(&self, backend: usize, now: impl Fn() -> u64) {
        let b = &self.backends[backend];
        let streak = b.record_failure(now());
        if !may_be_outlier(streak, self.outlier.eject_after_failures, self.max_ejected) {
            return;
        }
        let _serialised = self.ejecting.lock().unwrap_or_else(|p| p.into_inner());
        let now = now();
        let ejected = (0..self.backends.len())
            .filter(|&i| self.passively_out(i, now))
            .count();
        let others_available = (0..self.backends.len())
            .filter(|&i| i != backend && self.available(i, now))
            .count();
        match ejection(
            self.passively_out(backend, now),
            ejected,
            self.max_ejected,
            others_available,
        ) {
            Ejection::AlreadyOut => {}
            Ejection::CapReached | Ejection::LastAvailable => tracing::warn!(
                backend = %b.addr,
                ejected,
                cap = self.max_ejected,
                "outlier not ejected: the site's ejection cap is reached or it is the last available backend"
            ),
            Ejection::Eject => {
                let length = b.eject(
                    now,
                    self.outlier.base_ejection.as_millis() as u64,
                    self.outlier.max_ejection.as_millis() as u64,
                    self.active_checks,
                );
                tracing::warn!(backend = %b.addr, ejection_ms = length, "outlier ejected");
            }
        }
    }
}

/// How many of a site's `backends` outlier detection may hold out at once. Like Envoy, at
/// least one backend may always be ejected; 0% turns ejection off.
fn ejection_cap(backends: usize, max_ejected_percent: u32) -> usize {
    let percent = max_ejected_percent as usize;
    if percent == 0 {
        0
    } else {
        (backends * percent / 100).max(1)
    }
}

/// Whether a failure streak is worth taking the site's ejection lock for.
fn may_be_outlier(streak: u32, eject_after_failures: u32, cap: usize) -> bool {
    streak >= eject_after_failures && cap > 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ejection {
    Eject,
    /// Another failure got there first.
    AlreadyOut,
    CapReached,
    /// Passive evidence alone never empties a site: the last available backend stays.
    LastAvailable,
}

/// The decision on a backend whose failure streak reached the limit, from the site's state
/// at that instant (`ejected` counts this backend too if it is out).
fn ejection(already_out: bool, ejected: usize, cap: usize, others_available: usize) -> Ejection {
    if already_out {
        Ejection::AlreadyOut
    } else if ejected >= cap {
        Ejection::CapReached
    } else if others_available == 0 {
        Ejection::LastAvailable
    } else {
        Ejection::Eject
    }
}

/// Nginx's smooth weighted round-robin, unrolled into a schedule: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
pub fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
            .expect("a site has backends");
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

/// The backend for one request from a smooth weighted schedule. The scheduled slot is tried
/// first. When its backend is unavailable, further slots are probed in a pseudo-random order
/// rather than taking the next slot: the next slot would inherit the missing backend's
/// whole share, while random slots spread it over the others by weight.
pub fn pick_weighted(
    schedule: &[usize],
    start: usize,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let len = schedule.len();
    if len == 0 {
        return None;
    }
    let scheduled = schedule[start % len];
    if eligible(scheduled) {
        return Some(scheduled);
    }
    let mut seed = start as u64;
    (0..len)
        .map(|_| {
            seed = mix(seed);
            schedule[(seed % len as u64) as usize]
        })
        .chain((0..len).map(|k| schedule[(start + k) % len]))
        .find(|&i| eligible(i))
}

/// splitmix64's finaliser: cheap, well-spread pseudo-random numbers from a counter.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Pools {
    pub fn new(snapshot: &Snapshot, states: &HealthStates, clock: &Clock) -> Self {
        let sites = snapshot
            .sites
            .iter()
            .map(|site| SitePool::new(site, states))
            .collect();
        Pools {
            sites,
            clock: clock.clone(),
        }
    }

    fn site(&self, site: SiteId) -> &SitePool {
        &self.sites[usize::from(site.0)]
    }

    /// A health view frozen at one instant, for one decision.
    pub fn view(&self) -> HealthView<'_> {
        HealthView {
            pools: self,
            now_ms: self.clock.now_ms(),
        }
    }

    /// Whether the backend may take traffic now (for the `residency_backend_up` gauge).
    pub fn available(&self, site: SiteId, backend: usize) -> bool {
        self.site(site).available(backend, self.clock.now_ms())
    }

    pub fn backend(&self, site: SiteId, backend: usize) -> &Arc<BackendHealth> {
        &self.site(site).backends[backend]
    }

    /// Counts a request on `backend` while the guard lives, where the site's balance reads
    /// the count (least-in-flight); `None` elsewhere, so other sites pay nothing for it.
    pub fn in_flight(&self, site: SiteId, backend: usize) -> Option<InFlight> {
        let pool = self.site(site);
        (pool.balance == Balance::LeastInFlight).then(|| InFlight::start(&pool.backends[backend]))
    }

    pub fn addr(&self, site: SiteId, backend: usize) -> SocketAddr {
        self.backend(site, backend).addr
    }

    /// The backend as a Pingora peer: plain, or TLS as its site is configured.
    pub fn peer(&self, site: SiteId, backend: usize) -> HttpPeer {
        let mut peer = HttpPeer::new(self.addr(site, backend), false, String::new());
        if let Some(tls) = &self.site(site).tls {
            tls.apply(&mut peer);
        }
        peer
    }

    /// An available backend of `site` that `skip` does not reject, by the site's balance.
    pub fn pick(&self, site: SiteId, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let pool = self.site(site);
        let now = self.clock.now_ms();
        let eligible = |i: usize| !skip(i) && pool.available(i, now);
        let start = pool.next.fetch_add(1, Ordering::Relaxed);
        match pool.balance {
            Balance::WeightedRoundRobin => pick_weighted(&pool.schedule, start, eligible),
            Balance::LeastInFlight => {
                let n = pool.backends.len();
                // Fewest in flight per unit of weight; the rotating start breaks ties fairly.
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| eligible(i))
                    .min_by(|&a, &b| {
                        // (in_flight + 1) / weight, compared without division. The +1 is the
                        // request being placed, so weights count even when all are idle.
                        let load = |i: usize, other: usize| {
                            (u64::from(pool.backends[i].in_flight()) + 1)
                                * u64::from(pool.weights[other])
                        };
                        load(a, b).cmp(&load(b, a))
                    })
            }
        }
    }

    /// Passive health: a request on this backend succeeded.
    pub fn record_success(&self, site: SiteId, backend: usize) {
        self.site(site).record_success(backend, self.clock.now_ms());
    }

    /// Passive health: a request on this backend failed (connect error, backend timeout or
    /// 5xx). Ejects it after enough failures in a row, unless the site's cap is reached.
    pub fn record_failure(&self, site: SiteId, backend: usize) {
        self.site(site)
            .record_failure(backend, || self.clock.now_ms());
    }
}

pub struct HealthView<'a> {
    pools: &'a Pools,
    now_ms: u64,
}

impl SiteHealth for HealthView<'_> {
    fn is_healthy(&self, site: SiteId) -> bool {
        let pool = self.pools.site(site);
        (0..pool.backends.len()).any(|i| pool.available(i, self.now_ms))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use residency_config::{Backend, HealthSettings};

    use super::*;

    /// A site of `n` backends: eject after 3 failures, for 100 ms doubling up to 1 s.
    fn site(n: usize, check: ActiveCheck, max_ejected_percent: u32) -> (SitePool, HealthStates) {
        let backends: Vec<Backend> = (0..n)
            .map(|i| Backend {
                configured: format!("b{i}"),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                weight: 1,
            })
            .collect();
        let config = SiteConfig {
            backends,
            balance: Balance::WeightedRoundRobin,
            health: HealthSettings {
                check,
                outlier: OutlierSettings {
                    eject_after_failures: 3,
                    base_ejection: Duration::from_millis(100),
                    max_ejection: Duration::from_secs(1),
                    max_ejected_percent,
                },
                ..HealthSettings::default()
            },
            tls: None,
        };
        let states = config
            .backends
            .iter()
            .map(|b| (b.addr, Arc::new(BackendHealth::new(b.addr))))
            .collect();
        (SitePool::new(&config, &states), states)
    }

    fn fail(pool: &SitePool, backend: usize, times: usize, now: u64) {
        for _ in 0..times {
            pool.record_failure(backend, || now);
        }
    }

    /// `a` or `-` per backend: available at `now`.
    fn availability(pool: &SitePool, now: u64) -> String {
        (0..pool.backends.len())
            .map(|i| if pool.available(i, now) { 'a' } else { '-' })
            .collect()
    }

    #[test]
    fn the_ejection_cap_is_a_share_of_the_site_but_at_least_one() {
        for (backends, percent, cap) in [
            (2, 50, 1),
            (3, 50, 1),
            (4, 50, 2),
            (10, 10, 1),
            (10, 25, 2),
            (3, 1, 1),
            (1, 100, 1),
            (5, 100, 5),
            (10, 0, 0),
            (1, 0, 0),
        ] {
            assert_eq!(
                ejection_cap(backends, percent),
                cap,
                "{backends} at {percent}%"
            );
        }
    }

    #[test]
    fn ejection_decisions() {
        // (streak, eject after, cap) -> worth the lock
        for (streak, after, cap, suspect) in [
            (2, 3, 1, false),
            (3, 3, 1, true),
            (7, 3, 1, true),
            (3, 3, 0, false),
            (0, 3, 1, false),
        ] {
            assert_eq!(
                may_be_outlier(streak, after, cap),
                suspect,
                "{streak} {after} {cap}"
            );
        }
        // (already out, ejected now, cap, others available) -> decision
        for (out, ejected, cap, others, decision) in [
            (false, 0, 1, 2, Ejection::Eject),
            (false, 1, 2, 1, Ejection::Eject),
            (true, 1, 1, 2, Ejection::AlreadyOut),
            (true, 0, 1, 0, Ejection::AlreadyOut),
            (false, 1, 1, 2, Ejection::CapReached),
            (false, 2, 1, 2, Ejection::CapReached),
            (false, 1, 1, 0, Ejection::CapReached),
            (false, 0, 2, 0, Ejection::LastAvailable),
            (false, 1, 3, 0, Ejection::LastAvailable),
        ] {
            assert_eq!(
                ejection(out, ejected, cap, others),
                decision,
                "{out} {ejected} {cap} {others}"
            );
        }
    }

    #[test]
    fn outliers_are_ejected_within_the_cap_and_return_after_their_back_off() {
        let (pool, _) = site(3, ActiveCheck::Disabled, 50);
        fail(&pool, 0, 2, 0);
        assert_eq!(availability(&pool, 0), "aaa");
        fail(&pool, 0, 1, 0);
        assert_eq!(availability(&pool, 0), "-aa");
        // The cap (one of three) is reached: backend 1 stays whatever it does.
        fail(&pool, 1, 5, 10);
        assert_eq!(availability(&pool, 10), "-aa");
        // Backend 0's back-off ends; backend 1's streak has long passed the limit.
        assert_eq!(availability(&pool, 100), "aaa");
        fail(&pool, 1, 1, 100);
        assert_eq!(availability(&pool, 100), "a-a");
        // Backend 0 fails again: its second ejection lasts twice as long.
        fail(&pool, 0, 3, 200);
        assert_eq!(availability(&pool, 200), "-aa");
        assert_eq!(availability(&pool, 399), "-aa");
        assert_eq!(availability(&pool, 400), "aaa");
        // A success ends a streak: two more failures do not eject.
        fail(&pool, 2, 2, 500);
        pool.record_success(2, 500);
        fail(&pool, 2, 2, 500);
        assert_eq!(availability(&pool, 500), "aaa");
    }

    #[test]
    fn passive_evidence_never_empties_a_site() {
        let (pool, _) = site(2, ActiveCheck::Disabled, 100);
        fail(&pool, 0, 3, 0);
        fail(&pool, 1, 3, 0);
        assert_eq!(availability(&pool, 0), "-a");
        // Nor does it take the last backend the active checks leave.
        let (pool, states) = site(2, ActiveCheck::Tcp, 100);
        let down = &states[&pool.backends[1].addr];
        for _ in 0..3 {
            down.observe_check(false, 2, 3, 0);
        }
        assert_eq!(availability(&pool, 0), "a-");
        fail(&pool, 0, 3, 0);
        assert_eq!(availability(&pool, 0), "a-");
        // Ejection off: 0% keeps every backend in.
        let (pool, _) = site(2, ActiveCheck::Disabled, 0);
        fail(&pool, 0, 10, 0);
        assert_eq!(availability(&pool, 0), "aa");
    }

    #[test]
    fn with_checks_an_ejected_backend_also_waits_for_a_pass() {
        let (pool, states) = site(2, ActiveCheck::Tcp, 50);
        fail(&pool, 0, 3, 0);
        assert_eq!(availability(&pool, 100), "-a");
        states[&pool.backends[0].addr].observe_check(true, 2, 3, 150);
        assert_eq!(availability(&pool, 150), "aa");
        // A verdict carried over to a site without checks (a reload turned them off) would
        // never clear: there only the back-off counts.
        let (checked, states) = site(2, ActiveCheck::Tcp, 50);
        fail(&checked, 0, 3, 0);
        let unchecked = SitePool::new(
            &SiteConfig {
                backends: checked
                    .backends
                    .iter()
                    .map(|b| Backend {
                        configured: b.addr.to_string(),
                        addr: b.addr,
                        weight: 1,
                    })
                    .collect(),
                balance: Balance::WeightedRoundRobin,
                health: HealthSettings {
                    check: ActiveCheck::Disabled,
                    ..HealthSettings::default()
                },
                tls: None,
            },
            &states,
        );
        assert_eq!(availability(&checked, 100), "-a");
        assert_eq!(availability(&unchecked, 99), "-a");
        assert_eq!(availability(&unchecked, 100), "aa");
    }

    fn shares(schedule: &[usize], backends: usize, down: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for start in 0..picks {
            counts[pick_weighted(schedule, start, |i| i != down).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn a_missing_backend_shares_out_by_weight_not_to_its_neighbour() {
        // 1:1:1 with backend 1 down: the other two split evenly, not 1:2.
        let counts = shares(&smooth_weighted_schedule(&[1, 1, 1]), 3, 1, 30_000);
        assert_eq!(counts[1], 0);
        let ratio = counts[0] as f64 / counts[2] as f64;
        assert!((0.9..1.1).contains(&ratio), "{counts:?}");
        // 5:1:1 with the heavy backend down: 1:1 between the light ones.
        let counts = shares(&smooth_weighted_schedule(&[5, 1, 1]), 3, 0, 70_000);
        let ratio = counts[1] as f64 / counts[2] as f64;
        assert!((0.9..1.1).contains(&ratio), "{counts:?}");
        // 2:1:1 with a light backend down: still 2:1.
        let counts = shares(&smooth_weighted_schedule(&[2, 1, 1]), 3, 2, 40_000);
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "{counts:?}");
    }

    #[test]
    fn nothing_eligible_is_none_and_anything_eligible_is_found() {
        let schedule = smooth_weighted_schedule(&[3, 1]);
        assert_eq!(pick_weighted(&schedule, 7, |_| false), None);
        assert_eq!(pick_weighted(&schedule, 7, |i| i == 1), Some(1));
        assert_eq!(pick_weighted(&[], 0, |_| true), None);
    }

    #[test]
    fn smooth_schedule_spreads_heavy_backends() {
        assert_eq!(
            smooth_weighted_schedule(&[5, 1, 1]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
        assert_eq!(smooth_weighted_schedule(&[1, 1]), vec![0, 1]);
        // Common factors are divided out: 200:100 is 2:1.
        assert_eq!(smooth_weighted_schedule(&[200, 100]), vec![0, 1, 0]);
        let schedule = smooth_weighted_schedule(&[3, 2]);
        assert_eq!(schedule.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(schedule.len(), 5);
    }
}

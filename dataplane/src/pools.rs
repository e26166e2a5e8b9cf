//! Backend pools per site: which backends may take a request, and which one takes it.
//!
//! A backend is available when active checks do not rule it out and it is not passively
//! ejected. Passive ejection (outlier detection) is capped per site so that one bad deploy
//! cannot empty a site by itself; active checks are never overruled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use regions::{SiteHealth, SiteId};
use residency_config::{ActiveCheck, Balance, OutlierSettings, Snapshot};

use crate::clock::now_ms;
use crate::health::{BackendHealth, HealthStates, InFlight};
use crate::tls::PeerTls;
use pingora::upstreams::peer::HttpPeer;

pub struct Pools {
    sites: Vec<SitePool>,
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
    pub fn new(snapshot: &Snapshot, states: &HealthStates) -> Self {
        let sites = snapshot
            .sites
            .iter()
            .map(|site| {
                let weights: Vec<u32> = site.backends.iter().map(|b| b.weight).collect();
                let n = site.backends.len();
                let percent = site.health.outlier.max_ejected_percent as usize;
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
                    // Like Envoy, at least one backend may always be ejected; 0% turns it off.
                    max_ejected: if percent == 0 {
                        0
                    } else {
                        (n * percent / 100).max(1)
                    },
                    ejecting: Mutex::new(()),
                    tls: site.tls.as_ref().map(PeerTls::new),
                }
            })
            .collect();
        Pools { sites }
    }

    fn site(&self, site: SiteId) -> &SitePool {
        &self.sites[usize::from(site.0)]
    }

    /// A health view frozen at one instant, for one decision.
    pub fn view(&self) -> HealthView<'_> {
        HealthView {
            pools: self,
            now_ms: now_ms(),
        }
    }

    /// Whether the backend may take traffic now (for the `residency_backend_up` gauge).
    pub fn available(&self, site: SiteId, backend: usize) -> bool {
        self.site(site).available(backend, now_ms())
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
        let now = now_ms();
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
        let pool = self.site(site);
        let forget_after = pool.outlier.max_ejection.as_millis() as u64;
        pool.backends[backend].record_success(now_ms(), forget_after);
    }

    /// Passive health: a request on this backend failed (connect error, backend timeout or
    /// 5xx). Ejects it after enough failures in a row, unless the site's cap is reached.
    pub fn record_failure(&self, site: SiteId, backend: usize) {
        let pool = self.site(site);
        let b = &pool.backends[backend];
        if b.record_failure(now_ms()) < pool.outlier.eject_after_failures || pool.max_ejected == 0 {
            return;
        }
        let _serialised = pool.ejecting.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        if pool.passively_out(backend, now) {
            return;
        }
        let ejected = (0..pool.backends.len())
            .filter(|&i| pool.passively_out(i, now))
            .count();
        let others_available = (0..pool.backends.len())
            .filter(|&i| i != backend && pool.available(i, now))
            .count();
        // Passive evidence alone never empties a site: the last available backend stays.
        if ejected >= pool.max_ejected || others_available == 0 {
            tracing::warn!(
                backend = %b.addr,
                ejected,
                cap = pool.max_ejected,
                "outlier not ejected: the site's ejection cap is reached or it is the last available backend"
            );
            return;
        }
        let length = b.eject(
            now,
            pool.outlier.base_ejection.as_millis() as u64,
            pool.outlier.max_ejection.as_millis() as u64,
            pool.active_checks,
        );
        tracing::warn!(backend = %b.addr, ejection_ms = length, "outlier ejected");
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
    use super::{pick_weighted, smooth_weighted_schedule};

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

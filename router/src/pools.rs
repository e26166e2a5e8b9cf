//! Backend pools per site, with passive health: a backend that failed a connect or timed out
//! is skipped for a cooldown. Active checks (a later issue) will write the same state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use config::Snapshot;
use regions::{SiteHealth, SiteId};

pub struct Pools {
    sites: Vec<SitePool>,
    /// Cooldowns are stored as milliseconds since this instant, so they fit in an atomic.
    epoch: Instant,
}

struct SitePool {
    backends: Vec<BackendSlot>,
    next: AtomicUsize,
}

struct BackendSlot {
    addr: SocketAddr,
    /// The backend is skipped until this time (ms since `epoch`); 0 = never failed.
    down_until_ms: AtomicU64,
}

impl Pools {
    pub fn new(snapshot: &Snapshot) -> Self {
        Pools {
            sites: snapshot
                .backends
                .iter()
                .map(|backends| SitePool {
                    backends: backends
                        .iter()
                        .map(|b| BackendSlot {
                            addr: b.addr,
                            down_until_ms: AtomicU64::new(0),
                        })
                        .collect(),
                    next: AtomicUsize::new(0),
                })
                .collect(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn site(&self, site: SiteId) -> &SitePool {
        &self.sites[usize::from(site.0)]
    }

    /// A health view frozen at one instant, for one decision.
    pub fn view(&self) -> HealthView<'_> {
        HealthView {
            pools: self,
            now_ms: self.now_ms(),
        }
    }

    pub fn addr(&self, site: SiteId, backend: usize) -> SocketAddr {
        self.site(site).backends[backend].addr
    }

    /// Round-robin over the site's available backends, skipping those `skip` rejects.
    pub fn pick(&self, site: SiteId, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let pool = self.site(site);
        let n = pool.backends.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = pool.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| !skip(i) && pool.backends[i].down_until_ms.load(Ordering::Relaxed) <= now)
    }

    pub fn mark_failed(&self, site: SiteId, backend: usize, cooldown: Duration) {
        let until = self.now_ms() + cooldown.as_millis() as u64;
        self.site(site).backends[backend]
            .down_until_ms
            .fetch_max(until, Ordering::Relaxed);
    }
}

pub struct HealthView<'a> {
    pools: &'a Pools,
    now_ms: u64,
}

impl SiteHealth for HealthView<'_> {
    fn is_healthy(&self, site: SiteId) -> bool {
        self.pools
            .site(site)
            .backends
            .iter()
            .any(|b| b.down_until_ms.load(Ordering::Relaxed) <= self.now_ms)
    }
}

//! The router's lifecycle as values handed to whoever needs them, not process-wide flags: two
//! routers in one process (the in-process tests) each have their own.
//!
//! - [`Readiness`]: `/readyz` answers 200 once the first round of health checks is in. The
//!   health supervisor holds the one [`ReadyLatch`] and releases it (as linkerd2-proxy's
//!   admin readiness latch).
//! - [`Drain`]: the process is shutting down or handing its listeners to an upgraded process.
//!   The signal watcher starts it; the proxy reads it on every request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the router is ready to take traffic. Cloned freely; every clone sees the latch.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

/// Releases [`Readiness`] once. Not `Clone`: one component decides when the router is ready.
#[derive(Debug)]
pub struct ReadyLatch(Arc<AtomicBool>);

impl Readiness {
    /// Not ready, and the latch that makes it ready.
    pub fn new() -> (Readiness, ReadyLatch) {
        let flag = Arc::new(AtomicBool::new(false));
        (Readiness(Arc::clone(&flag)), ReadyLatch(flag))
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl ReadyLatch {
    pub fn release(self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Set once shutdown or an upgrade begins: responses then close their connections, so
/// clients reconnect (to the new process, after an upgrade) instead of reusing a connection
/// that is about to go away.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_its_latch_in_every_clone() {
        let (readiness, latch) = Readiness::new();
        let other = readiness.clone();
        assert!(!readiness.is_ready() && !other.is_ready());
        latch.release();
        assert!(readiness.is_ready() && other.is_ready());
        let (fresh, _latch) = Readiness::new();
        assert!(!fresh.is_ready(), "a second router starts unready");
    }

    #[test]
    fn drain_is_seen_by_every_clone_and_only_its_own() {
        let drain = Drain::default();
        let seen_by_proxy = drain.clone();
        let another_router = Drain::default();
        drain.start();
        assert!(seen_by_proxy.is_draining());
        assert!(!another_router.is_draining());
    }
}

//! A coarse clock for the request path: one atomic load instead of a `clock_gettime` call
//! (about 30 ns here, several per request). A background thread ticks it every millisecond;
//! health timestamps (ms) and replication expiry (s) need no finer.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use regions::UnixTime;

const TICK: Duration = Duration::from_millis(1);

struct Clock {
    started: Instant,
    /// Milliseconds since `started`.
    elapsed_ms: AtomicU64,
    /// Seconds since the Unix epoch.
    unix_seconds: AtomicI64,
    /// Milliseconds since the Unix epoch.
    unix_ms: AtomicU64,
}

impl Clock {
    fn update(&self) {
        self.elapsed_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.unix_seconds
            .store(unix.as_secs() as i64, Ordering::Relaxed);
        self.unix_ms
            .store(unix.as_millis() as u64, Ordering::Relaxed);
    }
}

/// The one process-wide value the data plane keeps, on purpose: it caches the operating
/// system's clock, which is the process's anyway, and holds nothing of any router (two
/// routers in one process read the same time). Policies that depend on time take it as a
/// parameter (`now_ms`), so their tests choose it.
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock = Box::leak(Box::new(Clock {
            started: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
            unix_seconds: AtomicI64::new(0),
            unix_ms: AtomicU64::new(0),
        }));
        clock.update();
        let ticker = std::thread::Builder::new()
            .name("coarse-clock".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                clock.update();
            });
        if let Err(e) = ticker {
            // Without the ticker the clock would stand still: health back-offs would never
            // end. That is a broken process, not bad input.
            panic!("cannot start the clock thread: {e}");
        }
        clock
    })
}

/// Milliseconds since the process first asked, to within a tick.
pub fn now_ms() -> u64 {
    clock().elapsed_ms.load(Ordering::Relaxed)
}

/// The current Unix time in milliseconds, to within a tick.
pub fn unix_ms() -> u64 {
    clock().unix_ms.load(Ordering::Relaxed)
}

/// The current Unix time in seconds, to within a tick.
pub fn unix_now() -> UnixTime {
    UnixTime(clock().unix_seconds.load(Ordering::Relaxed))
}

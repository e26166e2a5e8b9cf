//! A coarse clock for the request path: one atomic load instead of a `clock_gettime` call
//! (about 30 ns here, several per request). A thread ticks it every millisecond; health
//! timestamps (ms) and replication expiry (s) need no finer. Each router starts its own and
//! hands it to what reads time; policies that depend on time take it as a parameter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use regions::UnixTime;

const TICK: Duration = Duration::from_millis(1);

struct Ticks {
    started: Instant,
    /// Milliseconds since `started`.
    elapsed_ms: AtomicU64,
    /// Seconds since the Unix epoch.
    unix_seconds: AtomicI64,
    /// Milliseconds since the Unix epoch.
    unix_ms: AtomicU64,
}

impl Ticks {
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

/// One router's clock; clones read the same ticks.
#[derive(Clone)]
pub struct Clock(Arc<Ticks>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({} ms)", self.now_ms())
    }
}

impl Clock {
    /// A clock ticked by a thread of its own, which ends once the last clone is dropped.
    pub fn start() -> Clock {
        let ticks = Arc::new(Ticks {
            started: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
            unix_seconds: AtomicI64::new(0),
            unix_ms: AtomicU64::new(0),
        });
        ticks.update();
        let weak: Weak<Ticks> = Arc::downgrade(&ticks);
        let ticker = std::thread::Builder::new()
            .name("coarse-clock".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(ticks) => ticks.update(),
                    None => return,
                }
            });
        if let Err(e) = ticker {
            // Without the ticker the clock would stand still: health back-offs would never
            // end. That is a broken process, not bad input.
            panic!("cannot start the clock thread: {e}");
        }
        Clock(ticks)
    }

    /// Milliseconds since the clock started, to within a tick.
    pub fn now_ms(&self) -> u64 {
        self.0.elapsed_ms.load(Ordering::Relaxed)
    }

    /// The current Unix time in milliseconds, to within a tick.
    pub fn unix_ms(&self) -> u64 {
        self.0.unix_ms.load(Ordering::Relaxed)
    }

    /// The current Unix time in seconds, to within a tick.
    pub fn unix_now(&self) -> UnixTime {
        UnixTime(self.0.unix_seconds.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_ticks_and_tells_unix_time_to_within_a_tick() {
        let clock = Clock::start();
        let (before, at_start) = (clock.now_ms(), clock.unix_ms());
        std::thread::sleep(Duration::from_millis(30));
        assert!(clock.now_ms() >= before + 20, "{clock:?} did not tick");
        let system = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let lag = system.as_millis() as i128 - i128::from(clock.unix_ms());
        assert!((0..=20).contains(&lag), "unix time lags by {lag} ms");
        assert!(clock.unix_ms() > at_start);
        // Read one after the other: a tick may fall between them at a second's boundary.
        let seconds = (clock.unix_ms() / 1000) as i64;
        assert!((seconds - clock.unix_now().0).abs() <= 1);
        let other = Clock::start();
        assert!(
            other.now_ms() < clock.now_ms(),
            "each router's clock starts at 0"
        );
    }
}

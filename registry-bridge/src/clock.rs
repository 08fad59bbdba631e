//! Wall-clock time for the registry, injected so lease, eviction, self-preservation and
//! TTL logic is tested on a fake clock without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch, the unit Eureka uses on the wire.
pub type Millis = u64;

/// The source of "now" for the registry model.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> Millis;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start` milliseconds since the epoch.
    pub fn new(start: Millis) -> Self {
        Self {
            now: AtomicU64::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(duration_millis(by), Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set(&self, at: Millis) {
        self.now.store(at, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

//! Time is a parameter: validity windows, CRL dates and expirations are testable at fixed instants.

use std::fmt::Debug;
use std::sync::Mutex;

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct FixedClock(Mutex<OffsetDateTime>);

impl FixedClock {
    /// A clock stopped at `t`.
    pub fn new(t: OffsetDateTime) -> Self {
        FixedClock(Mutex::new(t))
    }
    /// Moves the clock.
    pub fn set(&self, t: OffsetDateTime) {
        if let Ok(mut g) = self.0.lock() {
            *g = t;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().map_or(OffsetDateTime::UNIX_EPOCH, |g| *g)
    }
}

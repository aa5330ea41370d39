//! Time as the pipeline sees it, behind a seam so tests can make it deterministic.

use std::time::Instant;

/// A monotonic clock.
#[cfg_attr(test, mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

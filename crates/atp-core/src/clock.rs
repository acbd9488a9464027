//! Where a store takes "now" from.
//!
//! Every store operation whose result depends on the time (abandonment,
//! retention, dead daemons, and every timestamp it writes) reads it from the
//! [`Clock`] in its [`StoreOptions`](crate::store::StoreOptions). By default
//! that is the engine's own clock: the database server's on PostgreSQL,
//! which every daemon on every host shares, and the process clock on
//! SQLite, whose one file lives on one host. A [`TestClock`] moves it
//! forward by hand, so a test of a time-out advances the clock instead of
//! sleeping through the time-out.
//!
//! A moved clock is the engine's clock plus a shift, not a fixed instant:
//! every timestamp a store writes and every one it compares still comes
//! from one clock (on PostgreSQL still the server's), and time keeps
//! flowing, so orders by update time stay what they are without a test
//! clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The clock of a store: the engine's, shifted by however far a
/// [`TestClock`] moved it. Cheap to clone; clones read the same shift.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Microseconds added to the engine's clock; `None` for the engine's
    /// clock as it is (the default, which costs nothing per read).
    shift: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The engine's own clock (the default).
    pub fn engine() -> Self {
        Clock::default()
    }

    /// How far the clock is ahead of the engine's, in microseconds.
    pub fn shift_micros(&self) -> i64 {
        self.shift
            .as_ref()
            .map_or(0, |shift| shift.load(Ordering::SeqCst))
    }

    /// Now, in microseconds since the epoch, for engines whose clock is the
    /// process clock (SQLite).
    pub fn now_micros(&self) -> i64 {
        crate::time::to_micros(time::OffsetDateTime::now_utc()) + self.shift_micros()
    }
}

/// Two clocks are equal when they read the same shift (both the engine's,
/// or both moved by the same [`TestClock`]).
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (&self.shift, &other.shift) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Clock {}

/// A clock that tests move by hand. Give [`TestClock::clock`] to the store's
/// options, then [`TestClock::advance`] it past a time-out instead of
/// sleeping.
#[derive(Debug, Clone, Default)]
pub struct TestClock {
    shift: Arc<AtomicI64>,
}

impl TestClock {
    /// A clock that starts at the engine's time.
    pub fn new() -> Self {
        TestClock::default()
    }

    /// The store's view of this clock.
    pub fn clock(&self) -> Clock {
        Clock {
            shift: Some(Arc::clone(&self.shift)),
        }
    }

    /// Moves the clock forward by `by` (to the microsecond).
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.shift.fetch_add(micros, Ordering::SeqCst);
    }

    /// How far it has been moved in all.
    pub fn advanced(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.shift.load(Ordering::SeqCst)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_every_clone_and_only_its_own() {
        let test = TestClock::new();
        let clock = test.clock();
        let same = clock.clone();
        assert_eq!(clock.shift_micros(), 0);
        test.advance(Duration::from_millis(1500));
        assert_eq!(same.shift_micros(), 1_500_000);
        assert_eq!(test.advanced(), Duration::from_millis(1500));
        assert_eq!(Clock::engine().shift_micros(), 0);
        assert_eq!(clock, same);
        assert_ne!(clock, Clock::engine());
        assert_ne!(clock, TestClock::new().clock());
        assert!(clock.now_micros() >= Clock::engine().now_micros() + 1_400_000);
    }
}

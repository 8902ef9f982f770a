//! Wall-clock time as the core counts it: milliseconds since the Unix epoch.
//! The host's clock is read at most once per callback and converted here, so
//! every decision in that callback sees the same instant; a proxied cache hit
//! far from its refresh point reads it not at all (`RequestClock`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How far ahead of the worker's tick clock a deadline must lie for a request
/// to trust that it has not passed without reading the host's clock. The tick
/// clock is set on every one-second tick of the worker's root context and on
/// every request that reads the host's clock; ticks run on the same event
/// loop as the worker's requests, so it lags the true time by the tick period
/// plus however long that loop was held up. 30 s is thirty ticks: a worker
/// whose loop stalls that long has stopped serving anyway.
pub const TICK_CLOCK_MARGIN_MS: u64 = 30_000;

/// The time one request is handled at: the worker's tick clock, a lower bound
/// that costs nothing, and the host's clock, read at most once and only when
/// a decision needs the exact time (a deadline within the margin, a
/// signature, a redirect's `max-age`, a log line).
pub struct RequestClock<'a> {
    /// The worker's tick clock (ms), `None` where the host gives no ticks.
    tick_ms: Option<u64>,
    /// The host's clock, once read.
    exact: Option<SystemTime>,
    /// Reads the host's clock (a hostcall in Envoy).
    read: &'a dyn Fn() -> SystemTime,
}

impl<'a> RequestClock<'a> {
    /// A request's clock: `tick_ms` from the worker's tick clock, `exact` if
    /// the host's clock was already read for this request.
    pub fn new(
        tick_ms: Option<u64>,
        exact: Option<SystemTime>,
        read: &'a dyn Fn() -> SystemTime,
    ) -> Self {
        Self {
            tick_ms,
            exact,
            read,
        }
    }

    /// Whether `deadline_ms` is certainly still ahead, judged by the tick
    /// clock alone (no hostcall): it lies more than `TICK_CLOCK_MARGIN_MS`
    /// beyond it. `false` means "not known", not "passed".
    pub fn surely_before(&self, deadline_ms: u64) -> bool {
        self.tick_ms
            .is_some_and(|t| t.saturating_add(TICK_CLOCK_MARGIN_MS) < deadline_ms)
    }

    /// The host's time, read on first use and kept for the request.
    pub fn exact(&mut self) -> SystemTime {
        *self.exact.get_or_insert_with(|| (self.read)())
    }

    /// `exact()` in Unix milliseconds.
    pub fn exact_ms(&mut self) -> u64 {
        unix_ms(self.exact())
    }

    /// The host's time if this request already read it.
    pub fn read_so_far(&self) -> Option<SystemTime> {
        self.exact
    }
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;

//! The state every request context of a VM shares with the root context:
//! the configuration, the metric handles, this worker's local cache and
//! rotating credentials, and the failure-log limiter.

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use crate::cache::local::LocalCache;
use crate::clock::unix_ms;
use crate::config::Config;
use crate::log_limit::LogLimiter;
use crate::metrics::OriginMetrics;
use crate::wasm::rotating::Rotation;

/// What every request of a VM shares: the configuration and the metric handles
/// (one set per origin, in origin order, plus one for unmatched requests).
pub struct Shared {
    /// The compiled plugin configuration.
    pub config: Config,
    /// Each origin's metric handles, in origin order.
    pub origins: Vec<OriginMetrics>,
    /// The metric handles of requests no origin matched.
    pub unmatched: OriginMetrics,
    /// This worker's copy of fresh rewrites (see `cache::local`).
    pub local: RefCell<LocalCache>,
    /// Requests seen, for latency sampling.
    pub seen: Cell<u32>,
    /// Rotating credentials as this worker holds them (refreshed on the
    /// root context's tick); `None` with static keys.
    pub rotating: Option<Rotation>,
    /// Whether this VM has handled a request (see `Refresher::mark_serving`).
    pub served: Cell<bool>,
    /// Holds back repeated failure lines (see `log_limit`).
    pub log_limit: RefCell<LogLimiter>,
    /// The worker's tick clock (Unix ms), set on each tick and by each
    /// request that reads the host's clock; 0 where the host gives no ticks
    /// (then every request reads the host's clock). See `clock::RequestClock`.
    pub tick_ms: Cell<u64>,
}

impl Shared {
    /// Whether this request's latencies are recorded (one in
    /// `latency_sample_every`): its time in the filter costs a clock read and a
    /// histogram record, a signature it computes two more clock reads and
    /// another record.
    pub fn sample_latency(&self) -> bool {
        let n = self.seen.get();
        self.seen.set(n.wrapping_add(1));
        n % self.config.latency_sample_every.max(1) == 0
    }

    /// The tick clock, if the host ticks.
    pub fn tick_clock(&self) -> Option<u64> {
        Some(self.tick_ms.get()).filter(|t| *t != 0)
    }

    /// A request read the host's clock: the tick clock moves up to it (only
    /// where the host ticks; a failed read, the epoch, stops its use until
    /// the next tick).
    pub fn saw_time(&self, t: SystemTime) {
        if self.tick_ms.get() != 0 {
            self.tick_ms.set(unix_ms(t));
        }
    }

    /// The metrics of an origin position, or the unmatched set.
    pub fn metrics(&self, index: Option<usize>) -> &OriginMetrics {
        index
            .and_then(|i| self.origins.get(i))
            .unwrap_or(&self.unmatched)
    }
}

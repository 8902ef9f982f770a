//! Envoy's native stats as the metrics backend: metric definitions, counter
//! increments batched per worker, gauges and histogram samples.

use super::{counted, proxy_define_metric, proxy_increment_metric, proxy_record_metric, STATUS_OK};

/// Metric ids are small integers chosen by Envoy: a multiplicative hash is
/// enough and much cheaper than the default SipHash on every request.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The map of pending increments hashes with `IdHasher`.
type IdHash = std::hash::BuildHasherDefault<IdHasher>;

thread_local! {
    /// Counter increments not yet handed to Envoy, by metric id. A VM is
    /// single-threaded, so this is per worker; `flush_counters` runs on every tick.
    static PENDING: std::cell::RefCell<std::collections::HashMap<u32, u64, IdHash>> =
        std::cell::RefCell::new(std::collections::HashMap::default());
}

/// Envoy's native stats through proxy-wasm metrics (stored as `wasmcustom.*`).
/// Counter increments are batched per worker and flushed once a tick (1 s), which
/// takes three or four hostcalls off every request; gauges and histogram
/// samples go straight to Envoy.
pub struct WasmMetrics;

impl crate::metrics::MetricsBackend for WasmMetrics {
    fn define(&self, kind: crate::metrics::MetricKind, name: &str) -> Option<u32> {
        use crate::metrics::MetricKind;
        // proxy-wasm's metric types: counter 0, gauge 1, histogram 2.
        let t = match kind {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
            MetricKind::Histogram => 2,
        };
        let mut id = 0u32;
        counted();
        // SAFETY: a live slice and an out-pointer to a local.
        let s = unsafe { proxy_define_metric(t, name.as_ptr(), name.len(), &mut id) };
        (s == STATUS_OK).then_some(id)
    }

    fn add(&self, id: u32, delta: u64) {
        let _ = PENDING.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                let n = p.entry(id).or_insert(0);
                *n = n.saturating_add(delta);
            }
        });
    }

    fn record(&self, id: u32, value: u64) {
        counted();
        // SAFETY: no pointers. A refused sample is dropped.
        let _ = unsafe { proxy_record_metric(id, value) };
    }
}

/// Hands the batched counter increments to Envoy (a refused one is dropped:
/// the metric id is unknown to the host, so there is nowhere to count it).
pub fn flush_counters() {
    let _ = PENDING.try_with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        for (id, delta) in p.drain() {
            counted();
            // SAFETY: no pointers.
            let _ = unsafe { proxy_increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX)) };
        }
    });
}

//! The proxy-wasm side of the host-facing pieces: the panic hook, the request
//! header map read in one call (parsed in place by `headers`, never trusting
//! the bytes to be UTF-8: the SDK's `String` getters panic on other bytes),
//! shared data as the cache's store, metrics, and the clock.

/// Logs a panic at critical level before the VM aborts, so the cause of a dead
/// worker is in Envoy's log (the message never holds secrets: the core has no
/// panic paths that format credentials).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::error!("envoy-presign: panic (worker VM will be restarted): {info}");
    }));
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The proxy-wasm ABI call behind the SDK's header getters (map type 0 is
    /// the request headers); called directly to parse the result in place.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// The request headers as Envoy serializes them (see `headers::pairs`); empty
/// if the host refuses.
pub fn request_header_map() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through
    // this module's `proxy_on_memory_allocate` (the SDK's, a `Vec<u8>` of that
    // capacity), whose ownership passes to us; status 0 is `Ok`.
    unsafe {
        if proxy_get_header_map_pairs(0, &mut data, &mut size) != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

/// The cache's store on Envoy's shared data (one namespace per `vm_id`,
/// visible to every worker).
pub struct SharedData;

impl crate::cache::Store for SharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), crate::cache::StoreError> {
        proxy_wasm::hostcalls::get_shared_data(key).map_err(|_| crate::cache::StoreError::Failed)
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), crate::cache::StoreError> {
        proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| match s {
            proxy_wasm::types::Status::CasMismatch => crate::cache::StoreError::CasMismatch,
            _ => crate::cache::StoreError::Failed,
        })
    }
}

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
        use proxy_wasm::types::MetricType;
        let t = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        proxy_wasm::hostcalls::define_metric(t, name).ok()
    }

    fn add(&self, id: u32, delta: u64) {
        PENDING.with(|p| *p.borrow_mut().entry(id).or_insert(0) += delta);
    }

    fn record(&self, id: u32, value: u64) {
        let _ = proxy_wasm::hostcalls::record_metric(id, value);
    }
}

/// Hands the batched counter increments to Envoy.
pub fn flush_counters() {
    PENDING.with(|p| {
        for (id, delta) in p.borrow_mut().drain() {
            let _ = proxy_wasm::hostcalls::increment_metric(
                id,
                i64::try_from(delta).unwrap_or(i64::MAX),
            );
        }
    });
}

/// The host's wall clock (never fails in Envoy; the epoch if it ever did).
pub fn now() -> std::time::SystemTime {
    proxy_wasm::hostcalls::get_current_time().unwrap_or(std::time::UNIX_EPOCH)
}

/// Microseconds from `start` to now (0 if the clock stepped back).
pub fn micros_since(start: std::time::SystemTime) -> u64 {
    now()
        .duration_since(start)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

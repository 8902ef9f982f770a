//! The proxy-wasm side of the host-facing pieces: the panic hook and the
//! helpers the filter uses to read request headers without trusting them to be
//! UTF-8 (the SDK's `String` getters panic on other bytes).

use proxy_wasm::types::Bytes;

/// Logs a panic at critical level before the VM aborts, so the cause of a dead
/// worker is in Envoy's log (the message never holds secrets: the core has no
/// panic paths that format credentials).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::error!("envoy-presign: panic (worker VM will be restarted): {info}");
    }));
}

/// The request facts the filter needs, read from one header-map hostcall.
#[derive(Debug, Default)]
pub struct HeaderSnapshot {
    /// `:method`, or empty if it was not UTF-8.
    pub method: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`; `None` when absent (e.g. CONNECT), `Some(Err(()))` when its
    /// bytes are not UTF-8 (the filter rejects those).
    pub path: Option<Result<String, ()>>,
    /// `x-request-id`, the correlation id used in logs.
    pub request_id: String,
    /// Names of headers that carry client credentials, to strip.
    pub auth_headers: Vec<String>,
}

impl HeaderSnapshot {
    /// Builds the snapshot from the header pairs Envoy returned.
    pub fn from_pairs(pairs: Vec<(String, Bytes)>) -> Self {
        let mut s = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                ":method" => s.method = String::from_utf8(value).unwrap_or_default(),
                ":authority" => s.authority = String::from_utf8(value).unwrap_or_default(),
                ":path" => s.path = Some(String::from_utf8(value).map_err(|_| ())),
                "x-request-id" => s.request_id = String::from_utf8(value).unwrap_or_default(),
                _ if crate::request::is_client_auth_header(&name) => s.auth_headers.push(name),
                _ => {}
            }
        }
        s
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

thread_local! {
    /// Counter increments not yet handed to Envoy, by metric id. A VM is
    /// single-threaded, so this is per worker; `flush_counters` runs on every tick.
    static PENDING: std::cell::RefCell<std::collections::HashMap<u32, u64>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
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

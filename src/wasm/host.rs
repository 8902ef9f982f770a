//! The proxy-wasm side of the host-facing pieces: the raw hostcalls, the
//! plugin's configuration, the tick period and the clock here; shared data
//! as the cache's store, the metrics backend, the current request, HTTP calls
//! and the logger in the submodules, which build on the imports here.
//!
//! Every hostcall is made through the raw ABI, returning the host's status as
//! a value (the filter uses no SDK: the proxy-wasm Rust SDK's wrappers
//! `panic!` on any status they do not expect, and a panic aborts the worker's
//! VM with its batched counters). A refused call becomes an error the caller
//! counts (`store_ops`, `hostcall_errors`) instead; a refused log line is
//! dropped. The functions Envoy calls are in `abi`.

/// Credential calls through Envoy's async HTTP client.
mod http_call;
/// The `log` crate's logger and the panic hook.
mod logger;
/// The metrics backend on Envoy's stats.
mod metrics;
/// The current request's headers and local reply.
mod request;
/// Shared data as the cache's store.
mod shared_data;

pub use http_call::{http_call_response, WasmDispatcher};
pub use logger::{install_logger, install_panic_hook};
pub use metrics::{flush_counters, WasmMetrics};
pub use request::{request_header_map, WasmRequest};
pub use shared_data::SharedData;

// proxy-wasm ABI 0.2.1 imports, declared with a plain `u32` status, so any
// status the host returns is a valid value to compare. Private to `host` and
// its submodules: nothing else makes a hostcall.
#[link(wasm_import_module = "env")]
extern "C" {
    /// Writes one line to Envoy's log (`logger`).
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
    /// Starts an HTTP call from the root context (`http_call`).
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    /// Serializes a header map (the request's, or a call answer's).
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    /// Sets a request header (`request`).
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    /// Removes a request header (`request`).
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    /// Answers the request from the filter (`request`).
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    /// Reads a shared-data entry and its CAS (`shared_data`).
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    /// Writes a shared-data entry, compare-and-swap when `cas` is not 0 (`shared_data`).
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    /// Copies bytes out of a host buffer (the configuration, a call answer's body).
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    /// The host's wall clock.
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    /// Asks for `on_tick` at this period.
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    /// Defines a metric and returns its id (`metrics`).
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    /// Adds to a counter (`metrics`, batched).
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    /// Sets a gauge or records a histogram sample (`metrics`).
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

/// The host's status for a call that succeeded.
const STATUS_OK: u32 = 0;
/// A shared-data key that has no entry.
const STATUS_NOT_FOUND: u32 = 1;
/// A shared-data write whose CAS no longer matches.
const STATUS_CAS_MISMATCH: u32 = 8;
/// The header map of the current request.
const REQUEST_HEADERS: u32 = 0;
/// The header map of the HTTP call answer being delivered.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// The body buffer of the HTTP call answer being delivered.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// The buffer holding the plugin's configuration.
const PLUGIN_CONFIGURATION: u32 = 7;

thread_local! {
    /// Hostcalls this worker's VM made, in `hostcall-count` builds (`make
    /// bench` reports them per request; see `hostcalls_made`).
    static HOSTCALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one hostcall in `hostcall-count` builds; compiles to nothing otherwise.
#[inline(always)]
fn counted() {
    if cfg!(feature = "hostcall-count") {
        let _ = HOSTCALLS.try_with(|c| c.set(c.get().wrapping_add(1)));
    }
}

/// Hostcalls made so far by this worker (always 0 outside `hostcall-count`
/// builds): the filter records the difference across a request.
pub fn hostcalls_made() -> u64 {
    if cfg!(feature = "hostcall-count") {
        HOSTCALLS.try_with(std::cell::Cell::get).unwrap_or(0)
    } else {
        0
    }
}

/// Takes ownership of bytes the host allocated for us (through
/// `abi::proxy_on_memory_allocate`, a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or a pointer the host returned with `size` for a call
/// that succeeded.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    (!data.is_null()).then(|| Vec::from_raw_parts(data, size, size))
}

/// The plugin's configuration bytes (empty if the host has none or refuses).
pub fn plugin_configuration() -> Vec<u8> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: out-pointers to locals; on success the host hands us `size` bytes.
    unsafe {
        let s = proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size);
        if s != STATUS_OK {
            return Vec::new();
        }
        owned(data, size).unwrap_or_default()
    }
}

/// Asks for `on_tick` every `period`; false if the host refuses.
pub fn set_tick_period(period: std::time::Duration) -> bool {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    counted();
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(ms) == STATUS_OK }
}

/// The host's wall clock (never fails in Envoy; the epoch if it ever did).
pub fn now() -> std::time::SystemTime {
    let mut nanos = 0u64;
    counted();
    // SAFETY: an out-pointer to a local.
    if unsafe { proxy_get_current_time_nanoseconds(&mut nanos) } != STATUS_OK {
        return std::time::UNIX_EPOCH;
    }
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    #[cfg(feature = "test-clock-offset")]
    let now = test_clock_offset::shift(now);
    now
}

/// `test-clock-offset` builds only: the clock offset of this VM, read once from
/// `ENVOY_PRESIGN_TEST_CLOCK_OFFSET_MS` in its environment (0 when unset or invalid).
#[cfg(feature = "test-clock-offset")]
mod test_clock_offset {
    use std::time::{Duration, SystemTime};

    thread_local! {
        /// The offset in milliseconds, signed (read on first use).
        static OFFSET_MS: i64 = std::env::var("ENVOY_PRESIGN_TEST_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }

    /// `now` moved by the offset (saturating at the epoch).
    pub fn shift(now: SystemTime) -> SystemTime {
        let offset = OFFSET_MS.with(|o| *o);
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            now + by
        } else {
            now.checked_sub(by).unwrap_or(std::time::UNIX_EPOCH)
        }
    }
}

/// Microseconds from `start` to now (0 if the clock stepped back).
pub fn micros_since(start: std::time::SystemTime) -> u64 {
    now()
        .duration_since(start)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

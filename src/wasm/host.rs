//! The proxy-wasm side of the host-facing pieces: the logger and the panic
//! hook, the raw hostcalls, shared data as the cache's store, request actions,
//! HTTP calls, metrics and the clock.
//!
//! Every hostcall is made through the raw ABI here, returning the host's
//! status as a value (the filter uses no SDK: the proxy-wasm Rust SDK's
//! wrappers `panic!` on any status they do not expect, and a panic aborts the
//! worker's VM with its batched counters). A refused call becomes an error
//! the caller counts (`store_ops`, `hostcall_errors`) instead; a refused log
//! line is dropped. The functions Envoy calls are in `abi`.

use std::fmt::Write as _;

use crate::cache::{Store, StoreError};
use crate::request::actions::{HostError, RequestHost};

/// Logs a panic at critical level before the VM aborts, so the cause of a dead
/// worker is in Envoy's log (the message never holds secrets: the core has no
/// panic paths that format credentials). Straight through `proxy_log`, whose
/// status is ignored: the hook itself cannot panic.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut line = String::new();
        // A formatting error only shortens the line.
        let _ = write!(
            line,
            "envoy-presign: panic (worker VM will be restarted): {info}"
        );
        log_line(LogLevel::Critical, &line);
    }));
}

/// Sends the `log` crate's records to Envoy at most as verbose as `max`
/// (Envoy's own wasm log level filters them further).
pub fn install_logger(max: log::LevelFilter) {
    // Fails only if a logger is already set (a second `_initialize`): it is ours.
    let _ = log::set_logger(&HostLogger);
    log::set_max_level(max);
}

/// proxy-wasm's log levels.
#[derive(Clone, Copy)]
#[repr(u32)]
enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Writes one line to Envoy's log; a line the host refuses is dropped
/// (there is nowhere else to write it). Not counted as a hostcall: logging
/// never was (`hostcall-count` measures the request's work).
fn log_line(level: LogLevel, line: &str) {
    // SAFETY: a live slice with its length.
    let _ = unsafe { proxy_log(level as u32, line.as_ptr(), line.len()) };
}

/// The `log` crate's logger: each record is one `proxy_log` call.
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        if let Some(line) = record.args().as_str() {
            log_line(level, line);
            return;
        }
        let mut line = String::new();
        // Not `to_string`, which panics if a `Display` fails: that only
        // shortens the line here.
        let _ = line.write_fmt(*record.args());
        log_line(level, &line);
    }

    fn flush(&self) {}
}

// proxy-wasm ABI 0.2.1 imports, declared with a plain `u32` status, so any
// status the host returns is a valid value to compare.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
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
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
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
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;
const REQUEST_HEADERS: u32 = 0;
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
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

fn status(s: u32) -> Result<(), HostError> {
    if s == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(s))
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

/// The request headers as Envoy serializes them (see `headers::pairs`); empty
/// if the host refuses.
pub fn request_header_map() -> Vec<u8> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: out-pointers to locals; on success the host hands us `size` bytes.
    unsafe {
        if proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) != STATUS_OK {
            return Vec::new();
        }
        owned(data, size).unwrap_or_default()
    }
}

/// The plugin's configuration bytes (empty if the host has none or refuses).
pub fn plugin_configuration() -> Vec<u8> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: as in `request_header_map`.
    unsafe {
        let s = proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size);
        if s != STATUS_OK {
            return Vec::new();
        }
        owned(data, size).unwrap_or_default()
    }
}

/// Sends a credentials call through Envoy's async HTTP client, from the root
/// context; `abi` keeps the token and routes the answer back to that context.
/// Envoy refuses a call with BadArgument (unknown cluster) or InternalFailure;
/// any status but Ok is a refusal (`None`). No body, no trailers.
pub struct WasmDispatcher;

impl crate::rotation::refresh::Dispatcher for WasmDispatcher {
    fn dispatch(&self, call: &crate::rotation::fetch::Call) -> Option<u32> {
        let headers = crate::request::headers::serialize(&call.headers);
        let trailers = crate::request::headers::serialize::<&str, &str>(&[]);
        let timeout_ms = u32::try_from(call.timeout_ms).unwrap_or(u32::MAX);
        let mut token = 0u32;
        counted();
        // SAFETY: pointers to live slices with their lengths (no body: null,
        // 0) and an out-pointer to a local.
        let s = unsafe {
            proxy_http_call(
                call.cluster.as_ptr(),
                call.cluster.len(),
                headers.as_ptr(),
                headers.len(),
                std::ptr::null(),
                0,
                trailers.as_ptr(),
                trailers.len(),
                timeout_ms,
                &mut token,
            )
        };
        if s != STATUS_OK {
            return None;
        }
        crate::wasm::abi::track_http_call(token);
        Some(token)
    }
}

/// The status of the call answer being delivered (0 when none: a reset or
/// connection failure delivers no headers), and at most `max_body` bytes
/// of its body (valid only inside `on_http_call_response`).
pub fn http_call_response(body_size: usize, max_body: usize) -> (u16, Vec<u8>) {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: as in `request_header_map`.
    let headers = unsafe {
        if proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS, &mut data, &mut size) == STATUS_OK
        {
            owned(data, size).unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    let status = crate::request::headers::pairs(&headers)
        .find(|(k, _)| *k == b":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    if body_size == 0 {
        return (status, Vec::new());
    }
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: as in `request_header_map`.
    let body = unsafe {
        let want = body_size.min(max_body);
        if proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, want, &mut data, &mut size)
            == STATUS_OK
        {
            owned(data, size).unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    (status, body)
}

/// Asks for `on_tick` every `period`; false if the host refuses.
pub fn set_tick_period(period: std::time::Duration) -> bool {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    counted();
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(ms) == STATUS_OK }
}

/// The current request's headers and local replies.
pub struct WasmRequest;

impl RequestHost for WasmRequest {
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        counted();
        // SAFETY: pointers to live slices with their lengths.
        status(unsafe {
            proxy_replace_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
        counted();
        // SAFETY: as above.
        status(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
    }

    fn send_reply(
        &mut self,
        code: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let headers = crate::request::headers::serialize(headers);
        counted();
        // SAFETY: as above; no details string (null, 0); -1: not gRPC.
        status(unsafe {
            proxy_send_local_response(
                code,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        })
    }
}

/// The cache's store on Envoy's shared data (one namespace per `vm_id`,
/// visible to every worker).
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
        counted();
        // SAFETY: as in `request_header_map`.
        unsafe {
            match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
                STATUS_OK => Ok((owned(data, size), (cas != 0).then_some(cas))),
                STATUS_NOT_FOUND => Ok((None, None)),
                _ => Err(StoreError::Failed),
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        counted();
        // SAFETY: pointers to live slices with their lengths.
        let s = unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match s {
            STATUS_OK => Ok(()),
            STATUS_CAS_MISMATCH => Err(StoreError::CasMismatch),
            _ => Err(StoreError::Failed),
        }
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

//! The proxy-wasm contexts: the root context compiles the configuration and
//! defines the metrics once per VM, and on ticks flushes counters, drives the
//! rotating credentials and scans the cache size; each HTTP context hands one
//! request to `request::pipeline` and carries out and records what it did.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::cache::local::LocalCache;
use crate::cache::scan::{ScanTick, Scanner};
use crate::clock::{unix_ms, RequestClock};
use crate::config::startup::{configure, Configured};
use crate::log_limit::LogLimiter;
use crate::metrics::CredentialMetrics;
use crate::metrics::OriginMetrics;
use crate::request::headers::HeaderView;
use crate::request::pipeline::{self, Handled};
use crate::request::url_source::Host;
use crate::wasm::abi::{self, Action, Context, HttpContext, RootContext};
use crate::wasm::failure_log::{log_failure, log_held_back};
use crate::wasm::host::{
    flush_counters, hostcalls_made, install_logger, install_panic_hook, micros_since, now,
    plugin_configuration, request_header_map, set_tick_period, SharedData, WasmMetrics,
    WasmRequest,
};
use crate::wasm::rotating::Rotation;
use crate::wasm::shared::Shared;

/// The WASI reactor's start, which Envoy calls once per VM before anything
/// else (with only logging and the environment available): the ABI layer's
/// set-up with this filter's root contexts, then the logger and the panic hook.
#[no_mangle]
pub extern "C" fn _initialize() {
    abi::initialize(new_root);
    start();
}

/// The VM's start (from `_initialize`, once per VM, before any context).
fn start() {
    // Debug reaches Envoy, whose own wasm log level (info by default) filters it.
    install_logger(log::LevelFilter::Debug);
    install_panic_hook();
}

/// Each root context Envoy creates (one per plugin configuration in the VM).
fn new_root() -> Box<dyn RootContext> {
    Box::new(PresignRoot::default())
}

/// Ticks per scan pass are `scan_interval` seconds of one-second ticks.
const TICK: Duration = Duration::from_secs(1);

/// Per-VM state.
#[derive(Default)]
struct PresignRoot {
    /// What the requests share, once a configuration was accepted.
    shared: Option<Rc<Shared>>,
    /// This VM's random id: who holds a lease (the cache scan's, a refresh's).
    worker_id: u64,
    /// The cache-size scan, advanced on ticks.
    scanner: Scanner,
    /// The rotating credentials' metric handles (none with static keys).
    credential_metrics: CredentialMetrics,
}

impl Context for PresignRoot {
    fn on_done(&mut self) {
        // The VM is going away (drain, reload): hand over the last counts.
        flush_counters();
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(rotation) = shared.rotating.as_ref() else {
            return;
        };
        let events = rotation.on_call_response(token_id, num_headers, body_size);
        rotation.apply(events, &self.credential_metrics, &shared.local);
    }
}

impl RootContext for PresignRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = plugin_configuration();
        let env = |k: &str| std::env::var(k).ok();
        // The same function `envoy-presign-config check` runs (src/config/startup.rs).
        let Configured { config, notices } = match configure(&raw, &env) {
            Ok(c) => c,
            Err(refusal) => {
                log::log!(refusal.level, "{}", refusal.message);
                return false;
            }
        };
        for n in &notices {
            log::log!(n.level, "{}", n.message);
        }
        let origins = config
            .origins
            .iter()
            .map(|o| OriginMetrics::define(&WasmMetrics, &o.name))
            .collect();
        let unmatched = OriginMetrics::define_unmatched(&WasmMetrics);
        if self.worker_id == 0 {
            self.worker_id = random_worker_id();
        }
        // Ticks flush batched counters, drive the cache-size scan and set the
        // tick clock.
        let ticking = set_tick_period(TICK);
        if !ticking {
            if config.rotating.is_some() {
                // Rotating credentials are fetched on ticks: without them
                // the filter could never sign.
                log::error!(
                    "envoy-presign: no tick period: rotating credentials cannot be fetched"
                );
                return false;
            }
            log::warn!("envoy-presign: no tick period; counters and cache gauges stay unreported");
        }
        self.scanner.reset();
        let local_size = if config.cache.enabled {
            usize::try_from(config.cache.local_entries).unwrap_or(0)
        } else {
            0
        };
        let rotating = config
            .rotating
            .as_ref()
            .map(|r| Rotation::new(r, self.worker_id));
        self.credential_metrics = match &config.rotating {
            Some(r) => CredentialMetrics::define(&WasmMetrics, &[r.source.label()]),
            None => CredentialMetrics::default(),
        };
        self.shared = Some(Rc::new(Shared {
            config,
            origins,
            unmatched,
            local: RefCell::new(LocalCache::new(local_size)),
            seen: Cell::new(0),
            rotating,
            log_limit: RefCell::new(LogLimiter::default()),
            served: Cell::new(false),
            tick_ms: Cell::new(if ticking { unix_ms(now()) } else { 0 }),
        }));
        true
    }

    fn on_tick(&mut self) {
        flush_counters();
        // Rotating credentials: adopt, and refresh when due (never per request).
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now_ms = unix_ms(now());
        shared.tick_ms.set(now_ms);
        log_held_back(&shared.log_limit, now_ms);
        if let Some(rotation) = shared.rotating.as_ref() {
            let events = rotation.on_tick(shared.served.get());
            rotation.apply(events, &self.credential_metrics, &shared.local);
        }
        let cache = &shared.config.cache;
        if !cache.enabled {
            return;
        }
        let min_remaining = |name: &str| {
            shared
                .config
                .origins
                .iter()
                .find(|o| o.name == name)
                .map(|o| o.policy.min_remaining_ms)
        };
        let tick = ScanTick {
            owner: self.worker_id,
            now_ms,
            hold_ms: 3 * u64::try_from(TICK.as_millis()).unwrap_or(1000),
            max_entries: cache.max_entries,
            scan_interval_secs: cache.scan_interval_secs,
            min_remaining: &min_remaining,
        };
        if let Some(tally) = self.scanner.tick(&SharedData, &tick) {
            let capacity = u64::from(cache.max_entries);
            for (origin, metrics) in shared.config.origins.iter().zip(&shared.origins) {
                let (entries, bytes) = tally.get(&origin.name).copied().unwrap_or((0, 0));
                metrics.record_cache(&WasmMetrics, entries, bytes, capacity);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        shared.served.set(true);
        Some(Box::new(PresignRequest { shared }))
    }
}

/// A random id for this worker's VM (the scan lease owner): the host's
/// randomness through std's `RandomState`, mixed with the time; never 0.
fn random_worker_id() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new()
        .hash_one(unix_ms(now()))
        .max(1)
}

/// One request's context. The filter records nothing on the response: the
/// origin's status and time to first byte come from Envoy's stats access
/// logger in the shipped configuration (see docs/observability.md, Metrics).
struct PresignRequest {
    /// The VM's configuration, metrics, caches and credentials.
    shared: Rc<Shared>,
}

impl Context for PresignRequest {}

impl PresignRequest {
    /// The worker's view of the rotating credentials and the clock, brought
    /// up to date (a refresh another worker published is installed first),
    /// then the pipeline's full path.
    fn handle(
        &self,
        head: &HeaderView<'_>,
        raw_path: &[u8],
        started: SystemTime,
        sampled: bool,
    ) -> Handled<'_> {
        let shared = &*self.shared;
        // The lookup and the signature run at the time the request read once
        // (`RequestClock::exact`); only a sampled request's signing is timed
        // with the live clock.
        if let Some(rotation) = shared.rotating.as_ref() {
            rotation.catch_up(started, &shared.local);
        }
        let signer = shared.rotating.as_ref().map(Rotation::signer);
        let keys = shared
            .rotating
            .as_ref()
            .map(|k| k.keys(signer.as_ref().and_then(|s| s.as_ref())));
        let host = Host {
            store: &SharedData,
            now: started,
            clock: sampled.then_some(&now as &dyn Fn() -> SystemTime),
            keys,
        };
        let mut local = shared.local.borrow_mut();
        let (_, handled) = pipeline::handle(
            &shared.config,
            &host,
            &mut local,
            head,
            raw_path,
            &mut WasmRequest,
        );
        handled
    }
}

impl HttpContext for PresignRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let calls_before = hostcalls_made();
        let sampled = self.shared.sample_latency();
        // A sampled request is timed from here; any other reads the host's
        // clock only when a decision needs the exact time (src/clock.rs).
        let started = sampled.then(now);
        let mut clock = RequestClock::new(self.shared.tick_clock(), started, &now);
        let buf = request_header_map();
        #[cfg(feature = "test-panic")]
        test_panic(&buf);
        let head = HeaderView::parse(&buf);
        // No path (CONNECT): nothing to sign.
        let Some(raw_path) = head.path else {
            return Action::Continue;
        };
        let local = match std::str::from_utf8(raw_path) {
            Ok(path) => pipeline::local_hit(
                &self.shared.config,
                &self.shared.local.borrow(),
                &head,
                path,
                &mut clock,
                &mut WasmRequest,
            ),
            Err(_) => None,
        };
        let handled = match local {
            Some(done) => done,
            None => self.handle(&head, raw_path, clock.exact(), sampled),
        };
        if let Some(note) = handled.failure {
            log_failure(&self.shared.log_limit, note, clock.exact_ms(), &head);
        }
        // Whatever made this request read the host's clock keeps the tick
        // clock fresh too.
        if let Some(at) = clock.read_so_far() {
            self.shared.saw_time(at);
        }
        let (index, mut record) = (handled.index, handled.record);
        let action = if handled.acted.stops() {
            Action::Pause
        } else {
            Action::Continue
        };
        if let Some(started) = started {
            record.filter_us = Some(micros_since(started));
        }
        let metrics = self.shared.metrics(index);
        metrics.record_request(&WasmMetrics, &record);
        // Batched like every counter: the count itself costs no hostcall.
        metrics.record_hostcalls(&WasmMetrics, hostcalls_made().wrapping_sub(calls_before));
        action
    }
}

/// `test-panic` builds only: panics when the request carries the test header,
/// so the integration tests can watch Envoy reload a dead VM.
#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn test_panic(header_map: &[u8]) {
    const HEADER: &[u8] = b"x-envoy-presign-test-panic";
    if header_map.windows(HEADER.len()).any(|w| w == HEADER) {
        panic!("test panic requested by the request header");
    }
}

//! The proxy-wasm contexts: the root context compiles the configuration and
//! defines the metrics once per VM, and scans the cache size on ticks; each
//! HTTP context hands one request to `request::pipeline` and carries out and records
//! what it did.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::cache::local::LocalCache;
use crate::cache::scan::{ScanTick, Scanner};
use crate::clock::unix_ms;
use crate::config::startup::{configure, Configured};
use crate::config::Config;
use crate::log_limit::{Kind, LogLimiter, Verdict};
use crate::metrics::CredentialMetrics;
use crate::metrics::OriginMetrics;
use crate::request::headers::HeaderView;
use crate::request::pipeline::{self, FailureNote, Handled};
use crate::request::url_source::{Host, Keys};
use crate::rotation::fetch::Reply;
use crate::rotation::parse::MAX_BODY_BYTES;
use crate::rotation::refresh::{Event, Refresher};
use crate::sigv4::presign::Signer;
use crate::wasm::abi::{self, Action, Context, HttpContext, RootContext};
use crate::wasm::host::{
    flush_counters, hostcalls_made, http_call_response, install_logger, install_panic_hook,
    micros_since, now, plugin_configuration, request_header_map, set_tick_period, SharedData,
    WasmDispatcher, WasmMetrics, WasmRequest,
};

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

/// What every request of a VM shares: the configuration and the metric handles
/// (one set per origin, in origin order, plus one for unmatched requests).
struct Shared {
    config: Config,
    origins: Vec<OriginMetrics>,
    unmatched: OriginMetrics,
    /// This worker's copy of fresh rewrites (see `local_cache`).
    local: RefCell<LocalCache>,
    /// Requests seen, for latency sampling.
    seen: std::cell::Cell<u32>,
    /// Rotating credentials as this worker holds them (refreshed on the
    /// root context's tick); `None` with static keys.
    rotating: Option<Rotation>,
    /// Whether this VM has handled a request (see `Refresher::mark_serving`).
    served: std::cell::Cell<bool>,
    /// Holds back repeated failure lines (see `log_limit`).
    log_limit: RefCell<LogLimiter>,
}

/// This worker's side of the rotating credentials: its refresher and a
/// signer for the credentials it holds. Requests sign with this copy; they
/// read shared data only while it holds no credentials that sign
/// (`Refresher::catch_up`).
struct Rotation {
    refresher: RefCell<Refresher>,
    signer: RefCell<Option<Signer>>,
    margin_ms: u64,
    retry_after_secs: std::cell::Cell<u32>,
}

impl Rotation {
    /// Signs from now on with the refresher's current credentials; URLs of
    /// the old ones stay valid (their expiry is capped by them), but this
    /// worker's own copies of them are dropped.
    fn install(&self, local: &RefCell<LocalCache>) {
        let signer = self
            .refresher
            .borrow()
            .current()
            .map(|r| Signer::new(&r.credentials));
        *self.signer.borrow_mut() = signer;
        local.borrow_mut().clear();
    }
}

impl Shared {
    /// Whether this request's latencies are recorded (one in
    /// `latency_sample_every`): its time in the filter costs a clock read and a
    /// histogram record, a signature it computes two more clock reads and
    /// another record.
    fn sample_latency(&self) -> bool {
        let n = self.seen.get();
        self.seen.set(n.wrapping_add(1));
        n % self.config.latency_sample_every.max(1) == 0
    }

    /// The metrics of an origin position, or the unmatched set.
    fn metrics(&self, index: Option<usize>) -> &OriginMetrics {
        index
            .and_then(|i| self.origins.get(i))
            .unwrap_or(&self.unmatched)
    }
}

/// Per-VM state.
#[derive(Default)]
struct PresignRoot {
    shared: Option<Rc<Shared>>,
    worker_id: u64,
    scanner: Scanner,
    credential_metrics: CredentialMetrics,
}

impl Context for PresignRoot {
    fn on_done(&mut self) -> bool {
        // The VM is going away (drain, reload): hand over the last counts.
        flush_counters();
        true
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
        // No headers: Envoy delivers a reset or a connection failure so.
        let (status, body) = if num_headers == 0 {
            (0, Vec::new())
        } else {
            http_call_response(body_size, MAX_BODY_BYTES + 1)
        };
        let reply = Reply {
            status,
            body: &body,
        };
        let events = rotation.refresher.borrow_mut().on_reply(
            token_id,
            reply,
            &SharedData,
            &WasmDispatcher,
            now(),
        );
        self.apply(&shared, events);
    }
}

impl PresignRoot {
    /// Turns refresh events into metrics, logs and this worker's keys.
    fn apply(&self, shared: &Shared, events: Vec<Event>) {
        let Some(rotation) = shared.rotating.as_ref() else {
            return;
        };
        let now_ms = unix_ms(now());
        let mut adopted = false;
        {
            let refresher = rotation.refresher.borrow();
            for event in events {
                match event {
                    Event::Refreshed { source } => {
                        self.credential_metrics
                            .refreshed(&WasmMetrics, source, "success");
                        if let Some(r) = refresher.current() {
                            log::info!(
                            "envoy-presign: credentials refreshed from {source}: access key {}, {} s left",
                            r.credentials.access_key_id(),
                            r.credentials.expires_at_ms().unwrap_or(0).saturating_sub(now_ms) / 1000
                        );
                        }
                    }
                    Event::Failed { source, failure } => {
                        self.credential_metrics
                            .refreshed(&WasmMetrics, source, failure.category());
                        log::warn!(
                            "envoy-presign: credential refresh from {source} failed: {}",
                            failure.describe()
                        );
                    }
                    Event::GaveUp { retry_in_ms } => log::warn!(
                        "envoy-presign: credential refresh failed; next attempt in {retry_in_ms} ms; {}",
                        refresher.state_at(now_ms)
                    ),
                    Event::Adopted => adopted = true,
                }
            }
            rotation
                .retry_after_secs
                .set(refresher.retry_after_secs(now()));
            let left = refresher
                .current()
                .and_then(|r| r.credentials.expires_at_ms())
                .map_or(0, |e| e.saturating_sub(now_ms) / 1000);
            self.credential_metrics.record_state(
                &WasmMetrics,
                left,
                refresher.status().last_failure,
            );
        }
        if adopted {
            rotation.install(&shared.local);
        }
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
        // Ticks flush batched counters, and drive the cache-size scan.
        if !set_tick_period(TICK) {
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
        let rotating = config.rotating.as_ref().map(|r| Rotation {
            refresher: RefCell::new(
                Refresher::new(r.clone(), self.worker_id).prepared(&SharedData),
            ),
            signer: RefCell::new(None),
            margin_ms: r.refresh.expiry_margin_ms,
            retry_after_secs: std::cell::Cell::new(1),
        });
        self.credential_metrics = match &config.rotating {
            Some(r) => CredentialMetrics::define(&WasmMetrics, &[r.source.label()]),
            None => CredentialMetrics::default(),
        };
        self.shared = Some(Rc::new(Shared {
            config,
            origins,
            unmatched,
            local: RefCell::new(LocalCache::new(local_size)),
            seen: std::cell::Cell::new(0),
            rotating,
            log_limit: RefCell::new(LogLimiter::default()),
            served: std::cell::Cell::new(false),
        }));
        true
    }

    fn on_tick(&mut self) {
        flush_counters();
        // Rotating credentials: adopt, and refresh when due (never per request).
        let Some(shared) = self.shared.clone() else {
            return;
        };
        for s in shared.log_limit.borrow_mut().due(unix_ms(now())) {
            let line = serde_json::json!({
                "event": s.event,
                "category": s.category,
                "origin": s.origin,
                "held_back": s.held_back,
            });
            log::warn!("{line}");
        }
        if let Some(rotation) = shared.rotating.as_ref() {
            let events = {
                let mut refresher = rotation.refresher.borrow_mut();
                if shared.served.get() {
                    refresher.mark_serving();
                }
                refresher.tick(&SharedData, &WasmDispatcher, now())
            };
            self.apply(&shared, events);
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
            now_ms: unix_ms(now()),
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
    shared: Rc<Shared>,
}

impl Context for PresignRequest {}

/// One JSON line per failure: the event, a stable category, the status sent
/// (0 when forwarded), the origin, the method and the request id as correlation
/// id; never a key, signature or URL. Signing failures are warnings, held back
/// to one line per kind and interval (`log_limit`: an outage under load would
/// otherwise write a line per request), the next one saying how many were
/// held back; client mistakes (400, 405) are only logged at debug level.
fn log_failure(shared: &Shared, f: FailureNote<'_>, now_ms: u64, head: &HeaderView<'_>) {
    let level = if f.warn {
        log::Level::Warn
    } else {
        log::Level::Debug
    };
    if !log::log_enabled!(level) {
        return;
    }
    let held_back = if level == log::Level::Debug {
        0
    } else {
        let kind = Kind {
            event: f.event,
            category: f.category,
            origin: f.origin,
        };
        match shared.log_limit.borrow_mut().check(kind, now_ms) {
            Verdict::Write { held_back } => held_back,
            Verdict::HoldBack => return,
        }
    };
    let mut line = serde_json::json!({
        "event": f.event,
        "category": f.category,
        "status": f.status,
        "origin": f.origin,
        "method": head.method,
        "request_id": head.request_id,
    });
    if held_back > 0 {
        if let Some(fields) = line.as_object_mut() {
            fields.insert("held_back".into(), held_back.into());
        }
    }
    log::log!(level, "{line}");
}

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
        // The lookup runs at the request's arrival time (one clock hostcall
        // fewer); only a sampled request's signing is timed with the live clock.
        if let Some(rotation) = shared.rotating.as_ref() {
            let changed = rotation
                .refresher
                .borrow_mut()
                .catch_up(&SharedData, started);
            if changed {
                rotation.install(&shared.local);
            }
        }
        let signer = shared.rotating.as_ref().map(|k| k.signer.borrow());
        let keys = shared.rotating.as_ref().map(|k| Keys {
            signer: signer.as_ref().and_then(|s| s.as_ref()),
            margin_ms: k.margin_ms,
            retry_after_secs: k.retry_after_secs.get(),
        });
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
        let started = now();
        let buf = request_header_map();
        #[cfg(feature = "test-panic")]
        test_panic(&buf);
        let head = HeaderView::parse(&buf);
        // No path (CONNECT): nothing to sign.
        let Some(raw_path) = head.path else {
            return Action::Continue;
        };
        let now_ms = unix_ms(started);
        let local = match std::str::from_utf8(raw_path) {
            Ok(path) => pipeline::local_hit(
                &self.shared.config,
                &self.shared.local.borrow(),
                &head,
                path,
                now_ms,
                &mut WasmRequest,
            ),
            Err(_) => None,
        };
        let handled = match local {
            Some(done) => done,
            None => self.handle(&head, raw_path, started, sampled),
        };
        if let Some(note) = handled.failure {
            log_failure(&self.shared, note, now_ms, &head);
        }
        let (index, mut record) = (handled.index, handled.record);
        let action = if handled.acted.stops() {
            Action::Pause
        } else {
            Action::Continue
        };
        if sampled {
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

//! The monitoring plan as Envoy stats: metric names, labels, and the mapping
//! from what happened to a request onto counters, histograms and gauges.
//!
//! Handles are defined once per VM (in `on_configure`) through a small backend
//! trait — proxy-wasm's `define_metric` in the wasm build, a recorder in tests —
//! and passed down; nothing is looked up by name per request.
//!
//! Naming: `envoy_presign.<metric>.origin.<origin>[.<label>.<value>]`. Envoy
//! stores these as `wasmcustom.envoy_presign.…`; the `stats_tags` regexes in
//! `envoy/envoy.yaml` turn each `.<label>.<value>` pair into a label, so
//! `/stats/prometheus` shows `envoy_presign_requests{origin="media",outcome="hit"}`.

use crate::cache::Outcome;
use crate::request::record::{RequestOutcome, RequestRecord};
use crate::rotation::failure::REFRESH_RESULTS;

/// The three kinds of Envoy stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count.
    Counter,
    /// Current value.
    Gauge,
    /// Distribution (values in microseconds here).
    Histogram,
}

/// What the filter needs from a metrics host.
pub trait MetricsBackend {
    /// Defines a metric once; `None` if the host refused (the metric is then a no-op).
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds to a counter.
    fn add(&self, id: u32, delta: u64);
    /// Sets a gauge or records a histogram sample.
    fn record(&self, id: u32, value: u64);
}

/// Origin label of requests that matched no origin. Origin names cannot start
/// with `_`, so it never clashes with a configured origin.
pub const UNMATCHED_ORIGIN: &str = "_unmatched";

/// Signing error categories (the `category` label of `sign_errors`).
pub const SIGN_ERROR_CATEGORIES: [&str; 3] = ["no_credentials", "signer", "invalid_uri"];

/// Refused response overrides (the `category` label of `overrides_refused`):
/// the codes of the 400s the filter sends for them.
pub const OVERRIDE_CATEGORIES: [&str; 3] = [
    "override_not_allowed",
    "invalid_content_type",
    "invalid_content_disposition",
];

/// Hostcalls Envoy can refuse on the request path (the `call` label of
/// `hostcall_errors`).
pub const HOSTCALLS: [&str; 2] = ["set_header", "local_reply"];

/// A defined metric, or a no-op when the host refused to define it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handle(Option<u32>);

/// Every metric of one origin label, defined once.
#[derive(Debug, Clone, Default)]
pub struct OriginMetrics {
    requests: [Handle; 7],
    cache_hits: Handle,
    cache_misses: Handle,
    cache_refreshes: Handle,
    cache_expired: Handle,
    cache_corrupt: Handle,
    cache_collisions: Handle,
    cache_evictions: Handle,
    urls_signed: Handle,
    sign_errors: [Handle; 3],
    overrides_refused: [Handle; 3],
    store_get_ok: Handle,
    store_get_error: Handle,
    store_set_ok: Handle,
    store_set_error: Handle,
    store_cas_conflict: Handle,
    auth_stripped: Handle,
    hostcall_errors: [Handle; 2],
    sign_us: Handle,
    filter_us: Handle,
    /// Only in `hostcall-count` builds (`make bench`): hostcalls made.
    hostcalls: Handle,
    cache_entries: Handle,
    cache_bytes: Handle,
    cache_capacity: Handle,
}

/// Names every metric (documented in docs/), and defines them.
struct Definer<'a> {
    backend: &'a dyn MetricsBackend,
    origin: &'a str,
}

impl Definer<'_> {
    fn def(&self, kind: MetricKind, metric: &str, extra: Option<(&str, &str)>) -> Handle {
        let name = match extra {
            Some((label, value)) => format!(
                "envoy_presign.{metric}.origin.{}.{label}.{value}",
                self.origin
            ),
            None => format!("envoy_presign.{metric}.origin.{}", self.origin),
        };
        Handle(self.backend.define(kind, &name))
    }
    fn counter(&self, metric: &str) -> Handle {
        self.def(MetricKind::Counter, metric, None)
    }
    fn labelled<const N: usize>(
        &self,
        metric: &str,
        label: &str,
        values: [&str; N],
    ) -> [Handle; N] {
        values.map(|v| self.def(MetricKind::Counter, metric, Some((label, v))))
    }
    /// The benchmark's hostcall counter, defined only in `hostcall-count`
    /// builds so production stats never show an always-zero series.
    fn hostcalls(&self) -> Handle {
        if cfg!(feature = "hostcall-count") {
            self.counter("hostcalls")
        } else {
            Handle::default()
        }
    }
}

impl OriginMetrics {
    /// The metrics of requests no origin matched: only what can happen to
    /// them (`requests` with outcome `bypass`, or `denied` for a path that is
    /// not UTF-8, and the time in the filter), so no always-zero series
    /// clutter the output.
    pub fn define_unmatched(backend: &dyn MetricsBackend) -> Self {
        let d = Definer {
            backend,
            origin: UNMATCHED_ORIGIN,
        };
        let requests = RequestOutcome::ALL.map(|o| match o {
            RequestOutcome::Bypass | RequestOutcome::Denied => d.def(
                MetricKind::Counter,
                "requests",
                Some(("outcome", o.label())),
            ),
            _ => Handle::default(),
        });
        Self {
            requests,
            hostcall_errors: d.labelled("hostcall_errors", "call", HOSTCALLS),
            filter_us: d.def(MetricKind::Histogram, "filter_duration_us", None),
            // No hostcall counter: `make bench` counts those of matched requests.
            ..Self::default()
        }
    }

    /// Defines all metrics of one origin label.
    pub fn define(backend: &dyn MetricsBackend, origin: &str) -> Self {
        let d = Definer { backend, origin };
        use MetricKind::{Gauge, Histogram};
        Self {
            requests: d.labelled(
                "requests",
                "outcome",
                RequestOutcome::ALL.map(RequestOutcome::label),
            ),
            cache_hits: d.counter("cache_hits"),
            cache_misses: d.counter("cache_misses"),
            cache_refreshes: d.counter("cache_refreshes"),
            cache_expired: d.counter("cache_expired"),
            cache_corrupt: d.counter("cache_corrupt"),
            cache_collisions: d.counter("cache_collisions"),
            cache_evictions: d.counter("cache_evictions"),
            urls_signed: d.counter("urls_signed"),
            sign_errors: d.labelled("sign_errors", "category", SIGN_ERROR_CATEGORIES),
            overrides_refused: d.labelled("overrides_refused", "category", OVERRIDE_CATEGORIES),
            store_get_ok: d.def(MetricKind::Counter, "store_ops", Some(("op", "get_ok"))),
            store_get_error: d.def(MetricKind::Counter, "store_ops", Some(("op", "get_error"))),
            store_set_ok: d.def(MetricKind::Counter, "store_ops", Some(("op", "set_ok"))),
            store_set_error: d.def(MetricKind::Counter, "store_ops", Some(("op", "set_error"))),
            store_cas_conflict: d.def(
                MetricKind::Counter,
                "store_ops",
                Some(("op", "set_cas_conflict")),
            ),
            auth_stripped: d.counter("auth_stripped"),
            hostcall_errors: d.labelled("hostcall_errors", "call", HOSTCALLS),
            sign_us: d.def(Histogram, "sign_duration_us", None),
            filter_us: d.def(Histogram, "filter_duration_us", None),
            hostcalls: d.hostcalls(),
            cache_entries: d.def(Gauge, "cache_entries", None),
            cache_bytes: d.def(Gauge, "cache_bytes", None),
            cache_capacity: d.def(Gauge, "cache_capacity", None),
        }
    }
}

/// Records one event onto a handle (no-op when undefined).
fn add(b: &dyn MetricsBackend, h: Handle, delta: u64) {
    if let (Some(id), true) = (h.0, delta > 0) {
        b.add(id, delta);
    }
}

fn record(b: &dyn MetricsBackend, h: Handle, value: u64) {
    if let Some(id) = h.0 {
        b.record(id, value);
    }
}

impl OriginMetrics {
    /// Records what the request-headers callback did.
    pub fn record_request(&self, b: &dyn MetricsBackend, r: &RequestRecord) {
        if let Some(o) = r.outcome {
            if let Some(i) = RequestOutcome::ALL.iter().position(|x| *x == o) {
                add(b, self.requests.get(i).copied().unwrap_or_default(), 1);
            }
        }
        match r.cache {
            Some(Outcome::Hit | Outcome::HitRefreshing | Outcome::RefreshFailed) => {
                add(b, self.cache_hits, 1)
            }
            Some(Outcome::Miss) => add(b, self.cache_misses, 1),
            Some(Outcome::Expired) => {
                add(b, self.cache_misses, 1);
                add(b, self.cache_expired, 1);
            }
            Some(Outcome::Refreshed) => add(b, self.cache_refreshes, 1),
            None => {}
        }
        let ops = &r.ops;
        add(b, self.urls_signed, u64::from(r.signed));
        add(
            b,
            self.cache_corrupt,
            u64::from(ops.corrupt + ops.other_version),
        );
        add(b, self.cache_collisions, u64::from(ops.collisions));
        add(b, self.cache_evictions, u64::from(ops.evictions));
        add(b, self.store_get_ok, u64::from(ops.get_ok));
        add(b, self.store_get_error, u64::from(ops.get_err));
        add(b, self.store_set_ok, u64::from(ops.set_ok));
        add(b, self.store_set_error, u64::from(ops.set_err));
        add(b, self.store_cas_conflict, u64::from(ops.cas_conflicts));
        if let Some(cat) = r.sign_error {
            if let Some(i) = SIGN_ERROR_CATEGORIES.iter().position(|c| *c == cat) {
                add(b, self.sign_errors.get(i).copied().unwrap_or_default(), 1);
            }
        }
        if let Some(code) = r.rejected {
            if let Some(i) = OVERRIDE_CATEGORIES.iter().position(|c| *c == code) {
                add(
                    b,
                    self.overrides_refused.get(i).copied().unwrap_or_default(),
                    1,
                );
            }
        }
        add(b, self.auth_stripped, r.auth_stripped);
        let [set_header, local_reply] = self.hostcall_errors;
        add(b, set_header, u64::from(r.host.set_header));
        add(b, local_reply, u64::from(r.host.local_reply));
        if let Some(us) = r.sign_us {
            record(b, self.sign_us, us);
        }
        if let Some(us) = r.filter_us {
            record(b, self.filter_us, us);
        }
    }

    /// Adds the hostcalls one request made (a no-op outside `hostcall-count`
    /// builds, where the counter is not defined).
    pub fn record_hostcalls(&self, b: &dyn MetricsBackend, calls: u64) {
        add(b, self.hostcalls, calls);
    }

    /// Publishes a cache scan: entries and bytes held for this origin.
    pub fn record_cache(&self, b: &dyn MetricsBackend, entries: u64, bytes: u64, capacity: u64) {
        record(b, self.cache_entries, entries);
        record(b, self.cache_bytes, bytes);
        record(b, self.cache_capacity, capacity);
    }
}

/// The rotating credentials' metrics, one set per VM (credentials are not
/// per origin): refreshes by source and result, seconds until the
/// credentials in use expire, and the last failure's code.
#[derive(Debug, Clone, Default)]
pub struct CredentialMetrics {
    refreshes: Vec<(&'static str, [Handle; 9])>,
    expiry_seconds: Handle,
    last_failure: Handle,
}

impl CredentialMetrics {
    /// Defines the metrics of the chain's `sources` (their labels).
    pub fn define(backend: &dyn MetricsBackend, sources: &[&'static str]) -> Self {
        let refreshes = sources
            .iter()
            .map(|source| {
                let handles = REFRESH_RESULTS.map(|result| {
                    Handle(backend.define(
                        MetricKind::Counter,
                        &format!(
                            "envoy_presign.credential_refreshes.source.{source}.result.{result}"
                        ),
                    ))
                });
                (*source, handles)
            })
            .collect();
        Self {
            refreshes,
            expiry_seconds: Handle(
                backend.define(MetricKind::Gauge, "envoy_presign.credential_expiry_seconds"),
            ),
            last_failure: Handle(
                backend.define(MetricKind::Gauge, "envoy_presign.credential_last_failure"),
            ),
        }
    }

    /// Counts one refresh through `source` ending in `result` (a
    /// `REFRESH_RESULTS` entry).
    pub fn refreshed(&self, b: &dyn MetricsBackend, source: &str, result: &str) {
        let handle = self
            .refreshes
            .iter()
            .find(|(s, _)| *s == source)
            .and_then(|(_, handles)| {
                REFRESH_RESULTS
                    .iter()
                    .position(|r| *r == result)
                    .and_then(|i| handles.get(i))
            });
        if let Some(h) = handle {
            add(b, *h, 1);
        }
    }

    /// Sets the gauges: seconds the credentials in use have left (0: none),
    /// and the last failure's code (0 after a success; see docs/observability.md).
    pub fn record_state(&self, b: &dyn MetricsBackend, expiry_seconds: u64, last_failure: u8) {
        record(b, self.expiry_seconds, expiry_seconds);
        record(b, self.last_failure, u64::from(last_failure));
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

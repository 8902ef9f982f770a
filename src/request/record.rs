//! What one request did in the filter, as the metrics count it: the pipeline
//! fills a `RequestRecord`, the glue hands it to `metrics` in one call.

use crate::cache::{Outcome, StoreOps};
use crate::request::actions::HostFailures;

/// Request outcomes (the `outcome` label of `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Served a cached URL.
    Hit,
    /// Signed a new URL (cache miss, expired entry, or no cache).
    Miss,
    /// Signed the replacement of a due entry.
    Refresh,
    /// Forwarded unsigned because signing failed (`on_error: passthrough`).
    Fallback,
    /// Answered locally (400, 405, 503).
    Denied,
    /// Not signed by design: no origin matched, or a passed-through method.
    Bypass,
    /// Answered 307 with a presigned URL (`delivery: redirect`); how the cache
    /// answered is in the `cache_*` counters.
    Redirect,
}

impl RequestOutcome {
    /// Every outcome, in the order of the `requests` counters.
    pub const ALL: [RequestOutcome; 7] = [
        RequestOutcome::Hit,
        RequestOutcome::Miss,
        RequestOutcome::Refresh,
        RequestOutcome::Fallback,
        RequestOutcome::Denied,
        RequestOutcome::Bypass,
        RequestOutcome::Redirect,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            RequestOutcome::Hit => "hit",
            RequestOutcome::Miss => "miss",
            RequestOutcome::Refresh => "refresh",
            RequestOutcome::Fallback => "fallback",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Bypass => "bypass",
            RequestOutcome::Redirect => "redirect",
        }
    }

    /// The request outcome of a cache answer (`None`: cache disabled, signed).
    pub fn of(cache: Option<Outcome>) -> Self {
        match cache {
            Some(Outcome::Hit | Outcome::HitRefreshing | Outcome::RefreshFailed) => {
                RequestOutcome::Hit
            }
            Some(Outcome::Refreshed) => RequestOutcome::Refresh,
            Some(Outcome::Miss | Outcome::Expired) | None => RequestOutcome::Miss,
        }
    }
}

/// Everything the filter learned about one request, recorded in one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestRecord {
    /// How the request ended in the filter.
    pub outcome: Option<RequestOutcome>,
    /// The cache's answer, when the cache was consulted.
    pub cache: Option<Outcome>,
    /// Store operations.
    pub ops: StoreOps,
    /// URLs signed successfully.
    pub signed: u32,
    /// Signing error category, when signing failed.
    pub sign_error: Option<&'static str>,
    /// The code of the local reply the request got, when it was refused.
    pub rejected: Option<&'static str>,
    /// Client auth headers and query parameters removed.
    pub auth_stripped: u64,
    /// Hostcalls Envoy refused while acting on the request.
    pub host: HostFailures,
    /// Microseconds spent signing (0: no signing).
    pub sign_us: Option<u64>,
    /// Microseconds spent in the request-headers callback (sampled).
    pub filter_us: Option<u64>,
}

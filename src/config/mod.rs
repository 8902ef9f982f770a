//! The filter's JSON configuration: parsed strictly, validated with errors that
//! name the offending field, and compiled once in `on_configure` into the form
//! the request path uses (pre-split endpoints, pre-computed authorities).
//!
//! Nothing here touches the host: credentials are resolved through a lookup
//! function so tests (and the wasm glue) decide where environment values come from.
//!
//! The files, leaves first (each uses only those before it): `error` (the
//! field-named error), `choices` (one-word settings), `overrides` (the
//! per-request overrides an origin may allow), `credentials/` (the
//! `credentials` block), `raw` (the document as serde reads it),
//! `cache_settings`, `endpoint`, `expiry`, `query`, `delivery`, `origin`
//! (an origin, compiled step by step), and this file, `Config`. `startup`
//! (what `on_configure` and the CLI run) sits on top.

mod cache_settings;
mod choices;
pub mod credentials;
mod delivery;
mod endpoint;
mod error;
mod expiry;
mod origin;
pub mod overrides;
mod query;
mod raw;
pub mod startup;

pub use cache_settings::{
    CacheSettings, DEFAULT_LOCAL_ENTRIES, DEFAULT_MAX_ENTRIES, DEFAULT_SCAN_INTERVAL_SECS,
    MAX_LOCAL_ENTRIES, MAX_MAX_ENTRIES,
};
pub use choices::{Addressing, Delivery, OnError, OtherMethods};
pub use delivery::{
    DEFAULT_PROXIED_SUFFIXES, MAX_CORS_ORIGINS, MAX_PROXIED_SUFFIXES, MAX_SUFFIX_BYTES,
};
pub use endpoint::{Endpoint, HostMatch};
pub use error::ConfigError;
pub use expiry::{
    DEFAULT_EXPIRES_IN_SECS, MAX_EXPIRES_IN_SECS, MIN_EXPIRES_IN_SECS, MIN_REFRESH_WINDOW_MS,
    MIN_REMAINING_MS,
};
pub use origin::Origin;
pub use query::{MAX_ALLOW_QUERY, MAX_QUERY_NAME_BYTES};

use crate::config::cache_settings::compile_cache;
use crate::config::credentials::Rotating;
use crate::config::error::json_error;
use crate::config::origin::compile_origin;
use crate::config::raw::RawConfig;
use crate::sigv4::credentials::CredentialsSource;
use crate::sigv4::presign::Signer;

/// Default of `metrics.latency_sample_every`: a sample costs a clock read and
/// a histogram record (two hostcalls), and two clock reads and a record more
/// if the request signs; 1 in 16 makes that a fraction of a hostcall. A fixed 1-in-N keeps every request equally likely
/// to be sampled, so percentiles summed over workers and Envoys stay
/// unbiased (an adaptive rate would over-weight quiet workers).
pub const DEFAULT_LATENCY_SAMPLE_EVERY: u32 = 16;

/// Upper bound on `metrics.latency_sample_every`.
pub const MAX_LATENCY_SAMPLE_EVERY: u32 = 1000;

/// The whole compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Origins in match order: the first whose prefix (and host) matches wins.
    pub origins: Vec<Origin>,
    /// The signer built from the credentials, or why there is none (matched
    /// requests then follow their origin's `on_error`). The reason names missing
    /// variables, never values.
    pub signer: Result<Signer, String>,
    /// Where credentials came from, for the startup log line.
    pub credentials_source: CredentialsSource,
    /// Rotating credentials: the sources the filter fetches from, and how
    /// it refreshes them (`signer` is then an `Err` until they arrive).
    pub rotating: Option<Rotating>,
    /// Chain entries left out at startup, and why (logged).
    pub credentials_skipped: Vec<String>,
    /// Configured chain entries an earlier one shadows (warned at startup).
    pub credentials_dropped: Vec<String>,
    /// Global cache settings.
    pub cache: CacheSettings,
    /// Record the time-in-filter and signing histograms for one request in
    /// this many, per worker (1: every request; default
    /// `DEFAULT_LATENCY_SAMPLE_EVERY`). Counters are always exact.
    pub latency_sample_every: u32,
}

impl Config {
    /// Parses, validates and compiles a configuration document.
    ///
    /// `env` looks up an environment variable of the Wasm VM; the wasm glue passes
    /// `std::env::var`, tests pass a map.
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let raw: RawConfig =
            serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(&e))?;
        de.end()
            .map_err(|e| ConfigError::new("", format!("invalid JSON configuration: {e}")))?;
        if raw.origins.is_empty() {
            return Err(ConfigError::new(
                "origins",
                "at least one origin is required",
            ));
        }
        let cache = compile_cache(raw.cache)?;
        let latency_sample_every = raw
            .metrics
            .and_then(|m| m.latency_sample_every)
            .unwrap_or(DEFAULT_LATENCY_SAMPLE_EVERY);
        if !(1..=MAX_LATENCY_SAMPLE_EVERY).contains(&latency_sample_every) {
            return Err(ConfigError::new(
                "metrics.latency_sample_every",
                format!(
                    "must be between 1 and {MAX_LATENCY_SAMPLE_EVERY}, got {latency_sample_every}"
                ),
            ));
        }
        let mut origins = Vec::with_capacity(raw.origins.len());
        for (i, o) in raw.origins.into_iter().enumerate() {
            let compiled = compile_origin(o, &format!("origins[{i}]"), &cache)?;
            if origins.iter().any(|p: &Origin| p.name == compiled.name) {
                return Err(ConfigError::new(
                    format!("origins[{i}].name"),
                    format!("duplicate origin name {:?}", compiled.name),
                ));
            }
            origins.push(compiled);
        }
        let mut credentials = crate::config::credentials::compile(raw.credentials, env)?;
        if let Some(r) = credentials.rotating.as_mut() {
            let min_remaining = origins.iter().map(|o| o.policy.min_remaining_ms).max();
            crate::config::credentials::check_timing(r, min_remaining.unwrap_or(0))?;
        }
        Ok(Self {
            origins,
            signer: credentials.fixed.map(|c| Signer::new(&c)),
            credentials_source: credentials.source,
            rotating: credentials.rotating,
            credentials_skipped: credentials.skipped,
            credentials_dropped: credentials.dropped,
            cache,
            latency_sample_every,
        })
    }

    /// The first origin whose host (if any) and raw path prefix match the
    /// request. The path is raw bytes: prefixes are ASCII, so a path that is
    /// not UTF-8 can still be matched (or, more often, not).
    pub fn match_origin(&self, authority: &str, path: &[u8]) -> Option<&Origin> {
        self.origins.iter().find(|o| {
            path.starts_with(o.match_prefix.as_bytes())
                && o.match_host.as_ref().is_none_or(|h| h.matches(authority))
        })
    }
}

#[cfg(test)]
mod tests;

//! The filter's JSON configuration: parsed strictly, validated with errors that
//! name the offending field, and compiled once in `on_configure` into the form
//! the request path uses (pre-split endpoints, pre-computed authorities).
//!
//! Nothing here touches the host: credentials are resolved through a lookup
//! function so tests (and the wasm glue) decide where environment values come from.

pub mod credentials;
pub mod overrides;
pub mod startup;

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

use crate::cache::Policy;
use crate::config::credentials::{RawCredentials, Rotating};
use crate::sigv4::credentials::CredentialsSource;
use crate::sigv4::presign::{Signer, Target};

/// Longest lifetime SigV4 allows for a presigned URL (7 days).
pub const MAX_EXPIRES_IN_SECS: u64 = 7 * 24 * 3600;
/// Default lifetime of a presigned URL when `expires_in` is omitted.
pub const DEFAULT_EXPIRES_IN_SECS: u64 = 3600;

/// A configuration error, always naming the field (JSON path) it is about, so an
/// operator can fix the config from the log line alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field, e.g. `origins[0].region`; empty for the document itself.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
}

impl ConfigError {
    /// An error naming `field`.
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// How the bucket appears in the URL: `/bucket/key` or `bucket.host/key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `https://host/bucket/key` — works with every S3-compatible server.
    Path,
    /// `https://bucket.host/key` — AWS's preferred style; needs DNS for the bucket.
    Virtual,
}

/// What to do when a matched request cannot be signed (no credentials, signer error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer 503 `signing_unavailable` locally; nothing reaches the origin.
    Deny,
    /// Forward the request unsigned (the origin decides); counted as a fallback.
    Passthrough,
}

/// How a matched GET or HEAD reaches the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Envoy forwards the presigned request and relays the object (the default).
    Proxy,
    /// Envoy answers 307 with the presigned URL in `Location`; the client
    /// fetches the object from `public_endpoint` itself, so no object byte
    /// flows through Envoy.
    Redirect,
}

/// What to do with methods other than GET and HEAD on a matched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherMethods {
    /// Answer 405 locally with `Allow: GET, HEAD`.
    Deny,
    /// Forward unchanged and unsigned.
    Passthrough,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    credentials: Option<RawCredentials>,
    #[serde(default)]
    cache: Option<RawCache>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    origins: Vec<RawOrigin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    latency_sample_every: Option<u32>,
}

/// Default of `metrics.latency_sample_every`: a sample costs a clock read and
/// a histogram record (two hostcalls), and two clock reads and a record more
/// if the request signs; 1 in 16 makes that a fraction of a hostcall. A fixed 1-in-N keeps every request equally likely
/// to be sampled, so percentiles summed over workers and Envoys stay
/// unbiased (an adaptive rate would over-weight quiet workers).
pub const DEFAULT_LATENCY_SAMPLE_EVERY: u32 = 16;

/// Upper bound on `metrics.latency_sample_every`.
pub const MAX_LATENCY_SAMPLE_EVERY: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    max_entries: Option<u32>,
    #[serde(default)]
    align: Option<bool>,
    #[serde(default)]
    scan_interval: Option<u64>,
    #[serde(default)]
    local_entries: Option<u32>,
}

/// Default number of cache slots (shared-data keys) when `cache.max_entries` is omitted.
pub const DEFAULT_MAX_ENTRIES: u32 = 10_000;
/// Upper bound on `cache.max_entries`, to keep the shared-data footprint sane.
pub const MAX_MAX_ENTRIES: u32 = 10_000_000;

/// Global cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off: every request is signed (and gets a different URL).
    pub enabled: bool,
    /// Number of slots, hence of shared-data keys the filter ever writes.
    pub max_entries: u32,
    /// Fleet-stable URLs (see `cache::Policy::align`).
    pub align: bool,
    /// Seconds per full pass of the cache-size scan (gauges `cache_entries`, `cache_bytes`).
    pub scan_interval_secs: u64,
    /// Slots of each worker's local copy of fresh rewrites (0: off).
    pub local_entries: u32,
}

/// Default slots of the per-worker local cache.
pub const DEFAULT_LOCAL_ENTRIES: u32 = 1024;
/// Upper bound on `cache.local_entries`: with `LOCAL_ENTRY_MAX_BYTES` per
/// entry, at most about 270 MiB per worker (see docs/cache.md, "Bounded memory").
pub const MAX_LOCAL_ENTRIES: u32 = 65_536;

/// Default seconds per cache-size scan pass.
pub const DEFAULT_SCAN_INTERVAL_SECS: u64 = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    prefix: String,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    endpoint: String,
    bucket: String,
    #[serde(default)]
    addressing: Option<Addressing>,
    region: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    strip_prefix: Option<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_before: Option<u64>,
    #[serde(default)]
    min_remaining: Option<u64>,
    #[serde(default)]
    on_error: Option<OnError>,
    #[serde(default)]
    other_methods: Option<OtherMethods>,
    #[serde(default)]
    allow_query: Vec<String>,
    #[serde(default)]
    delivery: Option<Delivery>,
    #[serde(default)]
    public_endpoint: Option<String>,
    #[serde(default)]
    public_addressing: Option<Addressing>,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default)]
    proxied_suffixes: Option<Vec<String>>,
    #[serde(default)]
    response_content_types: Option<Vec<String>>,
}

/// `match.host`, compiled: a host name compared case-insensitively and
/// without a trailing dot, and a port compared only when one was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    /// Lower-case host, no trailing dot (IPv6 literals keep their brackets).
    pub host: String,
    /// The port the request must name, when the configuration gave one.
    pub port: Option<String>,
}

impl HostMatch {
    /// Whether a request's `:authority` names this host (and port, if set).
    pub fn matches(&self, authority: &str) -> bool {
        let (host, port) = split_authority(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        host.eq_ignore_ascii_case(&self.host)
            && self.port.as_deref().is_none_or(|p| port == Some(p))
    }
}

/// The S3 endpoint, split once so the request path only concatenates strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host name or IP literal (IPv6 keeps its brackets), lower-cased.
    pub host: String,
    /// Port when it is not the scheme's default.
    pub port: Option<u16>,
}

impl Endpoint {
    /// `host[:port]`, the value of `Host` for a request to `host`.
    fn authority_for(&self, host: &str) -> String {
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
}

/// One origin, compiled: everything the request path needs, pre-computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Label used in metrics and logs.
    pub name: String,
    /// Raw path prefix a request must start with.
    pub match_prefix: String,
    /// Optional host (lower-case, no trailing dot, and a port only if the
    /// configuration gave one) the request's `:authority` must carry.
    pub match_host: Option<HostMatch>,
    /// Parsed S3 endpoint.
    pub endpoint: Endpoint,
    /// Bucket name.
    pub bucket: String,
    /// Path- or virtual-hosted style URLs.
    pub addressing: Addressing,
    /// SigV4 region.
    pub region: String,
    /// SigV4 service name (`s3` unless an S3-compatible server wants another).
    pub service: String,
    /// Raw prefix removed from the request path before decoding it into a key.
    pub strip_prefix: String,
    /// Text prepended to every decoded key (e.g. `videos/`).
    pub key_prefix: String,
    /// Lifetime of each presigned URL.
    pub expires_in: Duration,
    /// Expiry and refresh policy of this origin's cache entries.
    pub policy: Policy,
    /// The origin part of every cache identity, computed once.
    pub identity_prefix: String,
    /// Behaviour when signing is impossible.
    pub on_error: OnError,
    /// Behaviour for methods other than GET/HEAD.
    pub other_methods: OtherMethods,
    /// Client query parameters (exact, case-sensitive names) forwarded and signed.
    pub allow_query: Vec<String>,
    /// The `:authority` URLs are signed for: the endpoint's (where Envoy
    /// sends them) in proxy mode, `public_endpoint`'s in redirect mode.
    pub authority: String,
    /// Path prefix of the signed URL: `/bucket` for path style, empty for virtual.
    pub url_path_prefix: String,
    /// Proxy or redirect.
    pub delivery: Delivery,
    /// `scheme://authority` a redirect's `Location` starts with (the path
    /// follows), computed once; empty in proxy mode.
    pub location_base: String,
    /// Browser origins (`scheme://host[:port]`, lower-case, or `*`) whose
    /// requests get `Access-Control-Allow-Origin` on a redirect.
    pub cors_origins: Vec<String>,
    /// Redirect only: key endings (lower-case) served through Envoy, so a
    /// player resolves a playlist's relative segment URIs against Envoy.
    pub proxied_suffixes: Vec<String>,
    /// The proxy-mode twin of a redirect origin with `proxied_suffixes`: the
    /// same origin signed for `endpoint`, for the keys Envoy serves itself.
    pub proxied: Option<Box<Origin>>,
    /// `response-content-type` values a request may have signed (lower-case).
    pub response_content_types: Vec<String>,
}

impl Origin {
    /// What the signer needs of this origin, borrowed: the signer knows no
    /// configuration type.
    pub fn target(&self) -> Target<'_> {
        Target {
            authority: &self.authority,
            url_path_prefix: &self.url_path_prefix,
            region: &self.region,
            service: &self.service,
        }
    }

    /// The origin that serves `key`: the proxy-mode twin for a manifest of a
    /// redirect origin, else this one.
    pub fn serving(&self, key: &str) -> &Origin {
        match &self.proxied {
            Some(twin) if has_suffix(key, &self.proxied_suffixes) => twin,
            _ => self,
        }
    }
}

/// Whether `key` ends with one of the lower-case `suffixes`, ignoring ASCII case.
fn has_suffix(key: &str, suffixes: &[String]) -> bool {
    suffixes.iter().any(|s| {
        key.len()
            .checked_sub(s.len())
            .and_then(|at| key.as_bytes().get(at..))
            .is_some_and(|end| end.eq_ignore_ascii_case(s.as_bytes()))
    })
}

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

/// `(host, port)` of `host[:port]` (IPv6 literals keep their brackets); the
/// port only when it is all digits.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (h, rest) = authority.split_at(end + 1);
                (h, rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    }
}

/// Turns a serde error into a field-named error: the path comes from
/// `serde_path_to_error` (`.` for the document itself, e.g. a missing field).
///
/// Under `credentials`, serde's own message is left out: it quotes the value
/// it refused (`invalid type: string "<the secret>"`), and a config error is
/// logged. The kind of error and its place in the document stay.
fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = e.path().to_string();
    let field = if path == "." { String::new() } else { path };
    if field == "credentials" || field.starts_with("credentials.") {
        let inner = e.inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON"
            }
            serde_json::error::Category::Data => "a value of the wrong type or an unknown field",
        };
        return ConfigError::new(
            field,
            format!(
                "invalid JSON configuration: {kind} at line {} column {} (the value is not shown: it may be a secret)",
                inner.line(),
                inner.column()
            ),
        );
    }
    ConfigError::new(field, format!("invalid JSON configuration: {}", e.inner()))
}

fn compile_cache(raw: Option<RawCache>) -> Result<CacheSettings, ConfigError> {
    let raw = raw.unwrap_or(RawCache {
        enabled: None,
        max_entries: None,
        align: None,
        scan_interval: None,
        local_entries: None,
    });
    let local_entries = raw.local_entries.unwrap_or(DEFAULT_LOCAL_ENTRIES);
    if local_entries > MAX_LOCAL_ENTRIES {
        return Err(ConfigError::new(
            "cache.local_entries",
            format!("must be between 0 and {MAX_LOCAL_ENTRIES}, got {local_entries}"),
        ));
    }
    let scan_interval_secs = raw.scan_interval.unwrap_or(DEFAULT_SCAN_INTERVAL_SECS);
    if !(1..=3600).contains(&scan_interval_secs) {
        return Err(ConfigError::new(
            "cache.scan_interval",
            format!("must be between 1 and 3600 seconds, got {scan_interval_secs}"),
        ));
    }
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    if !(1..=MAX_MAX_ENTRIES).contains(&max_entries) {
        return Err(ConfigError::new(
            "cache.max_entries",
            format!("must be between 1 and {MAX_MAX_ENTRIES}, got {max_entries}"),
        ));
    }
    Ok(CacheSettings {
        enabled: raw.enabled.unwrap_or(true),
        max_entries,
        align: raw.align.unwrap_or(true),
        scan_interval_secs,
        local_entries,
    })
}

fn compile_origin(o: RawOrigin, at: &str, cache: &CacheSettings) -> Result<Origin, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");

    if o.name.is_empty()
        || o.name.starts_with('_')
        || !o
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            field("name"),
            "must be non-empty, use only A-Z a-z 0-9 _ - and not start with _ (it becomes a metric label)",
        ));
    }

    let prefix = o.matcher.prefix;
    if !prefix.starts_with('/') {
        return Err(ConfigError::new(
            field("match.prefix"),
            "must start with '/'",
        ));
    }
    if !prefix.bytes().all(is_plain_path_byte) {
        return Err(ConfigError::new(
            field("match.prefix"),
            "must be plain ASCII path characters (no '%', '?', '#', spaces or control bytes)",
        ));
    }
    let match_host = match o.matcher.host {
        Some(h) => {
            Some(compile_host_match(&h).map_err(|r| ConfigError::new(field("match.host"), r))?)
        }
        None => None,
    };

    let endpoint =
        parse_endpoint(&o.endpoint).map_err(|r| ConfigError::new(field("endpoint"), r))?;

    validate_bucket(&o.bucket).map_err(|r| ConfigError::new(field("bucket"), r))?;
    let addressing = o.addressing.unwrap_or(Addressing::Path);
    check_addressing(&endpoint, &o.bucket, addressing)
        .map_err(|r| ConfigError::new(field("addressing"), r))?;
    let delivery = o.delivery.unwrap_or(Delivery::Proxy);
    // The URL clients follow: only a redirect hands one out.
    let public = if delivery == Delivery::Redirect {
        let endpoint = match &o.public_endpoint {
            Some(e) => {
                parse_endpoint(e).map_err(|r| ConfigError::new(field("public_endpoint"), r))?
            }
            None => endpoint.clone(),
        };
        let addressing = o.public_addressing.unwrap_or(addressing);
        // Name the setting the user wrote: an inherited addressing that does not
        // fit the public endpoint is the endpoint's problem.
        let culprit = if o.public_addressing.is_none() && o.public_endpoint.is_some() {
            "public_endpoint"
        } else {
            "public_addressing"
        };
        check_addressing(&endpoint, &o.bucket, addressing)
            .map_err(|r| ConfigError::new(field(culprit), r))?;
        Some((endpoint, addressing))
    } else {
        for (name, set) in [
            ("public_endpoint", o.public_endpoint.is_some()),
            ("public_addressing", o.public_addressing.is_some()),
            ("cors_origins", !o.cors_origins.is_empty()),
            ("proxied_suffixes", o.proxied_suffixes.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    field(name),
                    "applies only with delivery \"redirect\" (a proxied request never shows the client a URL)",
                ));
            }
        }
        None
    };
    let cors_origins = compile_cors_origins(&o.cors_origins, &field("cors_origins"))?;
    let proxied_suffixes = match (&public, o.proxied_suffixes) {
        (None, _) => Vec::new(),
        (Some(_), None) => DEFAULT_PROXIED_SUFFIXES.map(String::from).to_vec(),
        (Some(_), Some(list)) => compile_suffixes(&list, &field("proxied_suffixes"))?,
    };

    validate_label(&o.region).map_err(|r| ConfigError::new(field("region"), r))?;
    let service = o.service.unwrap_or_else(|| "s3".to_string());
    validate_label(&service).map_err(|r| ConfigError::new(field("service"), r))?;

    let strip_prefix = o.strip_prefix.unwrap_or_else(|| prefix.clone());
    if !prefix.starts_with(strip_prefix.as_str()) {
        return Err(ConfigError::new(
            field("strip_prefix"),
            format!("must be a prefix of match.prefix {prefix:?}, so every matched path has it"),
        ));
    }
    let key_prefix = o.key_prefix.unwrap_or_default();
    if !key_prefix.is_empty() && !key_prefix.ends_with('/') {
        return Err(ConfigError::new(
            field("key_prefix"),
            format!(
                "must be empty or end with '/' (e.g. {:?}); without it, a request for \"-x\" would reach the key {:?}",
                format!("{key_prefix}/"),
                format!("{key_prefix}-x")
            ),
        ));
    }
    if key_prefix.contains('\0') || key_prefix.split('/').any(|s| s == "." || s == "..") {
        return Err(ConfigError::new(
            field("key_prefix"),
            "must not contain NUL or '.'/'..' segments",
        ));
    }
    if key_prefix.len() > crate::sigv4::canonical::MAX_KEY_BYTES {
        return Err(ConfigError::new(
            field("key_prefix"),
            "longer than an S3 key may be",
        ));
    }

    let expires_secs = o.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    if !(MIN_EXPIRES_IN_SECS..=MAX_EXPIRES_IN_SECS).contains(&expires_secs) {
        return Err(ConfigError::new(
            field("expires_in"),
            format!("must be between {MIN_EXPIRES_IN_SECS} and {MAX_EXPIRES_IN_SECS} seconds (SigV4 limit), got {expires_secs}"),
        ));
    }

    // Defaults (in ms, so short lifetimes keep a margin): refresh in the last
    // 20% of a URL's life, never serve in the last 4%.
    let expires_ms = expires_secs * 1000;
    let refresh_before_ms = o
        .refresh_before
        .map_or(expires_ms / 5, |v| v.saturating_mul(1000));
    if refresh_before_ms >= expires_ms {
        return Err(ConfigError::new(
            field("refresh_before"),
            format!(
                "must be less than expires_in ({expires_secs} s), got {}",
                refresh_before_ms / 1000
            ),
        ));
    }
    let min_remaining_ms = o
        .min_remaining
        .map_or(refresh_before_ms / 5, |v| v.saturating_mul(1000));
    if min_remaining_ms > refresh_before_ms {
        return Err(ConfigError::new(
            field("min_remaining"),
            format!(
                "must not exceed refresh_before ({} s), got {}",
                refresh_before_ms / 1000,
                min_remaining_ms / 1000
            ),
        ));
    }
    check_timing(
        at,
        &Timing {
            refresh_before_ms,
            min_remaining_ms,
            refresh_before_set: o.refresh_before.is_some(),
            min_remaining_set: o.min_remaining.is_some(),
        },
    )?;
    let policy = Policy {
        expires_in_ms: expires_ms,
        refresh_before_ms,
        min_remaining_ms,
        align: cache.align,
    };

    if o.allow_query.len() > MAX_ALLOW_QUERY {
        return Err(ConfigError::new(
            field("allow_query"),
            format!(
                "at most {MAX_ALLOW_QUERY} names, got {}",
                o.allow_query.len()
            ),
        ));
    }
    for (j, name) in o.allow_query.iter().enumerate() {
        if name.is_empty()
            || name.len() > MAX_QUERY_NAME_BYTES
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(ConfigError::new(
                format!("{at}.allow_query[{j}]"),
                format!("must be a parameter name of 1 to {MAX_QUERY_NAME_BYTES} characters A-Z a-z 0-9 - _ . ~"),
            ));
        }
        if name.len() >= 6 && name[..6].eq_ignore_ascii_case("x-amz-") {
            return Err(ConfigError::new(
                format!("{at}.allow_query[{j}]"),
                "X-Amz-* parameters are set by the signer and can never come from a client",
            ));
        }
    }

    let response_content_types = compile_content_types(
        o.response_content_types,
        o.allow_query.iter().any(|n| n == overrides::CONTENT_TYPE),
        &field("response_content_types"),
    )?;

    // URLs are signed for the host that will receive them: the endpoint when
    // Envoy forwards, the public endpoint when the client follows a redirect.
    let (signed_endpoint, signed_addressing) = match &public {
        Some((e, a)) => (e, *a),
        None => (&endpoint, addressing),
    };
    let (authority, url_path_prefix) = signed_host(signed_endpoint, signed_addressing, &o.bucket);
    let location_base = match delivery {
        Delivery::Redirect => format!("{}://{}", signed_endpoint.scheme, authority),
        Delivery::Proxy => String::new(),
    };
    let identity_prefix = identity_prefix(
        &o.name,
        signed_endpoint.scheme,
        &authority,
        &url_path_prefix,
        &o.region,
        &service,
        &policy,
    );

    let origin = Origin {
        name: o.name,
        match_prefix: prefix,
        match_host,
        endpoint,
        bucket: o.bucket,
        addressing,
        region: o.region,
        service,
        strip_prefix,
        key_prefix,
        expires_in: Duration::from_secs(expires_secs),
        policy,
        identity_prefix,
        on_error: o.on_error.unwrap_or(OnError::Deny),
        other_methods: o.other_methods.unwrap_or(OtherMethods::Deny),
        allow_query: o.allow_query,
        authority,
        url_path_prefix,
        delivery,
        location_base,
        cors_origins,
        proxied_suffixes,
        proxied: None,
        response_content_types,
    };
    let proxied = (!origin.proxied_suffixes.is_empty()).then(|| Box::new(proxy_twin(&origin)));
    Ok(Origin { proxied, ..origin })
}

/// `Host` and path prefix of URLs signed for `endpoint` with `addressing`.
fn signed_host(endpoint: &Endpoint, addressing: Addressing, bucket: &str) -> (String, String) {
    match addressing {
        Addressing::Path => (endpoint.authority_for(&endpoint.host), format!("/{bucket}")),
        Addressing::Virtual => (
            endpoint.authority_for(&format!("{bucket}.{}", endpoint.host)),
            String::new(),
        ),
    }
}

/// Everything about an origin that changes a URL, in one string; the request
/// adds credentials, method, key and query (see `cache_identity`).
fn identity_prefix(
    name: &str,
    scheme: &str,
    authority: &str,
    url_path_prefix: &str,
    region: &str,
    service: &str,
    policy: &Policy,
) -> String {
    format!(
        "v1\n{name}\n{scheme}://{authority}{url_path_prefix}\n{region}\n{service}\n{}/{}/{}/{}",
        policy.expires_in_ms, policy.refresh_before_ms, policy.min_remaining_ms, policy.align,
    )
}

/// The proxy-mode twin of a redirect origin: signed for `endpoint` (where
/// Envoy sends it) under its own cache identity, with the same name, so it
/// shares the origin's route, cluster and metrics. Called before the origin
/// has a twin, so the clone has none either.
fn proxy_twin(origin: &Origin) -> Origin {
    let (authority, url_path_prefix) =
        signed_host(&origin.endpoint, origin.addressing, &origin.bucket);
    Origin {
        identity_prefix: identity_prefix(
            &origin.name,
            origin.endpoint.scheme,
            &authority,
            &url_path_prefix,
            &origin.region,
            &origin.service,
            &origin.policy,
        ),
        authority,
        url_path_prefix,
        delivery: Delivery::Proxy,
        location_base: String::new(),
        cors_origins: Vec::new(),
        proxied_suffixes: Vec::new(),
        ..origin.clone()
    }
}

/// Default `proxied_suffixes` of a redirect origin: HLS and DASH manifests.
pub const DEFAULT_PROXIED_SUFFIXES: [&str; 2] = [".m3u8", ".mpd"];
/// Most `proxied_suffixes` entries per origin (each is compared per request).
pub const MAX_PROXIED_SUFFIXES: usize = 8;
/// Longest `proxied_suffixes` entry.
pub const MAX_SUFFIX_BYTES: usize = 32;

/// `proxied_suffixes`: each a `.` and 1 to 31 characters `A-Z a-z 0-9 . _ -`,
/// stored lower-case (keys are compared case-insensitively).
fn compile_suffixes(raw: &[String], at: &str) -> Result<Vec<String>, ConfigError> {
    if raw.len() > MAX_PROXIED_SUFFIXES {
        return Err(ConfigError::new(
            at,
            format!("at most {MAX_PROXIED_SUFFIXES} suffixes, got {}", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(j, s)| {
            let ok = s.len() > 1
                && s.len() <= MAX_SUFFIX_BYTES
                && s.starts_with('.')
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if ok {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(ConfigError::new(
                    format!("{at}[{j}]"),
                    format!("must be '.' and 1 to {} characters A-Z a-z 0-9 . _ - (e.g. \".m3u8\"), got {s:?}", MAX_SUFFIX_BYTES - 1),
                ))
            }
        })
        .collect()
}

/// `response_content_types`: the allow-list of `response-content-type`
/// values, the defaults when not given. It only means something when
/// `allow_query` names `response-content-type`, so it is refused otherwise.
fn compile_content_types(
    raw: Option<Vec<String>>,
    type_override_allowed: bool,
    at: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(list) = raw else {
        return Ok(overrides::DEFAULT_CONTENT_TYPES.map(String::from).to_vec());
    };
    if !type_override_allowed {
        return Err(ConfigError::new(
            at,
            format!(
                "applies only when allow_query names {:?}",
                overrides::CONTENT_TYPE
            ),
        ));
    }
    if list.is_empty() || list.len() > overrides::MAX_CONTENT_TYPES {
        return Err(ConfigError::new(
            at,
            format!(
                "must list 1 to {} media types, got {}",
                overrides::MAX_CONTENT_TYPES,
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(j, v)| {
            overrides::compile_content_type(v)
                .map_err(|r| ConfigError::new(format!("{at}[{j}]"), format!("{r}, got {v:?}")))
        })
        .collect()
}

/// Refuses an addressing the endpoint cannot serve (shared by `addressing`
/// and `public_addressing`).
fn check_addressing(
    endpoint: &Endpoint,
    bucket: &str,
    addressing: Addressing,
) -> Result<(), &'static str> {
    if addressing == Addressing::Virtual && is_ip_literal(&endpoint.host) {
        return Err("virtual addressing needs a DNS name (bucket.host); the endpoint is an IP address, use \"path\" (as the AWS SDKs do)");
    }
    if addressing == Addressing::Virtual && bucket.contains('.') && endpoint.scheme == "https" {
        return Err("virtual addressing with a dotted bucket name breaks TLS wildcard certificates; use \"path\"");
    }
    Ok(())
}

/// Most `cors_origins` entries per origin.
pub const MAX_CORS_ORIGINS: usize = 16;

/// `cors_origins`: `*`, or browser origins `http(s)://host[:port]` as a
/// browser sends them in `Origin` (no path, no trailing `/`), compared
/// case-insensitively, so they are stored lower-case.
fn compile_cors_origins(raw: &[String], at: &str) -> Result<Vec<String>, ConfigError> {
    if raw.len() > MAX_CORS_ORIGINS {
        return Err(ConfigError::new(
            at,
            format!("at most {MAX_CORS_ORIGINS} origins, got {}", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(j, v)| {
            if v == "*" {
                return Ok(v.clone());
            }
            // Stored as a browser writes `Origin`: lower-case, without the
            // scheme's default port (a browser never sends a trailing `/`).
            Some(v)
                .filter(|v| !v.ends_with('/'))
                .ok_or(())
                .and_then(|v| parse_endpoint(v).map_err(|_| ()))
                .map(|ep| format!("{}://{}", ep.scheme, ep.authority_for(&ep.host)))
                .map_err(|_| {
                    ConfigError::new(
                        format!("{at}[{j}]"),
                        format!("must be \"*\" or a browser origin http(s)://host[:port] with no path, got {v:?}"),
                    )
                })
        })
        .collect()
}

/// Smallest `expires_in` that can work: 2 s, with `refresh_before: 1` (and
/// the default `min_remaining`, 200 ms). With the default `refresh_before`
/// (1/5 of it) the smallest is 5 s.
pub const MIN_EXPIRES_IN_SECS: u64 = 2;
/// Smallest `min_remaining`: a URL must still be valid when the request
/// reaches the origin (S3 checks the expiry on arrival).
pub const MIN_REMAINING_MS: u64 = 200;
/// Smallest refresh window (`refresh_before − min_remaining`): time for a
/// claimed refresh (100 ms to 2 s) to be retried before the URL is unusable.
pub const MIN_REFRESH_WINDOW_MS: u64 = 800;
/// Most `allow_query` names per origin (bounds what a request can store).
pub const MAX_ALLOW_QUERY: usize = 8;
/// Longest `allow_query` name.
pub const MAX_QUERY_NAME_BYTES: usize = 128;

/// An origin's refresh settings in ms, and which were given explicitly (a
/// derived default is reported under the field it was derived from).
struct Timing {
    refresh_before_ms: u64,
    min_remaining_ms: u64,
    refresh_before_set: bool,
    min_remaining_set: bool,
}

/// Refuses expiry settings that cannot work: URLs served with (almost) no
/// time left, refreshes with no time to happen, or a re-signature on every
/// request. Each message names the smallest value that works.
fn check_timing(at: &str, t: &Timing) -> Result<(), ConfigError> {
    let secs = |ms: u64| format!("{}.{:03} s", ms / 1000, ms % 1000);
    let rb_field = if t.refresh_before_set {
        "refresh_before"
    } else {
        "expires_in"
    };
    let mr_field = if t.min_remaining_set {
        "min_remaining"
    } else {
        rb_field
    };
    let defaults =
        " (refresh_before defaults to expires_in / 5, min_remaining to refresh_before / 5)";
    let err = |f: &str, msg: String| {
        let why = if f == "expires_in" || (f == "refresh_before" && !t.min_remaining_set) {
            defaults
        } else {
            ""
        };
        ConfigError::new(format!("{at}.{f}"), format!("{msg}{why}"))
    };
    if t.min_remaining_ms < MIN_REMAINING_MS {
        return Err(err(
            mr_field,
            format!(
                "gives min_remaining {}, below the smallest that works ({}): a URL must outlive the request's trip to the origin",
                secs(t.min_remaining_ms),
                secs(MIN_REMAINING_MS)
            ),
        ));
    }
    let smallest_rb = t.min_remaining_ms + MIN_REFRESH_WINDOW_MS;
    if t.refresh_before_ms < smallest_rb {
        return Err(err(
            rb_field,
            format!(
                "gives refresh_before {}; it must be at least min_remaining + {} = {} so a refresh has time to happen",
                secs(t.refresh_before_ms),
                secs(MIN_REFRESH_WINDOW_MS),
                secs(smallest_rb)
            ),
        ));
    }
    // The signing window (expires_in − refresh_before) is always at least
    // 1 s: explicit values are whole seconds with refresh_before < expires_in,
    // and the default leaves 4/5 of a lifetime of at least 2 s.
    Ok(())
}

/// Compiles `match.host`: `host` or `host:port`, lower-cased, without a
/// trailing dot.
fn compile_host_match(h: &str) -> Result<HostMatch, String> {
    let (host, port) = split_authority(h);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("must be a host name, optionally with :port".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':'))
    {
        return Err(format!("{h:?} is not a host name (or host:port)"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().ok().filter(|n| *n != 0).is_none() {
            return Err(format!("has an invalid port {p:?}"));
        }
    }
    Ok(HostMatch {
        host: host.to_ascii_lowercase(),
        port: port.map(str::to_string),
    })
}

/// An IPv4 or bracketed IPv6 literal: no `bucket.` can be put before it.
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

fn is_plain_path_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#')
}

/// Region and service names: lower-case letters, digits and dashes.
fn validate_label(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        return Err("must not be empty");
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must use only a-z 0-9 -");
    }
    Ok(())
}

/// S3 bucket naming rules (3-63 chars, lower-case letters, digits, dots, dashes,
/// starting and ending with a letter or digit); underscores are accepted because
/// several S3-compatible servers allow them for path-style buckets.
fn validate_bucket(b: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&b.len()) {
        return Err("must be 3 to 63 characters");
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err("must use only a-z 0-9 . - _");
    }
    let first_last_ok =
        |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_last_ok(b.bytes().next()) || !first_last_ok(b.bytes().last()) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// Parses `scheme://host[:port]` with nothing after the authority but an optional `/`.
fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = s.strip_prefix("http://") {
        ("http", r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host[:port] with no path, query or user info".into());
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("has an unterminated IPv6 literal")?;
        let (h, after) = authority.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err("has junk after the IPv6 literal".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    {
        return Err("has an invalid host".into());
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| format!("has an invalid port {p:?}"))?;
            let default = if scheme == "https" { 443 } else { 80 };
            (n != default).then_some(n)
        }
    };
    Ok(Endpoint {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

#[cfg(test)]
mod tests;

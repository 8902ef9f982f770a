//! Rotating credentials: the one source every refresh asks, when to refresh
//! and retry, when credentials stop signing, and the fingerprint that names
//! the setup in shared data.

use sha2::{Digest, Sha256};

use crate::config::credentials::fields::err;
use crate::config::credentials::raw::RawRefresh;
use crate::config::credentials::sources::{BaseCredentials, Source};
use crate::config::error::ConfigError;

/// Refresh this long before the credentials expire (at most half their life).
pub const DEFAULT_REFRESH_BEFORE_SECS: u64 = 900;
/// Every URL expires this long before the credentials that signed it.
pub const DEFAULT_EXPIRY_MARGIN_SECS: u64 = 60;
/// First retry delay after a failed refresh; doubles up to the maximum.
pub const DEFAULT_RETRY_MIN_MS: u64 = 1_000;
/// Longest retry delay after failed refreshes.
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;

/// When and how the rotating credentials are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Refresh this long before expiry (capped at half the credentials' life).
    pub before_ms: u64,
    /// URLs expire this long before their credentials; credentials with less
    /// than this (plus the origin's `min_remaining`) left sign nothing.
    pub expiry_margin_ms: u64,
    /// First retry delay after a failure.
    pub retry_min_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long one worker's claim to refresh holds off the others: longer
    /// than the slowest refresh the chain can make, so it only lapses when
    /// the refreshing worker is gone.
    pub lease_ms: u64,
    /// Signing stops this long before the credentials expire
    /// (`stops_signing_ms` with the largest origin `min_remaining`; set by
    /// `Config::parse`, which knows the origins).
    pub stops_signing_ms: u64,
}

/// How long before their expiry credentials stop signing: a URL must end
/// `expiry_margin` before them, keep `min_remaining` of life when served, and
/// have a whole second of life (the one rule `request::url_source::Keys` applies).
pub fn stops_signing_ms(expiry_margin_ms: u64, min_remaining_ms: u64) -> u64 {
    expiry_margin_ms
        .saturating_add(min_remaining_ms)
        .saturating_add(1000)
}

/// Rotating credentials: the one source every refresh asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotating {
    /// The source: the `source` itself, or a chain's first configured entry.
    /// A failing source is retried with back-off, never replaced by another.
    pub source: Source,
    /// Refresh timing.
    pub refresh: RefreshSettings,
    /// Names this setup in shared-data keys, so another configuration's (or
    /// a previous one's) credentials are never adopted. A hash: no secret.
    pub fingerprint: String,
}

/// A hash of the source (its Debug form, which redacts every secret);
/// inline base keys add their own fingerprint, so rotating those is a new setup.
pub(super) fn fingerprint_of(source: &Source) -> String {
    let mut h = Sha256::new();
    h.update(b"envoy-presign rotating credentials\0");
    h.update(format!("{source:?}").as_bytes());
    if let Source::AssumeRole(_, BaseCredentials::Static(c)) = source {
        h.update(c.access_key_id().as_bytes());
        h.update(b"\0");
        h.update(c.secret_access_key().as_bytes());
    }
    if let Source::Container(c) = source {
        h.update(c.authorization.as_deref().unwrap_or("").as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses refresh timing under which credentials would stop signing before
/// they are refreshed: a worker signs until `expiry_margin` + the origin's
/// `min_remaining` (+ 1 s of URL life) before expiry, and refreshes
/// `refresh.before` before expiry, or half-way through a shorter life (an
/// STS session of `duration`).
pub fn check_timing(r: &mut Rotating, max_min_remaining_ms: u64) -> Result<(), ConfigError> {
    let stops_ms = stops_signing_ms(r.refresh.expiry_margin_ms, max_min_remaining_ms);
    r.refresh.stops_signing_ms = stops_ms;
    let explain = |what: &str, value_ms: u64| {
        format!(
            "{what} ({} s) must exceed refresh.expiry_margin + the largest origin min_remaining + 1 s ({} s): signing stops that long before the credentials expire, so they would lapse before being refreshed",
            value_ms / 1000,
            stops_ms.div_ceil(1000)
        )
    };
    if r.refresh.before_ms <= stops_ms {
        return Err(err(
            "refresh.before",
            explain("refresh.before", r.refresh.before_ms),
        ));
    }
    let session = match &r.source {
        Source::AssumeRole(s, _) => Some(("assume_role", s)),
        Source::WebIdentity(s) => Some(("web_identity", s)),
        _ => None,
    };
    if let Some((block, sts)) = session {
        let half_life_ms = u64::from(sts.duration_secs) * 500;
        if half_life_ms <= stops_ms {
            return Err(err(
                &format!("{block}.duration"),
                explain("half the session", half_life_ms),
            ));
        }
    }
    Ok(())
}

/// The longest a refresh through `source` can take: each call's timeout.
fn worst_case_ms(source: &Source) -> u64 {
    match source {
        Source::Imds(s) => 3 * s.endpoint.timeout_ms,
        Source::Container(s) => s.endpoint.timeout_ms,
        Source::WebIdentity(s) => s.endpoint.timeout_ms,
        Source::AssumeRole(s, base) => {
            s.endpoint.timeout_ms
                + match base {
                    BaseCredentials::Static(_) => 0,
                    BaseCredentials::Fetched(b) => worst_case_ms(b),
                }
        }
    }
}

/// Compiles the `refresh` block for `source` (absent: every default).
pub(super) fn refresh_settings(
    raw: Option<&RawRefresh>,
    source: &Source,
) -> Result<RefreshSettings, ConfigError> {
    let default = RawRefresh::default();
    let raw = raw.unwrap_or(&default);
    let before = raw.before.unwrap_or(DEFAULT_REFRESH_BEFORE_SECS);
    if !(1..=43_200).contains(&before) {
        return Err(err(
            "refresh.before",
            format!("must be between 1 and 43200 seconds, got {before}"),
        ));
    }
    let margin = raw.expiry_margin.unwrap_or(DEFAULT_EXPIRY_MARGIN_SECS);
    if margin > 3_600 {
        return Err(err(
            "refresh.expiry_margin",
            format!("must be between 0 and 3600 seconds, got {margin}"),
        ));
    }
    let retry_min = raw.retry_min_ms.unwrap_or(DEFAULT_RETRY_MIN_MS);
    if !(100..=600_000).contains(&retry_min) {
        return Err(err(
            "refresh.retry_min_ms",
            format!("must be between 100 and 600000, got {retry_min}"),
        ));
    }
    let retry_max = raw
        .retry_max_ms
        .unwrap_or(DEFAULT_RETRY_MAX_MS.max(retry_min));
    if retry_max < retry_min || retry_max > 3_600_000 {
        return Err(err(
            "refresh.retry_max_ms",
            format!("must be between retry_min_ms ({retry_min}) and 3600000, got {retry_max}"),
        ));
    }
    let slowest = worst_case_ms(source);
    Ok(RefreshSettings {
        before_ms: before * 1000,
        expiry_margin_ms: margin * 1000,
        retry_min_ms: retry_min,
        retry_max_ms: retry_max,
        lease_ms: slowest + 2_000,
        stops_signing_ms: stops_signing_ms(margin * 1000, 0),
    })
}

//! The reply of a `delivery: redirect` origin: a 307 whose `Location` is the
//! presigned URL on the origin's public endpoint. Pure: the expiry and the
//! time are arguments.
//!
//! Why 307: it keeps the method, so a HEAD follows to the HEAD-signed URL
//! (a 302 lets clients turn anything into GET, and S3 refuses a URL signed
//! for another method). Why never 301/308: browsers keep permanent
//! redirects without a bound, and the URL stops working when it expires.
//! Why `private, max-age=N` with N at most what the URL has left minus
//! `min_remaining`: a client that reuses the redirect still reaches the
//! object with the margin the cache itself keeps, and `private` keeps a
//! shared cache (a CDN in front of Envoy) from handing one client's bearer
//! URL to others for longer than Envoy would.

use crate::config::Origin;

/// The status of every redirect.
pub const REDIRECT_STATUS: u32 = 307;

/// The headers of one redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    /// The full presigned URL: a bearer credential until it expires.
    pub location: String,
    /// `private, max-age=N`, or `no-store` for an unsigned fallback.
    pub cache_control: String,
    /// `Access-Control-Allow-Origin`, when the request's `Origin` is allowed.
    pub allow_origin: Option<&'a str>,
    /// Whether the answer depends on the request's `Origin` (`Vary: Origin`):
    /// set whenever the origin has `cors_origins` other than `*`.
    pub vary_origin: bool,
}

impl Redirect<'_> {
    /// The reply's headers, in a stable order.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![
            ("location", self.location.as_str()),
            ("cache-control", self.cache_control.as_str()),
        ];
        if let Some(o) = self.allow_origin {
            h.push(("access-control-allow-origin", o));
        }
        if self.vary_origin {
            h.push(("vary", "origin"));
        }
        h
    }
}

/// Seconds a client may reuse a redirect to a URL that expires at
/// `expires_at_ms`: what it has left minus `min_remaining`, rounded down,
/// 0 when nothing is left.
pub fn max_age_secs(expires_at_ms: u64, now_ms: u64, min_remaining_ms: u64) -> u64 {
    expires_at_ms
        .saturating_sub(now_ms)
        .saturating_sub(min_remaining_ms)
        / 1000
}

/// The configured CORS origin that allows a request sent with `Origin:
/// request_origin` (`*`, or the matching entry), if any.
pub fn allowed_origin<'o>(origin: &'o Origin, request_origin: Option<&str>) -> Option<&'o str> {
    origin
        .cors_origins
        .iter()
        .find(|allowed| {
            allowed.as_str() == "*"
                || request_origin.is_some_and(|r| r.eq_ignore_ascii_case(allowed))
        })
        .map(String::as_str)
}

/// The redirect to `path` (path and query of the URL) on the origin's public
/// endpoint. `max_age` is `None` for a URL that is not signed (an
/// `on_error: passthrough` fallback): the next request may be signed, so it
/// is not kept.
pub fn redirect<'o>(
    origin: &'o Origin,
    path: &str,
    max_age: Option<u64>,
    request_origin: Option<&str>,
) -> Redirect<'o> {
    let mut location = String::with_capacity(origin.location_base.len() + path.len());
    location.push_str(&origin.location_base);
    location.push_str(path);
    Redirect {
        location,
        cache_control: match max_age {
            Some(n) => format!("private, max-age={n}"),
            None => "no-store".to_string(),
        },
        allow_origin: allowed_origin(origin, request_origin),
        vary_origin: origin.cors_origins.iter().any(|o| o != "*"),
    }
}

#[cfg(test)]
#[path = "redirect_tests.rs"]
mod tests;

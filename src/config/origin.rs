//! One origin, compiled: everything the request path needs about it,
//! computed once. `compile_origin` reads the raw entry in named steps (name,
//! match, endpoint, delivery, labels, key paths, expiry, query), each
//! refusing a bad value under the field it came from, in that order.

use std::time::Duration;

use crate::cache::Policy;
use crate::config::cache_settings::CacheSettings;
use crate::config::choices::{Addressing, Delivery, OnError, OtherMethods};
use crate::config::delivery::compile_delivery;
use crate::config::endpoint::{
    check_addressing, compile_host_match, parse_endpoint, signed_host, Endpoint, HostMatch,
};
use crate::config::error::ConfigError;
use crate::config::expiry::compile_expiry;
use crate::config::query::compile_query;
use crate::config::raw::{RawMatch, RawOrigin};
use crate::sigv4::presign::Target;

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

/// Compiles one entry of `origins`; `at` is its JSON path (`origins[0]`).
pub(super) fn compile_origin(
    o: RawOrigin,
    at: &str,
    cache: &CacheSettings,
) -> Result<Origin, ConfigError> {
    check_name(&o.name, at)?;
    let (match_prefix, match_host) = compile_match(&o.matcher, at)?;
    let (endpoint, addressing) = compile_endpoint(&o, at)?;
    let delivery = compile_delivery(&o, at, &endpoint, addressing)?;
    let service = compile_labels(&o, at)?;
    let (strip_prefix, key_prefix) = compile_key_paths(&o, at, &match_prefix)?;
    let (expires_secs, policy) = compile_expiry(&o, at, cache.align)?;
    let response_content_types = compile_query(&o, at)?;

    // URLs are signed for the host that will receive them: the endpoint when
    // Envoy forwards, the public endpoint when the client follows a redirect.
    let (signed_endpoint, signed_addressing) = match &delivery.public {
        Some((e, a)) => (e, *a),
        None => (&endpoint, addressing),
    };
    let (authority, url_path_prefix) = signed_host(signed_endpoint, signed_addressing, &o.bucket);
    let location_base = match delivery.delivery {
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
        match_prefix,
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
        delivery: delivery.delivery,
        location_base,
        cors_origins: delivery.cors_origins,
        proxied_suffixes: delivery.proxied_suffixes,
        proxied: None,
        response_content_types,
    };
    let proxied = (!origin.proxied_suffixes.is_empty()).then(|| Box::new(proxy_twin(&origin)));
    Ok(Origin { proxied, ..origin })
}

/// `name`: it becomes a metric label.
fn check_name(name: &str, at: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.starts_with('_')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            format!("{at}.name"),
            "must be non-empty, use only A-Z a-z 0-9 _ - and not start with _ (it becomes a metric label)",
        ));
    }
    Ok(())
}

/// `match`: the raw path prefix, and the host if one is given.
fn compile_match(m: &RawMatch, at: &str) -> Result<(String, Option<HostMatch>), ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let prefix = m.prefix.clone();
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
    let match_host = match &m.host {
        Some(h) => {
            Some(compile_host_match(h).map_err(|r| ConfigError::new(field("match.host"), r))?)
        }
        None => None,
    };
    Ok((prefix, match_host))
}

/// `endpoint`, `bucket` and `addressing`: where Envoy sends the objects' requests.
fn compile_endpoint(o: &RawOrigin, at: &str) -> Result<(Endpoint, Addressing), ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let endpoint =
        parse_endpoint(&o.endpoint).map_err(|r| ConfigError::new(field("endpoint"), r))?;

    validate_bucket(&o.bucket).map_err(|r| ConfigError::new(field("bucket"), r))?;
    let addressing = o.addressing.unwrap_or(Addressing::Path);
    check_addressing(&endpoint, &o.bucket, addressing)
        .map_err(|r| ConfigError::new(field("addressing"), r))?;
    Ok((endpoint, addressing))
}

/// `region` and `service` (default `s3`), the SigV4 scope; returns the service.
fn compile_labels(o: &RawOrigin, at: &str) -> Result<String, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    validate_label(&o.region).map_err(|r| ConfigError::new(field("region"), r))?;
    let service = o.service.clone().unwrap_or_else(|| "s3".to_string());
    validate_label(&service).map_err(|r| ConfigError::new(field("service"), r))?;
    Ok(service)
}

/// `strip_prefix` (default: the match prefix) and `key_prefix`: how a
/// request path becomes an object key.
fn compile_key_paths(
    o: &RawOrigin,
    at: &str,
    prefix: &str,
) -> Result<(String, String), ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let strip_prefix = o.strip_prefix.clone().unwrap_or_else(|| prefix.to_string());
    if !prefix.starts_with(strip_prefix.as_str()) {
        return Err(ConfigError::new(
            field("strip_prefix"),
            format!("must be a prefix of match.prefix {prefix:?}, so every matched path has it"),
        ));
    }
    let key_prefix = o.key_prefix.clone().unwrap_or_default();
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
    Ok((strip_prefix, key_prefix))
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

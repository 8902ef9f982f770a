//! An origin's delivery: proxy (Envoy relays the object) or redirect (the
//! client follows a presigned `Location`), and the settings only a redirect
//! reads: `public_endpoint`, `public_addressing`, `cors_origins` and
//! `proxied_suffixes`.

use crate::config::choices::{Addressing, Delivery};
use crate::config::endpoint::{check_addressing, parse_endpoint, Endpoint};
use crate::config::error::ConfigError;
use crate::config::raw::RawOrigin;

/// Default `proxied_suffixes` of a redirect origin: HLS and DASH manifests.
pub const DEFAULT_PROXIED_SUFFIXES: [&str; 2] = [".m3u8", ".mpd"];
/// Most `proxied_suffixes` entries per origin (each is compared per request).
pub const MAX_PROXIED_SUFFIXES: usize = 8;
/// Longest `proxied_suffixes` entry.
pub const MAX_SUFFIX_BYTES: usize = 32;

/// Most `cors_origins` entries per origin.
pub const MAX_CORS_ORIGINS: usize = 16;

/// An origin's delivery settings, compiled.
pub(super) struct CompiledDelivery {
    /// Proxy or redirect.
    pub(super) delivery: Delivery,
    /// Redirect only: the endpoint and addressing of the URL the client follows.
    pub(super) public: Option<(Endpoint, Addressing)>,
    /// Redirect only: browser origins given CORS headers, lower-case.
    pub(super) cors_origins: Vec<String>,
    /// Redirect only: key endings served through Envoy, lower-case.
    pub(super) proxied_suffixes: Vec<String>,
}

/// Compiles an origin's delivery (under `at`, e.g. `origins[0]`), given its
/// compiled `endpoint` and `addressing`, which a redirect inherits when its
/// public ones are not given. The redirect-only settings are refused in proxy mode.
pub(super) fn compile_delivery(
    o: &RawOrigin,
    at: &str,
    endpoint: &Endpoint,
    addressing: Addressing,
) -> Result<CompiledDelivery, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
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
    let proxied_suffixes = match (&public, o.proxied_suffixes.as_deref()) {
        (None, _) => Vec::new(),
        (Some(_), None) => DEFAULT_PROXIED_SUFFIXES.map(String::from).to_vec(),
        (Some(_), Some(list)) => compile_suffixes(list, &field("proxied_suffixes"))?,
    };
    Ok(CompiledDelivery {
        delivery,
        public,
        cors_origins,
        proxied_suffixes,
    })
}

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

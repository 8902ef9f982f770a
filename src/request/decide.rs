//! The request flow as a pure decision: given the method, authority and path of
//! a request, what the filter does with it. The filter glue only carries the
//! decision out (rewrite headers, send a local reply, or do nothing), so every
//! branch here is unit-tested without a host.

use crate::config::overrides::{self, OverrideError};
use crate::config::{Config, Delivery, OnError, Origin, OtherMethods};
use crate::sigv4::canonical::{allowed_query, object_key, split_path, PathError};
use crate::sigv4::presign::{unsigned_path, Method, SignError};

/// A local reply the filter sends instead of forwarding. The code is stable
/// (documented, alertable) and the body never holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u32,
    /// Stable error code, also sent as `x-presign-error`.
    pub code: &'static str,
    /// `Retry-After` seconds, when the client should come back (0: not sent).
    pub retry_after_secs: u32,
}

impl LocalReply {
    /// 400: the path is not a valid percent-encoding.
    pub const INVALID_PATH_ENCODING: Self = Self {
        status: 400,
        code: "invalid_path_encoding",
        retry_after_secs: 0,
    };
    /// 400: the decoded path is not a usable object key.
    pub const INVALID_OBJECT_KEY: Self = Self {
        status: 400,
        code: "invalid_object_key",
        retry_after_secs: 0,
    };
    /// 400: the allow-listed query parameters are too long to sign and cache.
    pub const QUERY_TOO_LONG: Self = Self {
        status: 400,
        code: "query_too_long",
        retry_after_secs: 0,
    };
    /// 400: a `response-*` override the origin's `allow_query` does not name.
    pub const OVERRIDE_NOT_ALLOWED: Self = Self {
        status: 400,
        code: "override_not_allowed",
        retry_after_secs: 0,
    };
    /// 400: a `response-content-type` outside the origin's allow-list.
    pub const INVALID_CONTENT_TYPE: Self = Self {
        status: 400,
        code: "invalid_content_type",
        retry_after_secs: 0,
    };
    /// 400: a `response-content-disposition` that is not a plain
    /// `inline`/`attachment` with an optional well-formed file name.
    pub const INVALID_CONTENT_DISPOSITION: Self = Self {
        status: 400,
        code: "invalid_content_disposition",
        retry_after_secs: 0,
    };
    /// 405: only GET and HEAD are signed.
    pub const METHOD_NOT_ALLOWED: Self = Self {
        status: 405,
        code: "method_not_allowed",
        retry_after_secs: 0,
    };
    /// 503: the request matched but could not be signed.
    pub const SIGNING_UNAVAILABLE: Self = Self {
        status: 503,
        code: "signing_unavailable",
        retry_after_secs: 0,
    };
    /// 503: rotating credentials have not been obtained yet, or those held
    /// are too close to expiry; sent with `Retry-After` (the next refresh).
    pub const CREDENTIALS_UNAVAILABLE: Self = Self {
        status: 503,
        code: "credentials_unavailable",
        retry_after_secs: 1,
    };

    /// The reply to a matched request that could not be signed.
    pub fn refusing(reason: FallbackReason) -> Self {
        match reason {
            FallbackReason::CredentialsUnavailable { retry_after_secs } => Self {
                retry_after_secs: retry_after_secs.max(1),
                ..Self::CREDENTIALS_UNAVAILABLE
            },
            _ => Self::SIGNING_UNAVAILABLE,
        }
    }

    /// The JSON body of the reply.
    pub fn body(&self) -> String {
        format!("{{\"error\":\"{}\"}}\n", self.code)
    }
}

impl From<PathError> for LocalReply {
    fn from(e: PathError) -> Self {
        match e {
            PathError::InvalidEncoding => LocalReply::INVALID_PATH_ENCODING,
            PathError::InvalidKey => LocalReply::INVALID_OBJECT_KEY,
            PathError::QueryTooLong => LocalReply::QUERY_TOO_LONG,
        }
    }
}

impl From<OverrideError> for LocalReply {
    fn from(e: OverrideError) -> Self {
        match e {
            OverrideError::NotAllowed => LocalReply::OVERRIDE_NOT_ALLOWED,
            OverrideError::ContentType => LocalReply::INVALID_CONTENT_TYPE,
            OverrideError::ContentDisposition => LocalReply::INVALID_CONTENT_DISPOSITION,
        }
    }
}

/// Why a matched request was forwarded without a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// No credentials are configured.
    NoCredentials,
    /// Rotating credentials: none obtained yet, or too close to expiry to
    /// sign with; the next refresh is due in about `retry_after_secs`.
    CredentialsUnavailable {
        /// Seconds until the next refresh attempt (at least 1).
        retry_after_secs: u32,
    },
    /// The signer failed.
    SignError(SignError),
}

impl FallbackReason {
    /// Stable category for logs and metrics.
    pub fn category(self) -> &'static str {
        match self {
            FallbackReason::NoCredentials | FallbackReason::CredentialsUnavailable { .. } => {
                "no_credentials"
            }
            FallbackReason::SignError(e) => e.category(),
        }
    }
}

/// The stable category a refusal is logged under: the signing failure's
/// (`no_credentials`, `signer`, ...), or for a client mistake the reply's code.
/// One function, so the filter's log line and the host command agree.
pub fn refusal_category(reply: LocalReply, failure: Option<FallbackReason>) -> &'static str {
    failure.map_or(reply.code, FallbackReason::category)
}

/// What the filter does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'c> {
    /// No origin matches: the request goes on untouched.
    Bypass,
    /// Answer locally; nothing reaches the origin.
    Reject {
        /// The matched origin.
        origin: &'c Origin,
        /// The reply to send.
        reply: LocalReply,
        /// Why signing failed, when that is the cause.
        failure: Option<FallbackReason>,
    },
    /// Forward to the origin, with client auth headers stripped.
    Forward {
        /// The matched origin.
        origin: &'c Origin,
        /// New `:authority` and `:path`, when the request is rewritten.
        rewrite: Option<(&'c str, String)>,
        /// Why it is not signed, if it is not.
        fallback: Option<FallbackReason>,
    },
    /// Answer 307 with the URL on the origin's public endpoint; nothing is
    /// forwarded (`delivery: redirect`).
    Redirect {
        /// The matched origin.
        origin: &'c Origin,
        /// Path and query of the URL, after the origin's `location_base`.
        path: String,
        /// Why it is not signed, if it is not (`on_error: passthrough`).
        fallback: Option<FallbackReason>,
    },
}

/// The request facts the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`, raw bytes as the client sent it (not always UTF-8).
    pub path: &'a [u8],
}

/// What a signer returns: the presigned `:path` (the cache, when present, sits
/// behind this function).
pub type SignFn<'s> =
    dyn FnMut(&Origin, Method, &str, &[(String, String)]) -> Result<String, FallbackReason> + 's;

/// Decides what to do with a request. `sign` is called at most once, only for
/// a matched GET/HEAD whose key is valid.
pub fn decide<'c>(config: &'c Config, req: RequestHead<'_>, sign: &mut SignFn<'_>) -> Decision<'c> {
    let Ok(path) = std::str::from_utf8(req.path) else {
        // Raw bytes that are not UTF-8: no key can be made of them, but only
        // a matched origin refuses; any other route gets them untouched.
        let end = req
            .path
            .iter()
            .position(|b| matches!(b, b'?' | b'#'))
            .unwrap_or(req.path.len());
        let raw_path = req.path.get(..end).unwrap_or(req.path);
        return match config.match_origin(req.authority, raw_path) {
            None => Decision::Bypass,
            Some(origin) => Decision::Reject {
                origin,
                reply: LocalReply::INVALID_PATH_ENCODING,
                failure: None,
            },
        };
    };
    let (raw_path, raw_query) = split_path(path);
    let Some(origin) = config.match_origin(req.authority, raw_path.as_bytes()) else {
        return Decision::Bypass;
    };
    let Some(method) = Method::parse(req.method) else {
        return match origin.other_methods {
            OtherMethods::Deny => Decision::Reject {
                origin,
                reply: LocalReply::METHOD_NOT_ALLOWED,
                failure: None,
            },
            OtherMethods::Passthrough => Decision::Forward {
                origin,
                rewrite: None,
                fallback: None,
            },
        };
    };
    // match_origin guarantees the path starts with match_prefix, and config
    // validation guarantees strip_prefix is a prefix of match_prefix.
    let rest = raw_path.get(origin.strip_prefix.len()..).unwrap_or("");
    let key = match object_key(&origin.key_prefix, rest) {
        Ok(k) => k,
        Err(e) => {
            return Decision::Reject {
                origin,
                reply: e.into(),
                failure: None,
            }
        }
    };
    let query = match allowed_query(raw_query, &origin.allow_query) {
        Ok(q) => q,
        Err(e) => {
            return Decision::Reject {
                origin,
                reply: e.into(),
                failure: None,
            }
        }
    };
    if let Err(e) = overrides::check(
        raw_query,
        &origin.allow_query,
        &query,
        &origin.response_content_types,
    ) {
        return Decision::Reject {
            origin,
            reply: e.into(),
            failure: None,
        };
    }
    // A redirect origin's manifests are served through Envoy (its proxy twin).
    let origin = origin.serving(&key);
    let (path, fallback) = match sign(origin, method, &key, &query) {
        Ok(path) => (path, None),
        Err(reason) => match origin.on_error {
            OnError::Deny => {
                return Decision::Reject {
                    origin,
                    reply: LocalReply::refusing(reason),
                    failure: Some(reason),
                }
            }
            OnError::Passthrough => (unsigned_path(&origin.target(), &key, &query), Some(reason)),
        },
    };
    match origin.delivery {
        Delivery::Proxy => Decision::Forward {
            origin,
            rewrite: Some((origin.authority.as_str(), path)),
            fallback,
        },
        Delivery::Redirect => Decision::Redirect {
            origin,
            path,
            fallback,
        },
    }
}

/// Client credentials that must never reach the origin: `Authorization`,
/// `Proxy-Authorization`, `Cookie` and every `x-amz-*` header. Names are
/// compared case-insensitively, and `_` counts as `-` (Envoy accepts
/// `x_amz_security_token` by default, and some servers read it as the dashed
/// name).
pub fn is_client_auth_header(name: &str) -> bool {
    is_client_auth_header_name(name.as_bytes())
}

/// `is_client_auth_header` on a name's bytes, as the header map holds them
/// (the request's headers are judged without decoding every name).
pub fn is_client_auth_header_name(n: &[u8]) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                let x = if *x == b'_' {
                    b'-'
                } else {
                    x.to_ascii_lowercase()
                };
                x == *y
            })
    };
    eq(n, b"authorization")
        || eq(n, b"proxy-authorization")
        || eq(n, b"cookie")
        || n.get(..6).is_some_and(|p| eq(p, b"x-amz-"))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

//! One request's way through the filter, from its head to what was done to it
//! and the record to count: the worker's local copy, then the decision (which
//! consults the shared cache or signs), then the header changes or local
//! answer carried out on a `RequestHost`.
//!
//! The filter (src/wasm/filter.rs) reads the headers, calls `local_hit` and
//! then `handle`, and turns the result into a proxy-wasm action, a metrics call
//! and a log line; the host command's `sign` (src/cli) calls the same `handle`
//! against a `DryRun` host, so what it prints is what the filter does.

use crate::cache::local::LocalCache;
use crate::cache::Store;
use crate::clock::{unix_ms, RequestClock};
use crate::config::{Config, Delivery, Origin};
use crate::request::actions::{self, Acted, Forward, HostError, HostFailures, RequestHost};
use crate::request::decide::{decide, refusal_category, Decision, FallbackReason, RequestHead};
use crate::request::headers::HeaderView;
use crate::request::record::{RequestOutcome, RequestRecord};
use crate::request::redirect::{max_age_secs, redirect};
use crate::request::url_source::{presigned_path, Host, ObjectRequest, UrlReport};
use crate::sigv4::canonical::{count_auth_params, split_path, without_auth_params};

/// A failure worth a log line (the glue writes it, rate-limited): never a
/// key, signature or URL, only stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureNote<'c> {
    /// A warning (signing failed) rather than a debug line (a client mistake).
    pub warn: bool,
    /// `presign_rejected` or `presign_fallback`.
    pub event: &'static str,
    /// The stable category (a reply code or a signing failure's category).
    pub category: &'static str,
    /// The status sent; 0 when the request was forwarded.
    pub status: u32,
    /// The origin's name.
    pub origin: &'c str,
}

/// What the pipeline did with one request.
#[derive(Debug)]
pub struct Handled<'c> {
    /// Position of the matched origin in `Config::origins` (whose metrics
    /// count the request); `None` when no origin matched.
    pub index: Option<usize>,
    /// What to count.
    pub record: RequestRecord,
    /// How acting on the request ended: whether the filter stops it.
    pub acted: Acted,
    /// The failure to log, if any.
    pub failure: Option<FailureNote<'c>>,
}

/// A `RequestHost` that accepts every call and keeps nothing: the host
/// command's stand-in for Envoy, which has no request to change.
#[derive(Debug, Default, Clone, Copy)]
pub struct DryRun;

impl RequestHost for DryRun {
    fn set_header(&mut self, _name: &str, _value: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn remove_header(&mut self, _name: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn send_reply(&mut self, _: u32, _: &[(&str, &str)], _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
}

/// Position of a matched origin (the decision borrows it from `config`); a
/// redirect origin's proxy twin counts as that origin.
pub fn index_of(config: &Config, origin: &Origin) -> Option<usize> {
    config.origins.iter().position(|o| {
        std::ptr::eq(o, origin)
            || o.proxied
                .as_deref()
                .is_some_and(|t| std::ptr::eq(t, origin))
    })
}

/// Whether `origin` is the configured origin at `index` itself, not its proxy
/// twin: only those rewrites go into the worker's local copy, whose hits are
/// served with the configured origin's delivery.
fn is_configured_at(config: &Config, index: usize, origin: &Origin) -> bool {
    config
        .origins
        .get(index)
        .is_some_and(|o| std::ptr::eq(o, origin))
}

/// Sends a matched request on to its origin: strips client credentials,
/// applies the rewrite (or removes client `X-Amz-*` parameters from a
/// passed-through method), and marks it for the origin's route. Returns how
/// acting ended and how many credentials it stripped.
fn forward(
    req: &mut dyn RequestHost,
    head: &HeaderView<'_>,
    path: &str,
    origin: &Origin,
    rewrite: Option<(&str, &str)>,
    host: &mut HostFailures,
) -> (Acted, u64) {
    let (_, query) = split_path(path);
    let cleaned = match rewrite {
        Some(_) => None,
        None => without_auth_params(path),
    };
    let f = Forward {
        origin: &origin.name,
        strip: &head.auth_headers,
        authority: rewrite.map(|(a, _)| a),
        path: rewrite.map(|(_, p)| p).or(cleaned.as_deref()),
    };
    let stripped = u64::try_from(head.auth_headers.len()).unwrap_or(0) + count_auth_params(query);
    let acted = actions::forward(req, f, host);
    let stripped = if acted == Acted::Forwarded {
        stripped
    } else {
        0
    };
    (acted, stripped)
}

/// Forwards and records: a request the filter had to stop instead (a refused
/// rewrite answered 503) counts as denied.
fn forward_recorded(
    req: &mut dyn RequestHost,
    head: &HeaderView<'_>,
    path: &str,
    origin: &Origin,
    rewrite: Option<(&str, &str)>,
    record: &mut RequestRecord,
) -> Acted {
    let (acted, stripped) = forward(req, head, path, origin, rewrite, &mut record.host);
    record.auth_stripped = stripped;
    if acted.stops() {
        record.outcome = Some(RequestOutcome::Denied);
    }
    acted
}

/// Answers a matched request with a 307 to its URL; `max_age` is `None` for
/// an unsigned fallback URL. A 307 Envoy refuses leaves the request unmarked
/// (the shipped routes answer 404), counted as denied, not as a redirect.
fn send_redirect(
    req: &mut dyn RequestHost,
    head: &HeaderView<'_>,
    origin: &Origin,
    path: &str,
    max_age: Option<u64>,
    record: &mut RequestRecord,
) -> Acted {
    let r = redirect(origin, path, max_age, head.origin);
    let acted = actions::redirect(req, &r, head.marker, &mut record.host);
    if acted != Acted::Redirected {
        record.outcome = Some(RequestOutcome::Denied);
    }
    acted
}

/// The fast path: a fresh rewrite this worker made for the same request
/// (method, authority and raw path), served without the shared cache. A
/// proxied hit whose refresh point lies beyond the tick clock's margin is
/// served without reading the host's clock; any other is judged, and a
/// redirect's `max-age` computed, at the exact time.
pub fn local_hit<'c>(
    config: &'c Config,
    local: &LocalCache,
    head: &HeaderView<'_>,
    path: &str,
    clock: &mut RequestClock<'_>,
    req: &mut dyn RequestHost,
) -> Option<Handled<'c>> {
    let hit = local.find(head.method, head.authority, path)?;
    let origin = config.origins.get(hit.origin)?;
    let redirect = origin.delivery == Delivery::Redirect;
    let sure = !redirect && clock.surely_before(hit.fresh_until_ms);
    if !sure && !hit.fresh_at(clock.exact_ms()) {
        return None;
    }
    let mut record = RequestRecord {
        outcome: Some(RequestOutcome::Hit),
        cache: Some(crate::cache::Outcome::Hit),
        ..RequestRecord::default()
    };
    let acted = if redirect {
        record.outcome = Some(RequestOutcome::Redirect);
        let expires_at_ms = hit
            .fresh_until_ms
            .saturating_add(origin.policy.refresh_before_ms);
        let max_age = max_age_secs(
            expires_at_ms,
            clock.exact_ms(),
            origin.policy.min_remaining_ms,
        );
        send_redirect(req, head, origin, hit.rewrite, Some(max_age), &mut record)
    } else {
        let rewrite = Some((origin.authority.as_str(), hit.rewrite));
        forward_recorded(req, head, path, origin, rewrite, &mut record)
    };
    Some(Handled {
        index: Some(hit.origin),
        record,
        acted,
        failure: None,
    })
}

/// The full path: match, decode, consult the shared cache or sign (through
/// `host`), carry out the decision on `req`, and remember a fresh rewrite in
/// the worker's local copy. Returns the decision carried out with what was done.
pub fn handle<'c, S: Store + ?Sized>(
    config: &'c Config,
    host: &Host<'_, S>,
    local: &mut LocalCache,
    head: &HeaderView<'_>,
    raw_path: &[u8],
    req: &mut dyn RequestHost,
) -> (Decision<'c>, Handled<'c>) {
    let mut report = UrlReport::default();
    let mut sign = |origin: &Origin, method, key: &str, query: &[(String, String)]| {
        let object = ObjectRequest { method, key, query };
        presigned_path(config, host, origin, object, &mut report)
    };
    let request = RequestHead {
        method: head.method,
        authority: head.authority,
        path: raw_path,
    };
    let decision = decide(config, request, &mut sign);
    let now_ms = unix_ms(host.now);
    let mut record = RequestRecord::default();
    let mut failure = None;
    let (index, acted) = match &decision {
        Decision::Bypass => {
            record.outcome = Some(RequestOutcome::Bypass);
            let acted = actions::pass_unmatched(req, head.marker, &mut record.host);
            (None, acted)
        }
        Decision::Reject {
            origin,
            reply,
            failure: cause,
        } => {
            // Signing failures are warnings, client mistakes (400, 405) debug.
            failure = Some(FailureNote {
                warn: cause.is_some(),
                event: "presign_rejected",
                category: refusal_category(*reply, *cause),
                status: reply.status,
                origin: &origin.name,
            });
            record.outcome = Some(RequestOutcome::Denied);
            record.rejected = Some(reply.code);
            let acted = actions::reject(req, *reply, head.marker, &mut record.host);
            (index_of(config, origin), acted)
        }
        Decision::Forward {
            origin,
            rewrite,
            fallback,
        } => {
            let index = index_of(config, origin);
            record.outcome = Some(match (rewrite, fallback) {
                (_, Some(reason)) => {
                    failure = Some(fallback_note(origin, *reason));
                    RequestOutcome::Fallback
                }
                (None, None) => RequestOutcome::Bypass,
                (Some(_), None) => RequestOutcome::of(report.outcome),
            });
            let path = std::str::from_utf8(raw_path).unwrap_or_default();
            let rewrite = rewrite.as_ref().map(|(a, p)| (*a, p.as_str()));
            let acted = forward_recorded(req, head, path, origin, rewrite, &mut record);
            let mine = index.filter(|i| is_configured_at(config, *i, origin));
            if let (Some((_, new_path)), None, Some(i), Some(until), false) = (
                rewrite,
                fallback,
                mine,
                report.fresh_until_ms,
                acted.stops(),
            ) {
                local.put(head.method, head.authority, path, i, new_path, until);
            }
            (index, acted)
        }
        Decision::Redirect {
            origin,
            path: location_path,
            fallback,
        } => {
            let index = index_of(config, origin);
            let max_age = match fallback {
                Some(reason) => {
                    failure = Some(fallback_note(origin, *reason));
                    record.outcome = Some(RequestOutcome::Fallback);
                    None
                }
                None => {
                    record.outcome = Some(RequestOutcome::Redirect);
                    let left = |at| max_age_secs(at, now_ms, origin.policy.min_remaining_ms);
                    // A signed URL always has an expiry; without one, 0.
                    Some(report.expires_at_ms.map_or(0, left))
                }
            };
            let acted = send_redirect(req, head, origin, location_path, max_age, &mut record);
            if let (Some(i), Some(until), Some(_), Acted::Redirected) =
                (index, report.fresh_until_ms, max_age, acted)
            {
                let path = std::str::from_utf8(raw_path).unwrap_or_default();
                local.put(head.method, head.authority, path, i, location_path, until);
            }
            (index, acted)
        }
    };
    record.cache = report.outcome;
    record.ops = report.ops;
    record.sign_error = report.sign_error.map(FallbackReason::category);
    record.signed = report.signed;
    record.sign_us = report.sign_us;
    let handled = Handled {
        index,
        record,
        acted,
        failure,
    };
    (decision, handled)
}

/// The warning of a request served unsigned (`on_error: passthrough`).
fn fallback_note(origin: &Origin, reason: FallbackReason) -> FailureNote<'_> {
    FailureNote {
        warn: true,
        event: "presign_fallback",
        category: reason.category(),
        status: 0,
        origin: &origin.name,
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

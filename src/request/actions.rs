//! Carrying out a decision on one request through the host: strip client
//! credentials, rewrite `:authority` and `:path`, mark the request for the
//! origin's route, or answer locally. Behind a small trait so every failure
//! of the host (Envoy refusing a header write or a local reply) is a tested,
//! counted outcome instead of a panic that would kill the worker's VM.

use crate::request::decide::LocalReply;
use crate::request::headers::ORIGIN_MARKER_HEADER;
use crate::request::redirect::{Redirect, REDIRECT_STATUS};

/// A hostcall the host refused, with its proxy-wasm status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

/// The request-side hostcalls the filter makes.
pub trait RequestHost {
    /// Sets (replaces) a request header.
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Removes a request header.
    fn remove_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Sends a local reply instead of forwarding.
    fn send_reply(
        &mut self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
}

/// Which hostcalls failed while acting on a request (the `call` label of
/// `hostcall_errors`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostFailures {
    /// Header writes or removals refused.
    pub set_header: u32,
    /// Local replies refused.
    pub local_reply: u32,
}

/// How acting on the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    /// Forwarded (and marked for the origin's route when it was matched).
    Forwarded,
    /// Answered with a local reply: the filter stops the request.
    Replied(LocalReply),
    /// Answered with a redirect: the filter stops the request.
    Redirected,
    /// Envoy refused both the rewrite and the 503 reply: the request goes on
    /// unmarked, so the shipped routes answer it with 404, never the origin.
    Unmarked,
}

impl Acted {
    /// Whether the request was answered here (a local reply or a redirect), so
    /// the filter stops it; otherwise it continues to Envoy's routes.
    pub fn stops(self) -> bool {
        matches!(self, Acted::Replied(_) | Acted::Redirected)
    }
}

/// 503: the host refused to rewrite the request.
pub const REWRITE_FAILED: LocalReply = LocalReply {
    status: 503,
    code: "rewrite_failed",
    retry_after_secs: 0,
};

/// Sends a local reply (JSON body, `x-presign-error`, `Allow` on 405,
/// `Retry-After` when the reply says when to come back).
pub fn reply(host: &mut dyn RequestHost, r: LocalReply, failures: &mut HostFailures) -> Acted {
    let body = r.body();
    let retry_after = r.retry_after_secs.to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-presign-error", r.code),
    ];
    if r == LocalReply::METHOD_NOT_ALLOWED {
        headers.push(("allow", "GET, HEAD"));
    }
    if r.retry_after_secs > 0 {
        headers.push(("retry-after", &retry_after));
    }
    match host.send_reply(r.status, &headers, body.as_bytes()) {
        Ok(()) => Acted::Replied(r),
        Err(_) => {
            failures.local_reply += 1;
            Acted::Unmarked
        }
    }
}

/// Refuses a matched request with a local reply, first removing a client's
/// copy of the origin marker: the route Envoy holds when the reply goes out
/// decides which response filters see it, and a forged marker would select
/// the origin's.
pub fn reject(
    host: &mut dyn RequestHost,
    r: LocalReply,
    client_sent_marker: bool,
    failures: &mut HostFailures,
) -> Acted {
    drop_client_marker(host, client_sent_marker, failures);
    reply(host, r, failures)
}

/// Removes a client's copy of the origin marker before a local answer (see
/// `reject`); a refused removal is counted and the answer still sent.
fn drop_client_marker(
    host: &mut dyn RequestHost,
    client_sent_marker: bool,
    failures: &mut HostFailures,
) {
    if client_sent_marker && host.remove_header(ORIGIN_MARKER_HEADER).is_err() {
        failures.set_header += 1;
    }
}

/// Answers a matched request with a 307 to its presigned URL (empty body:
/// the URL is only in `Location`). If Envoy refuses the reply, the request
/// goes on unmarked and the shipped routes answer it 404.
pub fn redirect(
    host: &mut dyn RequestHost,
    r: &Redirect<'_>,
    client_sent_marker: bool,
    failures: &mut HostFailures,
) -> Acted {
    drop_client_marker(host, client_sent_marker, failures);
    match host.send_reply(REDIRECT_STATUS, &r.headers(), b"") {
        Ok(()) => Acted::Redirected,
        Err(_) => {
            failures.local_reply += 1;
            Acted::Unmarked
        }
    }
}

/// What to do to a request bound for a matched origin.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// The origin's name, the marker header's value.
    pub origin: &'a str,
    /// Client credential headers to remove.
    pub strip: &'a [&'a str],
    /// New `:authority`, when the request is rewritten.
    pub authority: Option<&'a str>,
    /// New `:path`, when it changes (a rewrite, or client `X-Amz-*`
    /// parameters removed from a passed-through method).
    pub path: Option<&'a str>,
}

/// Forwards a request to a matched origin: removes client credentials,
/// rewrites, and sets the origin marker last, so a request whose rewrite
/// failed half-way is never marked. On any refused write it answers 503
/// `rewrite_failed`; if even that is refused, the request goes on unmarked.
pub fn forward(host: &mut dyn RequestHost, f: Forward<'_>, failures: &mut HostFailures) -> Acted {
    let removed = f.strip.iter().all(|name| host.remove_header(name).is_ok());
    let ok = removed
        && f.authority
            .is_none_or(|a| host.set_header(":authority", a).is_ok())
        && f.path.is_none_or(|p| host.set_header(":path", p).is_ok())
        && host.set_header(ORIGIN_MARKER_HEADER, f.origin).is_ok();
    if ok {
        return Acted::Forwarded;
    }
    failures.set_header += 1;
    reply(host, REWRITE_FAILED, failures)
}

/// A request no origin matched goes on untouched, except for a client's copy
/// of the origin marker, which is removed (if that fails, the request is
/// answered 503 rather than routed as if the filter had marked it).
pub fn pass_unmatched(
    host: &mut dyn RequestHost,
    client_sent_marker: bool,
    failures: &mut HostFailures,
) -> Acted {
    if !client_sent_marker || host.remove_header(ORIGIN_MARKER_HEADER).is_ok() {
        return Acted::Forwarded;
    }
    failures.set_header += 1;
    reply(host, REWRITE_FAILED, failures)
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;

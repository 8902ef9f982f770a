//! Carrying out a decision on one request through the host: strip client
//! credentials, rewrite `:authority` and `:path`, mark the request for the
//! origin's route, or answer locally. Behind a small trait so every failure
//! of the host (Envoy refusing a header write or a local reply) is a tested,
//! counted outcome instead of a panic that would kill the worker's VM.

use crate::headers::ORIGIN_MARKER_HEADER;
use crate::redirect::{Redirect, REDIRECT_STATUS};
use crate::request::LocalReply;

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
mod tests {
    use super::*;

    /// Records calls; fails the n-th header write (0-based) or every reply.
    #[derive(Default)]
    struct FakeHost {
        calls: Vec<String>,
        fail_write: Option<usize>,
        fail_reply: bool,
        writes: usize,
    }

    impl FakeHost {
        fn write(&mut self, call: String) -> Result<(), HostError> {
            let n = self.writes;
            self.writes += 1;
            if self.fail_write == Some(n) {
                return Err(HostError(10));
            }
            self.calls.push(call);
            Ok(())
        }
    }

    impl RequestHost for FakeHost {
        fn set_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
            self.write(format!("set {name}={value}"))
        }
        fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
            self.write(format!("remove {name}"))
        }
        fn send_reply(
            &mut self,
            status: u32,
            h: &[(&str, &str)],
            _: &[u8],
        ) -> Result<(), HostError> {
            if self.fail_reply {
                return Err(HostError(2));
            }
            self.calls.push(format!("reply {status} {h:?}"));
            Ok(())
        }
    }

    const FWD: Forward<'static> = Forward {
        origin: "media",
        strip: &["authorization"],
        authority: Some("s3:9000"),
        path: Some("/media/k?X-Amz-Signature=s"),
    };

    #[test]
    fn forward_strips_rewrites_then_marks() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        assert_eq!(forward(&mut h, FWD, &mut f), Acted::Forwarded);
        assert_eq!(
            h.calls,
            [
                "remove authorization",
                "set :authority=s3:9000",
                "set :path=/media/k?X-Amz-Signature=s",
                "set x-envoy-presign-origin=media"
            ]
        );
        assert_eq!(f, HostFailures::default());
    }

    #[test]
    fn a_refused_write_is_a_503_and_never_marked() {
        for n in 0..4 {
            let mut h = FakeHost {
                fail_write: Some(n),
                ..FakeHost::default()
            };
            let mut f = HostFailures::default();
            assert_eq!(
                forward(&mut h, FWD, &mut f),
                Acted::Replied(REWRITE_FAILED),
                "write {n}"
            );
            assert_eq!(f.set_header, 1);
            assert!(
                !h.calls.iter().any(|c| c.contains(ORIGIN_MARKER_HEADER)),
                "{:?}",
                h.calls
            );
            assert!(h.calls.last().unwrap().starts_with("reply 503"));
        }
    }

    #[test]
    fn a_refused_reply_leaves_the_request_unmarked() {
        let mut h = FakeHost {
            fail_write: Some(2),
            fail_reply: true,
            ..FakeHost::default()
        };
        let mut f = HostFailures::default();
        assert_eq!(forward(&mut h, FWD, &mut f), Acted::Unmarked);
        assert_eq!(
            f,
            HostFailures {
                set_header: 1,
                local_reply: 1
            }
        );
        let mut h = FakeHost {
            fail_reply: true,
            ..FakeHost::default()
        };
        let mut f = HostFailures::default();
        let r = reply(&mut h, LocalReply::METHOD_NOT_ALLOWED, &mut f);
        assert_eq!((r, f.local_reply), (Acted::Unmarked, 1));
    }

    #[test]
    fn replies_carry_their_code_and_allow_on_405() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        reply(&mut h, LocalReply::METHOD_NOT_ALLOWED, &mut f);
        reply(&mut h, LocalReply::QUERY_TOO_LONG, &mut f);
        assert!(h.calls[0].contains("(\"allow\", \"GET, HEAD\")"));
        assert!(h.calls[1].contains("query_too_long") && !h.calls[1].contains("allow"));
    }

    #[test]
    fn a_rejected_request_loses_a_forged_marker_first() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        let r = reject(&mut h, LocalReply::METHOD_NOT_ALLOWED, true, &mut f);
        assert_eq!(r, Acted::Replied(LocalReply::METHOD_NOT_ALLOWED));
        assert_eq!(h.calls[0], "remove x-envoy-presign-origin");
        assert!(h.calls[1].starts_with("reply 405"));
        let mut h = FakeHost {
            fail_write: Some(0),
            ..FakeHost::default()
        };
        let r = reject(&mut h, LocalReply::METHOD_NOT_ALLOWED, true, &mut f);
        assert_eq!(
            (r, f.set_header),
            (Acted::Replied(LocalReply::METHOD_NOT_ALLOWED), 1)
        );
    }

    fn a_redirect() -> Redirect<'static> {
        Redirect {
            location: "https://cdn/media/k?X-Amz-Signature=s".into(),
            cache_control: "private, max-age=5".into(),
            allow_origin: None,
            vary_origin: false,
        }
    }

    #[test]
    fn a_redirect_is_a_307_with_the_url_only_in_location() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        assert_eq!(
            redirect(&mut h, &a_redirect(), true, &mut f),
            Acted::Redirected
        );
        assert_eq!(
            h.calls,
            [
                "remove x-envoy-presign-origin",
                "reply 307 [(\"location\", \"https://cdn/media/k?X-Amz-Signature=s\"), (\"cache-control\", \"private, max-age=5\")]"
            ]
        );
        assert_eq!(f, HostFailures::default());
        // Nothing is forwarded: no header write but the forged marker's removal.
        let mut h = FakeHost::default();
        redirect(&mut h, &a_redirect(), false, &mut f);
        assert!(
            h.calls.iter().all(|c| c.starts_with("reply 307")),
            "{:?}",
            h.calls
        );
        // A refused reply leaves the request unmarked (the routes answer 404).
        let mut h = FakeHost {
            fail_reply: true,
            ..FakeHost::default()
        };
        assert_eq!(
            redirect(&mut h, &a_redirect(), false, &mut f),
            Acted::Unmarked
        );
        assert_eq!(f.local_reply, 1);
        assert!(!h.calls.iter().any(|c| c.contains(ORIGIN_MARKER_HEADER)));
    }

    #[test]
    fn unmatched_requests_lose_only_a_forged_marker() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        assert_eq!(pass_unmatched(&mut h, false, &mut f), Acted::Forwarded);
        assert!(h.calls.is_empty());
        assert_eq!(pass_unmatched(&mut h, true, &mut f), Acted::Forwarded);
        assert_eq!(h.calls, ["remove x-envoy-presign-origin"]);
        let mut h = FakeHost {
            fail_write: Some(0),
            ..FakeHost::default()
        };
        assert_eq!(
            pass_unmatched(&mut h, true, &mut f),
            Acted::Replied(REWRITE_FAILED)
        );
        assert_eq!(
            f,
            HostFailures {
                set_header: 1,
                local_reply: 0
            },
            "the refused removal is counted"
        );
    }

    /// docs/configuration.md, local replies: `Retry-After` is sent when the reply says
    /// when to come back (503 credentials_unavailable), and only then.
    #[test]
    fn retry_after_is_sent_only_when_set() {
        let mut h = FakeHost::default();
        let mut f = HostFailures::default();
        for secs in [1, 120] {
            let r = LocalReply {
                retry_after_secs: secs,
                ..LocalReply::CREDENTIALS_UNAVAILABLE
            };
            assert_eq!(reply(&mut h, r, &mut f), Acted::Replied(r));
        }
        reply(&mut h, LocalReply::SIGNING_UNAVAILABLE, &mut f);
        assert_eq!(
            h.calls,
            [
                "reply 503 [(\"content-type\", \"application/json\"), (\"x-presign-error\", \"credentials_unavailable\"), (\"retry-after\", \"1\")]",
                "reply 503 [(\"content-type\", \"application/json\"), (\"x-presign-error\", \"credentials_unavailable\"), (\"retry-after\", \"120\")]",
                "reply 503 [(\"content-type\", \"application/json\"), (\"x-presign-error\", \"signing_unavailable\")]",
            ]
        );
        assert_eq!(f, HostFailures::default());
    }
}

use super::*;
use crate::testing::FakeHost;

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

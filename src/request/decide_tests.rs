use super::*;
use serde_json::json;

fn config(extra: serde_json::Value) -> Config {
    let mut o = json!({
        "name": "media", "match": {"prefix": "/media/"},
        "endpoint": "http://s3.local:9000", "bucket": "media", "region": "us-east-1",
        "allow_query": ["versionId"],
    });
    for (k, v) in extra.as_object().unwrap() {
        o.as_object_mut().unwrap().insert(k.clone(), v.clone());
    }
    Config::parse(json!({ "origins": [o] }).to_string().as_bytes(), &|_| None).unwrap()
}

/// A fake signer recording what it was asked to sign.
fn run<'c>(
    c: &'c Config,
    method: &str,
    path: &str,
    result: Result<&str, FallbackReason>,
) -> (Decision<'c>, Vec<String>) {
    let mut calls = Vec::new();
    let mut sign = |_: &Origin, m: Method, key: &str, q: &[(String, String)]| {
        calls.push(format!("{} {key} {q:?}", m.as_str()));
        result.map(str::to_string)
    };
    let d = decide(
        c,
        RequestHead {
            method,
            authority: "envoy",
            path: path.as_bytes(),
        },
        &mut sign,
    );
    (d, calls)
}

/// The forward decision that rewrites to `path` on the (only) origin.
fn forward<'c>(c: &'c Config, path: &str, fallback: Option<FallbackReason>) -> Decision<'c> {
    let origin = &c.origins[0];
    Decision::Forward {
        origin,
        rewrite: Some((origin.authority.as_str(), path.to_string())),
        fallback,
    }
}

fn reply_of(d: &Decision<'_>) -> Option<LocalReply> {
    match d {
        Decision::Reject { reply, .. } => Some(*reply),
        _ => None,
    }
}

#[test]
fn unmatched_paths_bypass() {
    let c = config(json!({}));
    for p in ["/other/x", "/media", "/MEDIA/x", "/me%64ia/x"] {
        let (d, calls) = run(&c, "GET", p, Ok("/signed"));
        assert_eq!(d, Decision::Bypass, "{p}");
        assert!(calls.is_empty());
    }
}

#[test]
fn get_and_head_are_signed_with_decoded_key_and_allowed_query() {
    let c = config(json!({}));
    let (d, calls) = run(
        &c,
        "GET",
        "/media/my%20file(1).mp4?X-Amz-Signature=x&versionId=v%2B1&a=b",
        Ok("/media/signed"),
    );
    assert_eq!(calls, vec![r#"GET my file(1).mp4 [("versionId", "v+1")]"#]);
    assert_eq!(d, forward(&c, "/media/signed", None));
    let (_, calls) = run(&c, "HEAD", "/media/a", Ok("/x"));
    assert_eq!(calls, vec!["HEAD a []"]);
}

#[test]
fn other_methods() {
    let c = config(json!({}));
    for m in ["POST", "PUT", "DELETE", "get", "OPTIONS"] {
        let (d, calls) = run(&c, m, "/media/a", Ok("/x"));
        assert_eq!(reply_of(&d), Some(LocalReply::METHOD_NOT_ALLOWED), "{m}");
        assert!(calls.is_empty());
    }
    let c = config(json!({"other_methods": "passthrough"}));
    let (d, _) = run(&c, "PUT", "/media/a", Ok("/x"));
    assert!(matches!(
        d,
        Decision::Forward {
            rewrite: None,
            fallback: None,
            ..
        }
    ));
}

#[test]
fn non_utf8_paths_pass_through_unless_an_origin_matches() {
    let c = config(json!({}));
    let mut sign = |_: &Origin, _: Method, _: &str, _: &[(String, String)]| Ok("/x".to_string());
    let head = |path: &'static [u8]| RequestHead {
        method: "GET",
        authority: "envoy",
        path,
    };
    assert_eq!(
        decide(&c, head(b"/static/logo-\xe9.png"), &mut sign),
        Decision::Bypass
    );
    assert_eq!(
        decide(&c, head(b"/static/x?q=\xe9"), &mut sign),
        Decision::Bypass
    );
    let d = decide(&c, head(b"/media/\xe9.png"), &mut sign);
    assert_eq!(reply_of(&d), Some(LocalReply::INVALID_PATH_ENCODING));
}

#[test]
fn bad_paths_are_rejected_before_signing() {
    let c = config(json!({}));
    for (p, want) in [
        ("/media/a%zz", LocalReply::INVALID_PATH_ENCODING),
        ("/media/a?versionId=%zz", LocalReply::INVALID_PATH_ENCODING),
        ("/media/a/../b", LocalReply::INVALID_OBJECT_KEY),
        ("/media/%2e%2e/x", LocalReply::INVALID_OBJECT_KEY),
        ("/media/", LocalReply::INVALID_OBJECT_KEY),
        ("/media/a%00", LocalReply::INVALID_OBJECT_KEY),
    ] {
        let (d, calls) = run(&c, "GET", p, Ok("/x"));
        assert_eq!(reply_of(&d), Some(want), "{p}");
        assert!(calls.is_empty(), "{p}");
    }
}

#[test]
fn key_mapping_with_strip_and_key_prefix() {
    let c = config(
        json!({"match": {"prefix": "/v/media/"}, "strip_prefix": "/v/", "key_prefix": "videos/"}),
    );
    let (_, calls) = run(&c, "GET", "/v/media/a.mp4", Ok("/x"));
    assert_eq!(calls, vec!["GET videos/media/a.mp4 []"]);
}

#[test]
fn signing_failure_follows_on_error() {
    let c = config(json!({}));
    let (d, _) = run(&c, "GET", "/media/a", Err(FallbackReason::NoCredentials));
    assert_eq!(reply_of(&d), Some(LocalReply::SIGNING_UNAVAILABLE));
    assert!(LocalReply::SIGNING_UNAVAILABLE
        .body()
        .contains("signing_unavailable"));
    // docs/configuration.md, Local replies: a signer failure too is a 503
    // signing_unavailable with on_error: deny, reported as `signer`.
    let signer_failed = FallbackReason::SignError(SignError::Signer);
    let (d, _) = run(&c, "GET", "/media/a", Err(signer_failed));
    assert_eq!(
        d,
        Decision::Reject {
            origin: &c.origins[0],
            reply: LocalReply {
                status: 503,
                code: "signing_unavailable",
                retry_after_secs: 0,
            },
            failure: Some(signer_failed),
        }
    );
    assert_eq!(signer_failed.category(), "signer");

    let c = config(json!({"on_error": "passthrough"}));
    let (d, _) = run(
        &c,
        "GET",
        "/media/a%20b?versionId=1&x=2",
        Err(FallbackReason::NoCredentials),
    );
    let want = forward(
        &c,
        "/media/a%20b?versionId=1",
        Some(FallbackReason::NoCredentials),
    );
    assert_eq!(d, want);
}

/// `decide` on a GET of `path` through the real URL source (the cache in
/// `store`, the clock at `now_secs`), with the lookup's report.
fn decide_through_cache<'c>(
    c: &'c Config,
    store: &crate::testing::FakeStore,
    now_secs: u64,
    path: &str,
) -> (Decision<'c>, crate::request::url_source::UrlReport) {
    use crate::request::url_source::{presigned_path, ObjectRequest, UrlReport};
    let host = crate::testing::host_at(store, now_secs, None);
    let mut report = UrlReport::default();
    let mut sign = |o: &Origin, method, key: &str, query: &[(String, String)]| {
        let req = ObjectRequest { method, key, query };
        presigned_path(c, &host, o, req, &mut report)
    };
    let head = RequestHead {
        method: "GET",
        authority: "envoy",
        path: path.as_bytes(),
    };
    let d = decide(c, head, &mut sign);
    (d, report)
}

/// docs/configuration.md, Local replies: "503 `signing_unavailable`: no credentials
/// or signer failure, with `on_error: deny`". The real signer fails for a
/// time it cannot write as `X-Amz-Date` (after 9999); through the cache
/// and without it, the request is answered 503 with failure category
/// `signer`, and nothing is forwarded.
#[test]
fn a_real_signer_failure_is_a_503_signing_unavailable() {
    for cache in [true, false] {
        let doc = json!({
            "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
            "cache": {"enabled": cache},
            "origins": [{"name": "media", "match": {"prefix": "/media/"},
                         "endpoint": "http://s3.local:9000", "bucket": "media",
                         "region": "us-east-1"}],
        });
        let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
        // Year 10001: no SigV4 date for it.
        let store = crate::testing::FakeStore::default();
        let (d, report) = decide_through_cache(&c, &store, 253_433_923_200, "/media/a");
        let failure = match d {
            Decision::Reject {
                reply: LocalReply::SIGNING_UNAVAILABLE,
                failure: Some(f),
                ..
            } => f,
            other => panic!("cache {cache}: {other:?}"),
        };
        assert_eq!(failure.category(), "signer", "cache {cache}");
        assert_eq!(
            report.sign_error.map(FallbackReason::category),
            Some("signer")
        );
        assert_eq!(report.signed, 0);
    }
}

/// docs/configuration.md, step 3: "The bucket always comes from the configuration,
/// never from the request: no path reaches another bucket, and a key
/// always starts with `key_prefix`". With the real signer, path and
/// virtual addressing, with and without a `key_prefix`: every path that
/// tries to climb out (`..`, raw or encoded, `%2F` as a separator) is
/// refused before signing, and every signed one is sent to the
/// configured host, under `/<bucket>/<key_prefix>` (path style) or
/// `/<key_prefix>` on `<bucket>.host` (virtual), decoding to exactly that key.
#[test]
fn no_path_reaches_another_bucket() {
    use crate::sigv4::canonical::percent_decode;
    use crate::sigv4::presign::presign;
    use std::time::{Duration, UNIX_EPOCH};
    let climbing = [
        "/m/../other-bucket/x",
        "/m/%2e%2e/other-bucket/x",
        "/m/%2E%2E/other-bucket/x",
        "/m/.%2e/other-bucket/x",
        "/m/..%2fother-bucket/x",
        "/m/%2e%2e%2fother-bucket%2fx",
        "/m/%2E%2E%2F%2E%2E%2Fother-bucket%2Fx",
        "/m/a/../../other-bucket/x",
        "/m/a/%2e%2e/%2e%2e/other-bucket/x",
        "/m/a%2f..%2f..%2fother-bucket/x",
        "/m/..",
        "/m/%2e%2e",
    ];
    let staying = [
        "/m/other-bucket/x",
        "/m/%2fother-bucket/x",
        "/m/%2F%2Fother-bucket%2Fx",
        "/m//other-bucket/x",
        "/m/.../other-bucket/x",
        "/m/%252e%252e/other-bucket/x",
        "/m/..x/y",
        "/m/x?bucket=other-bucket&versionId=1",
    ];
    for (addressing, key_prefix) in [
        ("path", ""),
        ("path", "videos/"),
        ("virtual", ""),
        ("virtual", "videos/"),
    ] {
        let doc = json!({
            "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
            "origins": [{"name": "media", "match": {"prefix": "/m/"},
                         "endpoint": "http://s3.local:9000", "bucket": "media",
                         "addressing": addressing, "key_prefix": key_prefix,
                         "region": "us-east-1", "allow_query": ["versionId"]}],
        });
        let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
        let signer = c.signer.as_ref().unwrap();
        let (authority, bucket_path) = match addressing {
            "path" => ("s3.local:9000", "/media/"),
            _ => ("media.s3.local:9000", "/"),
        };
        let decide_path = |path: &str| {
            let mut signed = None;
            let mut sign = |o: &Origin, m, key: &str, q: &[(String, String)]| {
                signed = Some(key.to_string());
                let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
                presign(&o.target(), m, key, q, signer, at, Duration::from_secs(600))
                    .map(|p| p.path)
                    .map_err(FallbackReason::SignError)
            };
            let head = RequestHead {
                method: "GET",
                authority: "envoy",
                path: path.as_bytes(),
            };
            let d = decide(&c, head, &mut sign);
            (d, signed)
        };
        for path in climbing {
            let (d, signed) = decide_path(path);
            assert_eq!(
                reply_of(&d),
                Some(LocalReply::INVALID_OBJECT_KEY),
                "{addressing} {key_prefix:?} {path}: {d:?}"
            );
            assert_eq!(signed, None, "{path} was signed");
        }
        for path in staying {
            let (d, signed) = decide_path(path);
            let Decision::Forward {
                rewrite: Some((to, presigned)),
                fallback: None,
                ..
            } = d
            else {
                panic!("{addressing} {key_prefix:?} {path}: {d:?}");
            };
            let key = signed.unwrap();
            assert!(key.starts_with(key_prefix), "{path}: key {key:?}");
            assert_eq!(to, authority, "{path}");
            let (object, query) = presigned.split_once('?').unwrap();
            let prefix = format!("{bucket_path}{key_prefix}");
            assert!(object.starts_with(&prefix), "{path}: {object}");
            let decoded = percent_decode(object, false).unwrap();
            assert_eq!(
                decoded,
                format!("{bucket_path}{key}").into_bytes(),
                "{path}"
            );
            assert!(query.contains("X-Amz-Signature="), "{path}: {query}");
            assert!(!query.contains("bucket="), "{path}: {query}");
        }
    }
}

/// A redirect origin's manifests (`.m3u8`, `.mpd` by default, any case,
/// also percent-encoded) are signed for `endpoint` and forwarded, so a
/// player resolves their segment URIs against Envoy; every other key of
/// the origin is redirected; an empty `proxied_suffixes` redirects all.
#[test]
fn redirect_origins_forward_their_manifests() {
    let c = config(json!({"delivery": "redirect", "public_endpoint": "https://cdn.example.com"}));
    let origin = &c.origins[0];
    let twin = origin.proxied.as_deref().unwrap();
    let signed_for = |path: &str| {
        let mut hosts = Vec::new();
        let mut sign = |o: &Origin, _: Method, key: &str, _: &[(String, String)]| {
            hosts.push((o.authority.clone(), key.to_string()));
            Ok("/media/signed".to_string())
        };
        let head = RequestHead {
            method: "GET",
            authority: "envoy",
            path: path.as_bytes(),
        };
        let d = decide(&c, head, &mut sign);
        (d, hosts)
    };
    for path in [
        "/media/v/index.m3u8",
        "/media/v/INDEX.M3U8",
        "/media/v/index%2Em3u8",
        "/media/v/a.mpd?versionId=1",
    ] {
        let (d, hosts) = signed_for(path);
        let Decision::Forward {
            origin: got,
            rewrite: Some((to, p)),
            fallback: None,
        } = d
        else {
            panic!("{path}: {d:?}");
        };
        assert!(std::ptr::eq(got, twin), "{path}");
        assert_eq!(
            (to, p.as_str()),
            ("s3.local:9000", "/media/signed"),
            "{path}"
        );
        assert_eq!(hosts.len(), 1, "{path}");
        assert_eq!(hosts[0].0, "s3.local:9000", "{path}");
    }
    for path in [
        "/media/v/seg0.ts",
        "/media/v/a.mp4",
        "/media/v/index.m3u8.bak",
    ] {
        let (d, hosts) = signed_for(path);
        assert!(
            matches!(d, Decision::Redirect { origin: o, .. } if std::ptr::eq(o, origin)),
            "{path}: {d:?}"
        );
        assert_eq!(hosts[0].0, "cdn.example.com", "{path}");
    }
    // Refusals stay the origin's, manifests included.
    let (d, _) = run(&c, "PUT", "/media/v/index.m3u8", Ok("/x"));
    assert_eq!(reply_of(&d), Some(LocalReply::METHOD_NOT_ALLOWED));
    let none = config(json!({"delivery": "redirect", "proxied_suffixes": []}));
    let (d, _) = run(&none, "GET", "/media/v/index.m3u8", Ok("/x"));
    assert!(matches!(d, Decision::Redirect { .. }), "{d:?}");
}

/// docs/configuration.md, Response overrides: refused overrides answer 400 with
/// their own code before anything is signed; allowed ones are signed.
#[test]
fn response_overrides_are_checked_before_signing() {
    let c = config(json!({
        "allow_query": ["response-content-type", "response-content-disposition"]
    }));
    for (path, reply) in [
        (
            "/media/a.mp4?response-content-type=text%2Fhtml",
            LocalReply::INVALID_CONTENT_TYPE,
        ),
        (
            "/media/a.mp4?response-content-type=image%2Fsvg%2Bxml",
            LocalReply::INVALID_CONTENT_TYPE,
        ),
        (
            "/media/a.mp4?response-content-disposition=attachment%3B%20filename%3Da.html",
            LocalReply::INVALID_CONTENT_DISPOSITION,
        ),
        (
            "/media/a.mp4?response-expires=0",
            LocalReply::OVERRIDE_NOT_ALLOWED,
        ),
        (
            "/media/a.mp4?response-cache-control=max-age%3D1",
            LocalReply::OVERRIDE_NOT_ALLOWED,
        ),
    ] {
        let (d, calls) = run(&c, "GET", path, Ok("/signed"));
        assert_eq!(reply_of(&d), Some(reply), "{path}");
        assert!(calls.is_empty(), "{path}");
    }
    let (d, calls) = run(
            &c,
            "GET",
            "/media/a.mp4?response-content-type=video%2Fmp4&response-content-disposition=attachment%3B%20filename%3D%22a.mp4%22",
            Ok("/signed"),
        );
    assert_eq!(d, forward(&c, "/signed", None));
    assert_eq!(
        calls,
        vec![
            r#"GET a.mp4 [("response-content-type", "video/mp4"), ("response-content-disposition", "attachment; filename=\"a.mp4\"")]"#
        ]
    );
    // An origin that allows no override refuses every one.
    let plain = config(json!({}));
    let (d, calls) = run(
        &plain,
        "GET",
        "/media/a.mp4?response-content-type=video%2Fmp4",
        Ok("/x"),
    );
    assert_eq!(reply_of(&d), Some(LocalReply::OVERRIDE_NOT_ALLOWED));
    assert!(calls.is_empty());
}

/// A redirect origin decides exactly as a proxy origin does (same
/// signer calls, same refusals), but answers with a redirect to the
/// signed path instead of forwarding; an unmatched request never gets one.
#[test]
fn redirect_origins_redirect_what_proxy_origins_forward() {
    let proxy = config(json!({}));
    let redirect = config(json!({"delivery": "redirect"}));
    for (method, path) in [
        ("GET", "/media/my%20file(1).mp4?versionId=v1&a=b"),
        ("HEAD", "/media/a"),
    ] {
        let (p, p_calls) = run(&proxy, method, path, Ok("/media/signed"));
        let (r, r_calls) = run(&redirect, method, path, Ok("/media/signed"));
        assert_eq!(p_calls, r_calls, "{method} {path}");
        assert_eq!(p, forward(&proxy, "/media/signed", None));
        assert_eq!(
            r,
            Decision::Redirect {
                origin: &redirect.origins[0],
                path: "/media/signed".into(),
                fallback: None,
            }
        );
    }
    for (method, path) in [
        ("GET", "/media/a%zz"),
        ("GET", "/media/a/../b"),
        ("GET", "/media/"),
        ("GET", &format!("/media/a?versionId={}", "v".repeat(3000))),
        ("POST", "/media/a"),
        ("DELETE", "/media/a"),
    ] {
        let (p, _) = run(&proxy, method, path, Ok("/x"));
        let (r, calls) = run(&redirect, method, path, Ok("/x"));
        assert!(reply_of(&p).is_some(), "{method} {path}: {p:?}");
        assert_eq!(reply_of(&p), reply_of(&r), "{method} {path}");
        assert!(calls.is_empty(), "{method} {path}");
    }
    for path in ["/other/x", "/media", "/me%64ia/x"] {
        let (d, calls) = run(&redirect, "GET", path, Ok("/x"));
        assert_eq!(d, Decision::Bypass, "{path}");
        assert!(calls.is_empty());
    }
    // Signing failures: 503 with deny, a redirect to the unsigned URL with passthrough.
    let (d, _) = run(
        &redirect,
        "GET",
        "/media/a",
        Err(FallbackReason::NoCredentials),
    );
    assert_eq!(reply_of(&d), Some(LocalReply::SIGNING_UNAVAILABLE));
    let c = config(json!({"delivery": "redirect", "on_error": "passthrough"}));
    let (d, _) = run(
        &c,
        "GET",
        "/media/a%20b?versionId=1&x=2",
        Err(FallbackReason::NoCredentials),
    );
    assert_eq!(
        d,
        Decision::Redirect {
            origin: &c.origins[0],
            path: "/media/a%20b?versionId=1".into(),
            fallback: Some(FallbackReason::NoCredentials),
        }
    );
}

/// docs/delivery.md, Redirect mode: `response-content-disposition` and
/// `response-content-type`, when `allow_query` names them, are signed
/// into the URL (S3 then sets those headers) and are part of the cache
/// identity: another file name is another URL, never a cached one.
#[test]
fn response_overrides_are_signed_and_part_of_the_identity() {
    let doc = json!({
        "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
        "origins": [{"name": "media", "match": {"prefix": "/media/"},
                     "endpoint": "http://s3.local:9000", "bucket": "media", "region": "us-east-1",
                     "delivery": "redirect", "public_endpoint": "https://cdn.example.com",
                     "allow_query": ["response-content-disposition", "response-content-type"]}],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let store = crate::testing::FakeStore::default();
    let location = |path: &str| {
        let (d, report) = decide_through_cache(&c, &store, 1_700_000_000, path);
        match d {
            Decision::Redirect {
                path,
                fallback: None,
                ..
            } => (path, report.signed),
            other => panic!("{path}: {other:?}"),
        }
    };
    let a = "/media/v.mp4?response-content-disposition=attachment%3B%20filename%3D%22a.mp4%22";
    let b = "/media/v.mp4?response-content-disposition=attachment%3B%20filename%3D%22b.mp4%22";
    let typed = "/media/v.mp4?response-content-type=video%2Fmp4&other=1";
    let (url_a, signed) = location(a);
    assert_eq!(signed, 1);
    assert!(
            url_a.starts_with(
                "/media/v.mp4?response-content-disposition=attachment%3B%20filename%3D%22a.mp4%22&X-Amz-Algorithm="
            ) && url_a.contains("X-Amz-Signature="),
            "{url_a}"
        );
    assert_eq!(
        location(a),
        (url_a.clone(), 0),
        "the same request is a cache hit"
    );
    let (url_b, signed) = location(b);
    assert_eq!(
        signed, 1,
        "another file name is another identity, signed apart"
    );
    // Signed: the other file name has another signature.
    let signature = |u: &str| u.split("X-Amz-Signature=").nth(1).map(str::to_string);
    assert_ne!(signature(&url_a), signature(&url_b));
    let (url_t, _) = location(typed);
    assert!(
        url_t.contains("response-content-type=video%2Fmp4") && !url_t.contains("other="),
        "{url_t}"
    );
    let (plain, signed) = location("/media/v.mp4");
    assert_eq!(signed, 1);
    assert!(!plain.contains("response-"), "{plain}");
}

/// Each fallback reason is reported under its own `sign_errors` category.
#[test]
fn fallback_reasons_are_sign_error_categories() {
    use crate::metrics::SIGN_ERROR_CATEGORIES;
    let reasons = [
        FallbackReason::NoCredentials,
        FallbackReason::SignError(SignError::Signer),
        FallbackReason::SignError(SignError::InvalidUri),
    ];
    let categories: Vec<&str> = reasons.iter().map(|r| r.category()).collect();
    assert_eq!(categories, SIGN_ERROR_CATEGORIES);
}

#[test]
fn client_auth_headers() {
    for h in [
        "authorization",
        "Authorization",
        "x-amz-date",
        "X-Amz-Security-Token",
        "x-amz-content-sha256",
    ] {
        assert!(is_client_auth_header(h), "{h}");
    }
    for h in [
        "proxy-authorization",
        "Proxy-Authorization",
        "proxy_authorization",
        "x_amz_security_token",
        "X_Amz-Date",
        "cookie",
        "authorization",
    ] {
        assert!(is_client_auth_header(h), "{h}");
    }
    for h in [
        "range",
        "x-am",
        "if-none-match",
        "x-amzn-trace-id",
        "host",
        "x_amzn_trace",
        "cookies",
        "authorizations",
    ] {
        assert!(!is_client_auth_header(h), "{h}");
    }
}

#[test]
fn a_refusal_is_logged_under_the_failure_or_the_reply_code() {
    let reply = LocalReply::SIGNING_UNAVAILABLE;
    assert_eq!(
        refusal_category(reply, Some(FallbackReason::NoCredentials)),
        "no_credentials"
    );
    assert_eq!(
        refusal_category(reply, Some(FallbackReason::SignError(SignError::Signer))),
        "signer"
    );
    assert_eq!(
        refusal_category(LocalReply::METHOD_NOT_ALLOWED, None),
        "method_not_allowed"
    );
}

/// docs/configuration.md, local replies: a request refused for want of rotating
/// credentials (`on_error: deny`) is a 503 `credentials_unavailable`
/// carrying the retry hint (at least 1 s), reported under
/// `no_credentials`; every other signing failure stays a 503
/// `signing_unavailable` without one; `passthrough` forwards unsigned.
#[test]
fn unavailable_credentials_are_a_503_with_retry_after() {
    let c = config(json!({}));
    let reason = FallbackReason::CredentialsUnavailable {
        retry_after_secs: 5,
    };
    let (d, _) = run(&c, "GET", "/media/a", Err(reason));
    let want = LocalReply {
        status: 503,
        code: "credentials_unavailable",
        retry_after_secs: 5,
    };
    assert_eq!(
        d,
        Decision::Reject {
            origin: &c.origins[0],
            reply: want,
            failure: Some(reason),
        }
    );
    assert_eq!(want.body(), "{\"error\":\"credentials_unavailable\"}\n");
    assert_eq!(reason.category(), "no_credentials");
    assert_eq!(refusal_category(want, Some(reason)), "no_credentials");
    let zero = FallbackReason::CredentialsUnavailable {
        retry_after_secs: 0,
    };
    assert_eq!(LocalReply::refusing(zero).retry_after_secs, 1);
    assert_eq!(LocalReply::refusing(zero).code, "credentials_unavailable");
    assert_eq!(
        LocalReply::refusing(FallbackReason::NoCredentials),
        LocalReply::SIGNING_UNAVAILABLE
    );
    assert_eq!(
        LocalReply::refusing(FallbackReason::SignError(SignError::Signer)),
        LocalReply::SIGNING_UNAVAILABLE
    );
    assert_eq!(LocalReply::SIGNING_UNAVAILABLE.retry_after_secs, 0);
    let c = config(json!({"on_error": "passthrough"}));
    let (d, _) = run(&c, "GET", "/media/a", Err(reason));
    assert_eq!(d, forward(&c, "/media/a", Some(reason)));
}

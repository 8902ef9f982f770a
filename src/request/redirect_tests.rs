use super::*;
use crate::config::Config;
use serde_json::json;

fn origin(extra: serde_json::Value) -> Config {
    let mut o = json!({"name": "media", "match": {"prefix": "/m/"},
                           "endpoint": "http://10.0.0.5:9000", "bucket": "media",
                           "region": "us-east-1", "delivery": "redirect",
                           "public_endpoint": "https://media.example.com"});
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    Config::parse(json!({"origins": [o]}).to_string().as_bytes(), &|_| None).unwrap()
}

#[test]
fn max_age_leaves_min_remaining_and_never_goes_negative() {
    // 3600 s left, 144 s margin: 3456 s.
    assert_eq!(max_age_secs(3_600_000, 0, 144_000), 3456);
    // Rounded down: 1.999 s usable is 1 s.
    assert_eq!(max_age_secs(10_999, 9_000, 0), 1);
    assert_eq!(max_age_secs(10_000, 9_000, 0), 1);
    assert_eq!(max_age_secs(10_000, 9_001, 0), 0);
    // Nothing left beyond the margin, or already expired: 0, not a wrap.
    assert_eq!(max_age_secs(10_000, 9_000, 1_000), 0);
    assert_eq!(max_age_secs(10_000, 9_000, 5_000), 0);
    assert_eq!(max_age_secs(10_000, 20_000, 0), 0);
}

#[test]
fn location_is_the_public_url_and_caching_is_private() {
    let c = origin(json!({}));
    let o = &c.origins[0];
    let r = redirect(o, "/media/a%20b?X-Amz-Signature=s", Some(60), None);
    assert_eq!(
        r.headers(),
        [
            (
                "location",
                "https://media.example.com/media/a%20b?X-Amz-Signature=s"
            ),
            ("cache-control", "private, max-age=60"),
        ]
    );
    let r = redirect(o, "/media/a", None, None);
    assert_eq!(r.cache_control, "no-store");
    let c = origin(
        json!({"public_addressing": "virtual", "public_endpoint": "http://s3.example.com:8080"}),
    );
    let r = redirect(&c.origins[0], "/a", Some(0), None);
    assert_eq!(r.location, "http://media.s3.example.com:8080/a");
    assert_eq!(r.cache_control, "private, max-age=0");
}

#[test]
fn cors_allows_only_configured_origins() {
    let c = origin(json!({"cors_origins": ["https://App.example.com", "http://localhost:3000"]}));
    let o = &c.origins[0];
    let r = redirect(o, "/a", Some(1), Some("https://app.example.com"));
    assert_eq!(r.allow_origin, Some("https://app.example.com"));
    assert!(r.headers().contains(&("vary", "origin")));
    let r = redirect(o, "/a", Some(1), Some("http://localhost:3000"));
    assert_eq!(r.allow_origin, Some("http://localhost:3000"));
    for other in [
        Some("https://evil.example.com"),
        Some("https://app.example.com.evil"),
        Some("http://app.example.com"),
        Some("null"),
        None,
    ] {
        let r = redirect(o, "/a", Some(1), other);
        assert_eq!(r.allow_origin, None, "{other:?}");
        assert!(!r
            .headers()
            .iter()
            .any(|(n, _)| n.starts_with("access-control")));
        assert!(r.headers().contains(&("vary", "origin")), "{other:?}");
    }
    let c = origin(json!({"cors_origins": ["*"]}));
    let r = redirect(&c.origins[0], "/a", Some(1), None);
    assert_eq!(r.allow_origin, Some("*"));
    assert!(!r.vary_origin);
    // Without cors_origins: no CORS header at all.
    let c = origin(json!({}));
    let r = redirect(
        &c.origins[0],
        "/a",
        Some(1),
        Some("https://app.example.com"),
    );
    assert_eq!((r.allow_origin, r.vary_origin), (None, false));
}

use super::endpoint::split_authority;
use super::*;
use crate::cache::Policy;
use serde_json::{json, Value};
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

fn origin() -> Value {
    json!({
        "name": "media",
        "match": {"prefix": "/media/"},
        "endpoint": "http://127.0.0.1:8333",
        "bucket": "media",
        "region": "us-east-1",
    })
}

fn doc_with(field: &str, value: Value) -> Value {
    let mut o = origin();
    set_path(&mut o, field, value);
    json!({ "origins": [o] })
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).unwrap();
    }
    cur.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_string(), value);
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes(), &no_env)
}

#[test]
fn defaults_and_compiled_form() {
    let c = parse(&json!({"origins": [origin()]})).unwrap();
    let o = &c.origins[0];
    assert_eq!(o.service, "s3");
    assert_eq!(o.addressing, Addressing::Path);
    assert_eq!(o.strip_prefix, "/media/");
    assert_eq!(o.key_prefix, "");
    assert_eq!(o.expires_in, Duration::from_secs(DEFAULT_EXPIRES_IN_SECS));
    assert_eq!(o.on_error, OnError::Deny);
    assert_eq!(o.other_methods, OtherMethods::Deny);
    assert_eq!(o.authority, "127.0.0.1:8333");
    assert_eq!(o.url_path_prefix, "/media");
    assert_eq!(c.credentials_source, CredentialsSource::Env);
    assert!(c.signer.is_err(), "no env credentials");
    // The cache defaults docs/configuration.md documents, as literal values.
    assert_eq!(
        c.cache,
        CacheSettings {
            enabled: true,
            max_entries: 10_000,
            align: true,
            scan_interval_secs: 10,
            local_entries: 1024,
        }
    );
    // docs/cache.md, URL cache: refresh_before defaults to expires_in / 5 and
    // min_remaining to refresh_before / 5, in ms: 720 s and 144 s at 3600 s.
    assert_eq!(
        o.policy,
        Policy {
            expires_in_ms: 3_600_000,
            refresh_before_ms: 720_000,
            min_remaining_ms: 144_000,
            align: true,
        }
    );
    // docs/configuration.md, config table: allow_query defaults to [] (nothing forwarded).
    assert!(o.allow_query.is_empty(), "{:?}", o.allow_query);
}

/// docs/configuration.md's bounds, as the literal numbers it states (the tests above
/// use the constants, which a changed constant would still pass):
/// `cache.max_entries` 1 to 10,000,000, `cache.local_entries` 0 to 65,536,
/// `bucket` 3 to 63 characters of `a-z 0-9 . - _`, `allow_query` at most 8
/// names of at most 128 characters. Each bound is accepted, one past it is
/// refused naming the field.
#[test]
fn documented_bounds_hold_as_literal_values() {
    let cache = |field: &str, v: u64| json!({"cache": {field: v}, "origins": [origin()]});
    let names = |n: usize| json!((0..n).map(|i| format!("q{i}")).collect::<Vec<_>>());
    let accepted = [
        cache("max_entries", 1),
        cache("max_entries", 10_000_000),
        cache("local_entries", 0),
        cache("local_entries", 65_536),
        doc_with("bucket", json!("abc")),
        doc_with("bucket", json!("b".repeat(63))),
        doc_with("bucket", json!("my_bucket.v-2")),
        doc_with("allow_query", names(8)),
        doc_with("allow_query", json!(["q".repeat(128)])),
    ];
    for doc in &accepted {
        if let Err(e) = parse(doc) {
            panic!("refused {doc}: {e}");
        }
    }
    let c = parse(&accepted[1]).unwrap();
    assert_eq!(c.cache.max_entries, 10_000_000);
    let c = parse(&accepted[3]).unwrap();
    assert_eq!(c.cache.local_entries, 65_536);
    for (doc, field) in [
        (cache("max_entries", 10_000_001), "cache.max_entries"),
        (cache("local_entries", 65_537), "cache.local_entries"),
        (
            doc_with("bucket", json!("b".repeat(64))),
            "origins[0].bucket",
        ),
        (doc_with("allow_query", names(9)), "origins[0].allow_query"),
        (
            doc_with("allow_query", json!(["q".repeat(129)])),
            "origins[0].allow_query[0]",
        ),
    ] {
        let err = parse(&doc)
            .err()
            .unwrap_or_else(|| panic!("accepted {doc}"));
        assert_eq!(err.field, field, "{err}");
    }
}

/// docs/cache.md, URL cache: `min_remaining` defaults to `refresh_before / 5`
/// (in ms), wherever `refresh_before` comes from: checked at several
/// lifetimes and with explicit `refresh_before` values, so neither a
/// constant nor `expires_in / 25` would pass.
#[test]
fn min_remaining_defaults_to_a_fifth_of_refresh_before() {
    for (expires_in, refresh_before, want_refresh_ms, want_min_ms) in [
        (5, None, 1_000, 200),
        (3600, None, 720_000, 144_000),
        (604_800, None, 120_960_000, 24_192_000),
        (3600, Some(100), 100_000, 20_000),
        (3600, Some(3599), 3_599_000, 719_800),
        (10, Some(1), 1_000, 200),
    ] {
        let mut o = origin();
        set_path(&mut o, "expires_in", json!(expires_in));
        if let Some(r) = refresh_before {
            set_path(&mut o, "refresh_before", json!(r));
        }
        let c = parse(&json!({"origins": [o]}))
            .unwrap_or_else(|e| panic!("{expires_in} {refresh_before:?}: {e}"));
        let p = c.origins[0].policy;
        assert_eq!(
            (p.refresh_before_ms, p.min_remaining_ms),
            (want_refresh_ms, want_min_ms),
            "expires_in {expires_in}, refresh_before {refresh_before:?}"
        );
    }
}

#[test]
fn latency_sampling_defaults_to_one_in_sixteen_and_is_bounded() {
    let c = parse(&json!({"origins": [origin()]})).unwrap();
    assert_eq!(c.latency_sample_every, DEFAULT_LATENCY_SAMPLE_EVERY);
    assert_eq!(DEFAULT_LATENCY_SAMPLE_EVERY, 16);
    for ok in [1, MAX_LATENCY_SAMPLE_EVERY] {
        let doc = json!({"metrics": {"latency_sample_every": ok}, "origins": [origin()]});
        assert_eq!(parse(&doc).unwrap().latency_sample_every, ok);
    }
    for bad in [0, MAX_LATENCY_SAMPLE_EVERY + 1] {
        let doc = json!({"metrics": {"latency_sample_every": bad}, "origins": [origin()]});
        let e = parse(&doc).unwrap_err().to_string();
        assert!(e.contains("metrics.latency_sample_every"), "{e}");
    }
}

/// The cache settings' bounds are inclusive: the largest value of each is
/// accepted, one more is an error naming the field.
#[test]
fn cache_bounds_are_inclusive() {
    for (field, max) in [
        ("local_entries", u64::from(MAX_LOCAL_ENTRIES)),
        ("max_entries", u64::from(MAX_MAX_ENTRIES)),
        ("scan_interval", 3600),
    ] {
        let c = parse(&json!({"cache": {field: max}, "origins": [origin()]}))
            .unwrap_or_else(|e| panic!("{field} {max}: {e}"));
        let got = match field {
            "local_entries" => u64::from(c.cache.local_entries),
            "max_entries" => u64::from(c.cache.max_entries),
            _ => c.cache.scan_interval_secs,
        };
        assert_eq!(got, max);
        let err = parse(&json!({"cache": {field: max + 1}, "origins": [origin()]})).unwrap_err();
        assert_eq!(err.field, format!("cache.{field}"));
    }
}

/// A timing error explains the defaults exactly when the value at fault
/// was derived from one: under `expires_in`, or under `refresh_before`
/// while `min_remaining` is its default; never when both were given.
#[test]
fn timing_errors_mention_the_defaults_only_when_they_applied() {
    let err_for = |fields: &[(&str, u64)]| {
        let mut o = origin();
        for (f, v) in fields {
            set_path(&mut o, f, json!(v));
        }
        parse(&json!({"origins": [o]})).unwrap_err()
    };
    let hint = "defaults to";
    let e = err_for(&[("refresh_before", 0)]);
    assert_eq!(e.field, "origins[0].refresh_before", "{e}");
    assert!(e.to_string().contains(hint), "{e}");
    let e = err_for(&[("refresh_before", 1), ("min_remaining", 1)]);
    assert_eq!(e.field, "origins[0].refresh_before", "{e}");
    assert!(!e.to_string().contains(hint), "{e}");
    let e = err_for(&[("min_remaining", 0)]);
    assert_eq!(e.field, "origins[0].min_remaining", "{e}");
    assert!(!e.to_string().contains(hint), "{e}");
}

/// docs/cache.md, URL cache: "Settings that cannot work are refused with an
/// error naming the field and the smallest value that works". The whole
/// message, so the value in it is checked: 0.200 s for `min_remaining`,
/// `min_remaining` + 0.800 s for `refresh_before`; for a value derived
/// from a default, the smallest value of the derived setting, with the
/// defaults spelled out; 2 for `expires_in`.
#[test]
fn timing_errors_name_the_smallest_value_that_works() {
    let message = |fields: &[(&str, u64)]| {
        let mut o = origin();
        for (f, v) in fields {
            set_path(&mut o, f, json!(v));
        }
        parse(&json!({"origins": [o]})).unwrap_err().to_string()
    };
    let defaults =
        " (refresh_before defaults to expires_in / 5, min_remaining to refresh_before / 5)";
    let too_late = "a URL must outlive the request's trip to the origin";
    assert_eq!(
            message(&[("min_remaining", 0)]),
            format!(
                "origins[0].min_remaining: gives min_remaining 0.000 s, below the smallest that works (0.200 s): {too_late}"
            )
        );
    assert_eq!(
            message(&[("refresh_before", 2), ("min_remaining", 2)]),
            "origins[0].refresh_before: gives refresh_before 2.000 s; it must be at least min_remaining + 0.800 s = 2.800 s so a refresh has time to happen"
        );
    assert_eq!(
            message(&[("refresh_before", 5), ("min_remaining", 5)]),
            "origins[0].refresh_before: gives refresh_before 5.000 s; it must be at least min_remaining + 0.800 s = 5.800 s so a refresh has time to happen"
        );
    assert_eq!(
            message(&[("refresh_before", 0)]),
            format!(
                "origins[0].refresh_before: gives min_remaining 0.000 s, below the smallest that works (0.200 s): {too_late}{defaults}"
            )
        );
    assert_eq!(
            message(&[("expires_in", 4)]),
            format!(
                "origins[0].expires_in: gives min_remaining 0.160 s, below the smallest that works (0.200 s): {too_late}{defaults}"
            )
        );
    assert_eq!(
        message(&[("expires_in", 1)]),
        "origins[0].expires_in: must be between 2 and 604800 seconds (SigV4 limit), got 1"
    );
}

/// Length and count limits are inclusive: a key_prefix of exactly S3's
/// key limit, `MAX_ALLOW_QUERY` names and a name of
/// `MAX_QUERY_NAME_BYTES` are accepted.
#[test]
fn origin_limits_are_inclusive() {
    let at_limit = format!(
        "{}/",
        "k".repeat(crate::sigv4::canonical::MAX_KEY_BYTES - 1)
    );
    assert!(parse(&doc_with("key_prefix", json!(at_limit))).is_ok());
    let names: Vec<String> = (0..MAX_ALLOW_QUERY).map(|i| format!("q{i}")).collect();
    assert!(parse(&doc_with("allow_query", json!(names))).is_ok());
    let long = "q".repeat(MAX_QUERY_NAME_BYTES);
    assert!(parse(&doc_with("allow_query", json!([long]))).is_ok());
}

/// An IPv6 endpoint may have a port or nothing after its `]`; anything
/// else is refused.
#[test]
fn ipv6_endpoints_take_a_port_or_nothing() {
    let c = parse(&doc_with("endpoint", json!("http://[::1]"))).unwrap();
    assert_eq!(c.origins[0].authority, "[::1]");
    let e = parse(&doc_with("endpoint", json!("http://[::1]x"))).unwrap_err();
    assert_eq!(e.field, "origins[0].endpoint", "{e}");
    assert!(e.to_string().contains("junk after the IPv6 literal"), "{e}");
}

/// With `"source": "env"`, any one inline credential field is an error
/// (it would be silently ignored otherwise).
#[test]
fn env_source_refuses_each_inline_field() {
    for f in ["access_key_id", "secret_access_key", "session_token"] {
        let doc = json!({"credentials": {"source": "env", f: "x"}, "origins": [origin()]});
        let e = parse(&doc).err().unwrap_or_else(|| panic!("accepted {f}"));
        assert_eq!(e.field, "credentials", "{f}: {e}");
    }
}

/// `delivery` defaults to proxy; a redirect origin signs for
/// A redirect origin serves `.m3u8` and `.mpd` keys through Envoy by
/// default: its proxy twin signs for `endpoint`, under its own cache
/// identity, with the same name (route, cluster, metrics).
#[test]
fn redirect_origins_proxy_manifests_through_a_twin() {
    let mut raw = origin();
    set_path(&mut raw, "delivery", json!("redirect"));
    set_path(
        &mut raw,
        "public_endpoint",
        json!("https://cdn.example.com"),
    );
    set_path(&mut raw, "public_addressing", json!("virtual"));
    set_path(&mut raw, "cors_origins", json!(["https://app.example.com"]));
    let c = parse(&json!({ "origins": [raw.clone()] })).unwrap();
    let o = &c.origins[0];
    assert_eq!(o.proxied_suffixes, vec![".m3u8", ".mpd"]);
    let twin = o.proxied.as_deref().unwrap();
    assert_eq!(twin.delivery, Delivery::Proxy);
    assert_eq!(
        (twin.authority.as_str(), twin.url_path_prefix.as_str()),
        ("127.0.0.1:8333", "/media")
    );
    assert_eq!(
        (o.authority.as_str(), o.url_path_prefix.as_str()),
        ("media.cdn.example.com", "")
    );
    assert_eq!(twin.name, o.name);
    assert!(twin.location_base.is_empty() && twin.cors_origins.is_empty());
    assert!(twin.proxied_suffixes.is_empty() && twin.proxied.is_none());
    assert!(
        twin.identity_prefix.contains("http://127.0.0.1:8333/media"),
        "{}",
        twin.identity_prefix
    );
    assert_ne!(twin.identity_prefix, o.identity_prefix);
    // serving(): the twin for a manifest key (any case), the origin itself otherwise.
    for key in ["v/index.m3u8", "v/INDEX.M3U8", "v/manifest.mpd", ".mpd"] {
        assert!(std::ptr::eq(o.serving(key), twin), "{key}");
    }
    for key in ["v/seg0.ts", "v/index.m3u8x", "m3u8", "v/a.mp4", "v/mpd"] {
        assert!(std::ptr::eq(o.serving(key), o), "{key}");
    }
    // Configured: lower-cased; [] redirects every key (no twin).
    set_path(&mut raw, "proxied_suffixes", json!([".JSON", ".m3u8"]));
    let c = parse(&json!({ "origins": [raw.clone()] })).unwrap();
    assert_eq!(c.origins[0].proxied_suffixes, vec![".json", ".m3u8"]);
    assert!(std::ptr::eq(c.origins[0].serving("a.mpd"), &c.origins[0]));
    set_path(&mut raw, "proxied_suffixes", json!([]));
    let c = parse(&json!({ "origins": [raw.clone()] })).unwrap();
    assert!(c.origins[0].proxied.is_none());
    assert!(std::ptr::eq(c.origins[0].serving("a.m3u8"), &c.origins[0]));
    // A proxy origin has neither.
    let c = parse(&json!({ "origins": [origin()] })).unwrap();
    assert!(c.origins[0].proxied_suffixes.is_empty() && c.origins[0].proxied.is_none());
}

/// `proxied_suffixes` errors name the field (and the entry).
#[test]
fn proxied_suffixes_errors_name_the_field() {
    let redirect = |list: Value| {
        let mut raw = origin();
        set_path(&mut raw, "delivery", json!("redirect"));
        set_path(&mut raw, "proxied_suffixes", list);
        parse(&json!({ "origins": [raw] }))
    };
    let long = format!(".{}", "a".repeat(31));
    assert!(redirect(json!([long])).is_ok());
    assert!(redirect(json!([".a", ".b", ".c", ".d", ".e", ".f", ".g", ".h"])).is_ok());
    for (list, field) in [
        (json!([".m3u8", "m3u8"]), "origins[0].proxied_suffixes[1]"),
        (json!(["."]), "origins[0].proxied_suffixes[0]"),
        (json!([".a b"]), "origins[0].proxied_suffixes[0]"),
        (json!([".a/b"]), "origins[0].proxied_suffixes[0]"),
        (
            json!([format!(".{}", "a".repeat(32))]),
            "origins[0].proxied_suffixes[0]",
        ),
        (
            json!([".a", ".b", ".c", ".d", ".e", ".f", ".g", ".h", ".i"]),
            "origins[0].proxied_suffixes",
        ),
    ] {
        let e = redirect(list.clone()).unwrap_err();
        assert_eq!(e.field, field, "{list}: {e}");
    }
    let e = parse(&doc_with("proxied_suffixes", json!([".m3u8"]))).unwrap_err();
    assert_eq!(e.field, "origins[0].proxied_suffixes");
    assert!(e.reason.contains("only with delivery \"redirect\""), "{e}");
}

/// `response_content_types`: the safe defaults when absent; a list only
/// beside `allow_query: ["response-content-type"]`; entries named in errors.
#[test]
fn response_content_types_are_an_allow_list() {
    let c = parse(&json!({ "origins": [origin()] })).unwrap();
    assert_eq!(
        c.origins[0].response_content_types,
        overrides::DEFAULT_CONTENT_TYPES.to_vec()
    );
    let mut raw = origin();
    set_path(&mut raw, "allow_query", json!(["response-content-type"]));
    set_path(
        &mut raw,
        "response_content_types",
        json!(["Video/MP4", "text/html"]),
    );
    let c = parse(&json!({ "origins": [raw.clone()] })).unwrap();
    assert_eq!(
        c.origins[0].response_content_types,
        vec!["video/mp4", "text/html"]
    );
    let types: Vec<String> = (0..32).map(|i| format!("video/x{i}")).collect();
    set_path(&mut raw, "response_content_types", json!(types));
    assert!(parse(&json!({ "origins": [raw.clone()] })).is_ok());
    let too_many: Vec<String> = (0..33).map(|i| format!("video/x{i}")).collect();
    for (list, field) in [
        (json!(too_many), "origins[0].response_content_types"),
        (json!([]), "origins[0].response_content_types"),
        (
            json!(["video/mp4", "video"]),
            "origins[0].response_content_types[1]",
        ),
        (
            json!(["video/mp4; codecs=avc1"]),
            "origins[0].response_content_types[0]",
        ),
    ] {
        set_path(&mut raw, "response_content_types", list.clone());
        let e = parse(&json!({ "origins": [raw.clone()] })).unwrap_err();
        assert_eq!(e.field, field, "{list}: {e}");
    }
    let e = parse(&doc_with("response_content_types", json!(["video/mp4"]))).unwrap_err();
    assert_eq!(e.field, "origins[0].response_content_types");
    assert!(e.reason.contains("allow_query"), "{e}");
}

/// `public_endpoint` (default: the endpoint) with `public_addressing`
/// (default: `addressing`), and its URL identity follows the public host.
#[test]
fn redirect_signs_for_the_public_endpoint() {
    let c = parse(&json!({"origins": [origin()]})).unwrap();
    assert_eq!(c.origins[0].delivery, Delivery::Proxy);
    assert_eq!(c.origins[0].location_base, "");
    let c = parse(&doc_with("delivery", json!("redirect"))).unwrap();
    let o = &c.origins[0];
    assert_eq!(o.delivery, Delivery::Redirect);
    assert_eq!(o.location_base, "http://127.0.0.1:8333");
    assert_eq!(
        (o.authority.as_str(), o.url_path_prefix.as_str()),
        ("127.0.0.1:8333", "/media")
    );
    let mut raw = origin();
    for (k, v) in [
        ("delivery", json!("redirect")),
        ("public_endpoint", json!("https://CDN.example.com:443")),
        ("public_addressing", json!("virtual")),
        ("cors_origins", json!(["https://App.example.com:443", "*"])),
    ] {
        set_path(&mut raw, k, v);
    }
    let c = parse(&json!({"origins": [raw]})).unwrap();
    let o = &c.origins[0];
    assert_eq!(o.location_base, "https://media.cdn.example.com");
    assert_eq!(
        (o.authority.as_str(), o.url_path_prefix.as_str()),
        ("media.cdn.example.com", "")
    );
    assert_eq!(
        o.endpoint.host, "127.0.0.1",
        "the internal endpoint is kept"
    );
    assert_eq!(o.cors_origins, ["https://app.example.com", "*"]);
    assert!(
        o.identity_prefix
            .contains("https://media.cdn.example.com\n"),
        "{}",
        o.identity_prefix
    );
    let proxy = parse(&json!({"origins": [origin()]})).unwrap();
    assert_ne!(o.identity_prefix, proxy.origins[0].identity_prefix);
    // public_addressing defaults to addressing.
    let mut raw = origin();
    set_path(&mut raw, "endpoint", json!("http://s3.local"));
    set_path(&mut raw, "addressing", json!("virtual"));
    set_path(&mut raw, "delivery", json!("redirect"));
    set_path(&mut raw, "public_endpoint", json!("https://s3.example.com"));
    let c = parse(&json!({"origins": [raw]})).unwrap();
    assert_eq!(c.origins[0].location_base, "https://media.s3.example.com");
}

/// Every redirect setting is validated naming its field, and the
/// redirect-only settings are refused on a proxy origin.
#[test]
fn redirect_settings_errors_name_the_field() {
    let redirect = |pairs: &[(&str, Value)]| {
        let mut raw = origin();
        set_path(&mut raw, "delivery", json!("redirect"));
        for (k, v) in pairs {
            set_path(&mut raw, k, v.clone());
        }
        parse(&json!({"origins": [raw]})).map(|_| ()).unwrap_err()
    };
    for (pairs, field, needle) in [
        (
            vec![("public_endpoint", json!("ftp://cdn"))],
            "origins[0].public_endpoint",
            "http:// or https://",
        ),
        (
            vec![("public_endpoint", json!("https://cdn/x"))],
            "origins[0].public_endpoint",
            "no path",
        ),
        (
            vec![("public_endpoint", json!("https://cdn:0"))],
            "origins[0].public_endpoint",
            "invalid port",
        ),
        (
            vec![("public_addressing", json!("virtual"))],
            "origins[0].public_addressing",
            "IP address",
        ),
        (
            vec![
                ("bucket", json!("my.media")),
                ("public_endpoint", json!("https://cdn")),
                ("public_addressing", json!("virtual")),
            ],
            "origins[0].public_addressing",
            "dotted bucket",
        ),
        (
            vec![
                ("endpoint", json!("http://s3.local")),
                ("addressing", json!("virtual")),
                ("public_endpoint", json!("https://10.0.0.5")),
            ],
            "origins[0].public_endpoint",
            "IP address",
        ),
        (
            vec![("public_addressing", json!("sideways"))],
            "origins[0].public_addressing",
            "sideways",
        ),
        (
            vec![("cors_origins", json!(["https://app/"]))],
            "origins[0].cors_origins[0]",
            "browser origin",
        ),
        (
            vec![("cors_origins", json!(["*", "app.example.com"]))],
            "origins[0].cors_origins[1]",
            "browser origin",
        ),
        (
            vec![("cors_origins", json!(vec!["*"; MAX_CORS_ORIGINS + 1]))],
            "origins[0].cors_origins",
            "at most 16",
        ),
        (
            vec![("delivery", json!("bounce"))],
            "origins[0].delivery",
            "bounce",
        ),
    ] {
        let e = redirect(&pairs);
        assert_eq!(e.field, field, "{pairs:?}: {e}");
        assert!(e.to_string().contains(needle), "{pairs:?}: {e}");
    }
    assert!(parse(&doc_with("delivery", json!("redirect"))).is_ok());
    // The bound is inclusive: 16 origins are accepted.
    let mut raw = origin();
    set_path(&mut raw, "delivery", json!("redirect"));
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("https://app{i}.example.com"))
        .collect();
    set_path(&mut raw, "cors_origins", json!(sixteen));
    assert_eq!(
        parse(&json!({"origins": [raw]})).unwrap().origins[0]
            .cors_origins
            .len(),
        16
    );
    for (k, v) in [
        ("public_endpoint", json!("https://cdn.example.com")),
        ("public_addressing", json!("path")),
        ("cors_origins", json!(["*"])),
    ] {
        let e = parse(&doc_with(k, v)).unwrap_err();
        assert_eq!(e.field, format!("origins[0].{k}"), "{e}");
        assert!(e.reason.contains("only with delivery \"redirect\""), "{e}");
    }
}

#[test]
fn virtual_addressing_and_default_ports() {
    let mut o = origin();
    set_path(&mut o, "addressing", json!("virtual"));
    set_path(&mut o, "endpoint", json!("http://s3.local:8333"));
    let c = parse(&json!({"origins": [o]})).unwrap();
    assert_eq!(c.origins[0].authority, "media.s3.local:8333");
    assert_eq!(c.origins[0].url_path_prefix, "");
    let c = parse(&doc_with("endpoint", json!("https://S3.Example.com:443/"))).unwrap();
    assert_eq!(c.origins[0].authority, "s3.example.com");
    let c = parse(&doc_with("endpoint", json!("http://[::1]:9000"))).unwrap();
    assert_eq!(c.origins[0].authority, "[::1]:9000");
}

#[test]
fn env_credentials_are_read_through_the_lookup() {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKID".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
        _ => None,
    };
    let c = Config::parse(json!({"origins": [origin()]}).to_string().as_bytes(), &env).unwrap();
    assert_eq!(c.signer.unwrap().access_key_id(), "AKID");
}

/// Every validation error, and the field it must name.
/// A refused credentials value is never quoted back in the error (which
/// Envoy logs and `envoy-presign-config check` prints).
#[test]
fn credential_values_are_never_quoted_in_errors() {
    for doc in [
        r#"{"credentials":"AKID:wJalrSECRETvalue","origins":[]}"#,
        r#"{"credentials":{"source":"inline","access_key_id":"AKID","secret_access_key":12345678},"origins":[]}"#,
        r#"{"credentials":{"source":"inline","access_key_id":"AKID","secret_access_key":"wJalrSECRETvalue","session_token":["wJalrSECRETvalue"]},"origins":[]}"#,
    ] {
        let err = Config::parse(doc.as_bytes(), &|_| None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("credentials"), "{text}");
        assert!(
            !text.contains("SECRET") && !text.contains("12345678"),
            "{text}"
        );
        assert!(text.contains("not shown"), "{text}");
    }
}

#[test]
fn every_error_names_its_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"origins": []}), "origins"),
        (doc_with("name", json!("")), "origins[0].name"),
        (doc_with("name", json!("has space")), "origins[0].name"),
        (doc_with("name", json!("_unmatched")), "origins[0].name"),
        (
            doc_with("refresh_before", json!(3600)),
            "origins[0].refresh_before",
        ),
        (
            doc_with("min_remaining", json!(721)),
            "origins[0].min_remaining",
        ),
        (
            json!({"cache": {"max_entries": 0}, "origins": [origin()]}),
            "cache.max_entries",
        ),
        (
            json!({"cache": {"scan_interval": 0}, "origins": [origin()]}),
            "cache.scan_interval",
        ),
        (
            doc_with("match.prefix", json!("media/")),
            "origins[0].match.prefix",
        ),
        (
            doc_with("match.prefix", json!("/me%64ia/")),
            "origins[0].match.prefix",
        ),
        // docs/configuration.md, config table: match.prefix is plain ASCII, no `?` or
        // `#` (and no space, control or non-ASCII byte).
        (
            doc_with("match.prefix", json!("/media?/")),
            "origins[0].match.prefix",
        ),
        (
            doc_with("match.prefix", json!("/media#/")),
            "origins[0].match.prefix",
        ),
        (
            doc_with("match.prefix", json!("/my media/")),
            "origins[0].match.prefix",
        ),
        (
            doc_with("match.prefix", json!("/m\u{e9}dia/")),
            "origins[0].match.prefix",
        ),
        (
            doc_with("match.prefix", json!("/media\t/")),
            "origins[0].match.prefix",
        ),
        (doc_with("match.host", json!("")), "origins[0].match.host"),
        (
            doc_with("match.host", json!("a b")),
            "origins[0].match.host",
        ),
        (
            doc_with("match.host", json!("h:0")),
            "origins[0].match.host",
        ),
        (
            doc_with("match.host", json!("h:99999")),
            "origins[0].match.host",
        ),
        (
            doc_with("key_prefix", json!("videos")),
            "origins[0].key_prefix",
        ),
        (
            doc_with("addressing", json!("virtual")),
            "origins[0].addressing",
        ),
        (
            doc_with("min_remaining", json!(0)),
            "origins[0].min_remaining",
        ),
        (
            doc_with("refresh_before", json!(0)),
            "origins[0].refresh_before",
        ),
        (doc_with("expires_in", json!(1)), "origins[0].expires_in"),
        (
            doc_with(
                "allow_query",
                json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
            ),
            "origins[0].allow_query",
        ),
        (
            doc_with("allow_query", json!(["q".repeat(129)])),
            "origins[0].allow_query[0]",
        ),
        (
            doc_with("endpoint", json!("ftp://x")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://h/path")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://u@h")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://h:0")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://h:99999")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://h_x")),
            "origins[0].endpoint",
        ),
        (
            doc_with("endpoint", json!("http://[::1")),
            "origins[0].endpoint",
        ),
        (doc_with("bucket", json!("ab")), "origins[0].bucket"),
        (doc_with("bucket", json!("Upper")), "origins[0].bucket"),
        (doc_with("bucket", json!("-dash")), "origins[0].bucket"),
        (doc_with("bucket", json!("a/b/c")), "origins[0].bucket"),
        (doc_with("region", json!("")), "origins[0].region"),
        (doc_with("region", json!("US East")), "origins[0].region"),
        (doc_with("service", json!("")), "origins[0].service"),
        (
            doc_with("strip_prefix", json!("/other/")),
            "origins[0].strip_prefix",
        ),
        (
            doc_with("key_prefix", json!("a/../b/")),
            "origins[0].key_prefix",
        ),
        (
            doc_with("key_prefix", json!("k".repeat(1025))),
            "origins[0].key_prefix",
        ),
        (doc_with("expires_in", json!(0)), "origins[0].expires_in"),
        (
            doc_with("expires_in", json!(604_801)),
            "origins[0].expires_in",
        ),
        (
            doc_with("allow_query", json!(["X-Amz-Signature"])),
            "origins[0].allow_query[0]",
        ),
        (
            doc_with("allow_query", json!(["versionId", ""])),
            "origins[0].allow_query[1]",
        ),
        (
            doc_with("allow_query", json!(["a b"])),
            "origins[0].allow_query[0]",
        ),
        (json!({"origins": [origin(), origin()]}), "origins[1].name"),
        (
            json!({"credentials": {"source": "vault"}, "origins": [origin()]}),
            "credentials.source",
        ),
        (
            json!({"credentials": {"source": "inline", "secret_access_key": "s"}, "origins": [origin()]}),
            "credentials.access_key_id",
        ),
        (
            json!({"credentials": {"source": "inline", "access_key_id": "a"}, "origins": [origin()]}),
            "credentials.secret_access_key",
        ),
        (
            json!({"credentials": {"source": "env", "access_key_id": "a"}, "origins": [origin()]}),
            "credentials",
        ),
    ];
    for (doc, field) in cases {
        let err = parse(&doc)
            .err()
            .unwrap_or_else(|| panic!("accepted: {doc}"));
        assert_eq!(err.field, field, "{doc} gave {err}");
        assert!(err.to_string().starts_with(field));
    }
}

#[test]
fn virtual_https_dotted_bucket_is_refused() {
    let mut o = origin();
    set_path(&mut o, "bucket", json!("my.bucket"));
    set_path(&mut o, "addressing", json!("virtual"));
    set_path(&mut o, "endpoint", json!("https://s3.amazonaws.com"));
    let err = parse(&json!({"origins": [o]})).unwrap_err();
    assert_eq!(err.field, "origins[0].addressing");
}

#[test]
fn json_errors_name_the_field_in_the_message() {
    for (doc, needle) in [
        (doc_with("surprise", json!(1)), "surprise"),
        (doc_with("addressing", json!("sideways")), "sideways"),
        (doc_with("on_error", json!("explode")), "explode"),
        (doc_with("expires_in", json!(-1)), "origins[0].expires_in"),
        (doc_with("region", json!(5)), "origins[0].region"),
        (json!({"origins": [{"name": "x"}]}), "match"),
        (json!({}), "origins"),
    ] {
        let err = parse(&doc).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(Config::parse(b"not json", &no_env).is_err());
    assert!(Config::parse(b"", &no_env).is_err());
}

#[test]
fn secrets_never_appear_in_errors() {
    let doc = json!({"credentials": {"source": "inline", "access_key_id": "AKID",
            "secret_access_key": "TOPSECRET", "bogus": 1}, "origins": [origin()]});
    let err = parse(&doc).unwrap_err().to_string();
    assert!(!err.contains("TOPSECRET"), "{err}");
}

#[test]
fn match_origin_by_prefix_and_host() {
    let mut a = origin();
    set_path(&mut a, "match.host", json!("Media.Example.com"));
    let mut b = origin();
    set_path(&mut b, "name", json!("fallback"));
    let c = parse(&json!({"origins": [a, b]})).unwrap();
    let name = |auth: &str, path: &str| {
        c.match_origin(auth, path.as_bytes())
            .map(|o| o.name.as_str())
    };
    assert_eq!(name("media.example.com:8080", "/media/x"), Some("media"));
    assert_eq!(name("other", "/media/x"), Some("fallback"));
    assert_eq!(name("other", "/media"), None);
    assert_eq!(name("other", "/MEDIA/x"), None);
    // A trailing dot names the same host.
    assert_eq!(name("media.example.com.", "/media/x"), Some("media"));
    assert_eq!(name("media.example.com.:80", "/media/x"), Some("media"));
    assert_eq!(split_authority("[::1]:80"), ("[::1]", Some("80")));
    assert_eq!(split_authority("h"), ("h", None));
    assert_eq!(split_authority("h:"), ("h:", None));
}

#[test]
fn match_host_with_a_port_and_a_trailing_dot() {
    let mut a = origin();
    set_path(&mut a, "match.host", json!("CDN.example.com.:8080"));
    let c = parse(&json!({"origins": [a]})).unwrap();
    let hit = |auth: &str| c.match_origin(auth, b"/media/x").is_some();
    assert!(hit("cdn.example.com:8080"));
    assert!(hit("cdn.example.com.:8080"));
    assert!(!hit("cdn.example.com:8081"));
    assert!(!hit("cdn.example.com"), "a configured port must be named");
    let mut v6 = origin();
    set_path(&mut v6, "match.host", json!("[::1]:9000"));
    let c = parse(&json!({"origins": [v6]})).unwrap();
    assert!(c.match_origin("[::1]:9000", b"/media/x").is_some());
    assert!(c.match_origin("[::1]:9001", b"/media/x").is_none());
}

#[test]
fn non_utf8_paths_match_by_their_bytes() {
    let c = parse(&json!({"origins": [origin()]})).unwrap();
    assert!(c.match_origin("h", b"/media/\xe9").is_some());
    assert!(c.match_origin("h", b"/static/logo-\xe9.png").is_none());
}

#[test]
fn smallest_timings_that_work_are_accepted_and_named() {
    // The defaults at the smallest expires_in they allow (5 s): 1 s refresh, 200 ms minimum.
    let c = parse(&doc_with("expires_in", json!(5))).unwrap();
    let p = c.origins[0].policy;
    assert_eq!((p.refresh_before_ms, p.min_remaining_ms), (1000, 200));
    // Explicit whole seconds: 1 s minimum, 2 s refresh, 3 s lifetime.
    let mut o = origin();
    set_path(&mut o, "expires_in", json!(3));
    set_path(&mut o, "refresh_before", json!(2));
    set_path(&mut o, "min_remaining", json!(1));
    assert!(parse(&json!({"origins": [o.clone()]})).is_ok());
    for (field, value, named) in [
        ("min_remaining", 0, "min_remaining"),
        ("refresh_before", 1, "refresh_before"),
        ("expires_in", 2, "refresh_before"),
    ] {
        let mut bad = o.clone();
        set_path(&mut bad, field, json!(value));
        let err = parse(&json!({"origins": [bad]})).unwrap_err();
        assert_eq!(
            err.field,
            format!("origins[0].{named}"),
            "{field}={value}: {err}"
        );
    }
    // With the defaults, 4 s leaves too little: named under expires_in.
    let err = parse(&doc_with("expires_in", json!(4))).unwrap_err();
    assert_eq!(err.field, "origins[0].expires_in", "{err}");
    assert!(err.to_string().contains("defaults to"), "{err}");
    // The absolute smallest: 2 s with refresh_before 1.
    let mut two = origin();
    set_path(&mut two, "expires_in", json!(2));
    set_path(&mut two, "refresh_before", json!(1));
    assert!(parse(&json!({"origins": [two]})).is_ok());
    // A 1 s signing window is the smallest, and accepted.
    let mut one_s_window = o;
    set_path(&mut one_s_window, "expires_in", json!(10));
    set_path(&mut one_s_window, "refresh_before", json!(9));
    assert!(parse(&json!({"origins": [one_s_window]})).is_ok());
}

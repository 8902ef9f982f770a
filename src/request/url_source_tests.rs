use super::*;
use crate::testing::{get_object, host_at, FakeStore};
use serde_json::json;
use std::time::UNIX_EPOCH;

fn config(cache: serde_json::Value, secret: &str) -> Config {
    let doc = json!({
        "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": secret},
        "cache": cache,
        "origins": [{"name": "media", "match": {"prefix": "/m/"}, "endpoint": "http://h:9000",
                     "bucket": "media", "region": "us-east-1", "expires_in": 600}],
    });
    Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap()
}

fn get(c: &Config, store: &FakeStore, key: &str, now_s: u64) -> (String, UrlReport) {
    let mut report = UrlReport::default();
    let host = host_at(store, now_s, Some(&SystemTime::now));
    let p = presigned_path(c, &host, &c.origins[0], get_object(key), &mut report).unwrap();
    (p, report)
}

/// A redirect's `max-age` comes from `expires_at_ms`: the aligned
/// signing time plus `expires_in`, the same on a miss, a hit and with the
/// cache off (600 s lifetime, a 480 s window: signed at 960 s for 1000 s).
#[test]
fn the_report_says_when_the_url_expires() {
    for cache in [json!({}), json!({"enabled": false})] {
        let c = config(cache.clone(), "s");
        let store = FakeStore::default();
        let (_, miss) = get(&c, &store, "a", 1000);
        let (_, hit) = get(&c, &store, "a", 1100);
        assert_eq!(miss.expires_at_ms, Some(1_560_000), "{cache}");
        assert_eq!(hit.expires_at_ms, Some(1_560_000), "{cache}");
    }
    let c = config(json!({}), "s");
    let store = FakeStore::default();
    let (_, hit) = get(&c, &store, "a", 1000);
    assert_eq!(hit.fresh_until_ms, Some(1_560_000 - 120_000));
}

/// The identity of `GET a b` under a configuration that differs from the
/// base one only by `credentials`, `cache` and the origin fields in
/// `origin` (each replacing the base value).
fn identity_with(
    credentials: serde_json::Value,
    cache: serde_json::Value,
    origin: serde_json::Value,
) -> String {
    let mut o = json!({"name": "media", "match": {"prefix": "/m/"}, "endpoint": "http://h:9000",
                           "bucket": "media", "region": "us-east-1", "expires_in": 600});
    for (k, v) in origin.as_object().unwrap() {
        o[k] = v.clone();
    }
    let doc = json!({"credentials": credentials, "cache": cache, "origins": [o]});
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    cache_identity(
        &c.origins[0],
        c.signer.as_ref().unwrap(),
        Method::Get,
        "a b",
        &[],
    )
}

/// docs/cache.md, "What a URL is cached under": the identity holds origin
/// name, endpoint, bucket, region, service, the expiry settings, the access
/// key id and a fingerprint of the secret and session token, the method,
/// the key and the query; the secret itself is never stored. Every setting
/// that changes a URL is changed alone here, and every pair of identities
/// must differ (a missed field would serve one URL for another).
#[test]
fn identity_covers_everything_that_changes_the_url() {
    const SECRET: &str = "SECRET-one-9f3c";
    const TOKEN: &str = "TOKEN-one-77ab";
    let creds = |id: &str, secret: &str, token: Option<&str>| {
        json!({"source": "inline", "access_key_id": id, "secret_access_key": secret,
                   "session_token": token})
    };
    let base_creds = creds("AKID", SECRET, None);
    let with = |origin: serde_json::Value| identity_with(base_creds.clone(), json!({}), origin);
    let c = config(json!({}), SECRET);
    let (o, s) = (&c.origins[0], c.signer.as_ref().unwrap());
    let ids: Vec<(&str, String)> = vec![
        ("base", with(json!({}))),
        ("method", cache_identity(o, s, Method::Head, "a b", &[])),
        ("key", cache_identity(o, s, Method::Get, "a+b", &[])),
        (
            "query",
            cache_identity(
                o,
                s,
                Method::Get,
                "a b",
                &[("versionId".into(), "1".into())],
            ),
        ),
        (
            "secret",
            identity_with(creds("AKID", "SECRET-two-1d0e", None), json!({}), json!({})),
        ),
        (
            "access_key_id",
            identity_with(creds("AKID2", SECRET, None), json!({}), json!({})),
        ),
        (
            "session_token",
            identity_with(creds("AKID", SECRET, Some(TOKEN)), json!({}), json!({})),
        ),
        (
            "another session_token",
            identity_with(
                creds("AKID", SECRET, Some("TOKEN-two-e5c1")),
                json!({}),
                json!({}),
            ),
        ),
        (
            "align",
            identity_with(base_creds.clone(), json!({"align": false}), json!({})),
        ),
        ("region", with(json!({"region": "eu-west-1"}))),
        ("service", with(json!({"service": "s3-object-lambda"}))),
        ("endpoint host", with(json!({"endpoint": "http://h2:9000"}))),
        ("endpoint port", with(json!({"endpoint": "http://h:9001"}))),
        (
            "endpoint scheme",
            with(json!({"endpoint": "https://h:9000"})),
        ),
        ("bucket", with(json!({"bucket": "media2"}))),
        ("addressing", with(json!({"addressing": "virtual"}))),
        ("origin name", with(json!({"name": "media2"}))),
        ("expires_in", with(json!({"expires_in": 700}))),
        ("refresh_before", with(json!({"refresh_before": 100}))),
        ("min_remaining", with(json!({"min_remaining": 10}))),
    ];
    assert_eq!(ids[0].1, cache_identity(o, s, Method::Get, "a b", &[]));
    for (i, (a, ida)) in ids.iter().enumerate() {
        for (b, idb) in ids.iter().skip(i + 1) {
            assert_ne!(ida, idb, "{a} and {b} share an identity");
        }
    }
    // Nothing secret is in any identity, only the fingerprint.
    for (what, id) in &ids {
        for secret in [
            SECRET,
            "SECRET-two-1d0e",
            TOKEN,
            "TOKEN-two-e5c1",
            "SECRET",
            "TOKEN",
        ] {
            assert!(!id.contains(secret), "{what}: {secret} in {id:?}");
        }
    }
}

#[test]
fn cached_url_is_reused_then_replaced_after_the_window() {
    let c = config(json!({"max_entries": 4}), "s1");
    let store = FakeStore::default();
    let t = 1_700_000_000;
    let (a, r) = get(&c, &store, "k", t);
    assert_eq!(r.outcome, Some(Outcome::Miss));
    let (b, r) = get(&c, &store, "k", t + 1);
    assert_eq!((a.as_str(), r.outcome), (b.as_str(), Some(Outcome::Hit)));
    // The window is expires_in - refresh_before = 480 s.
    assert_eq!(
        r.fresh_until_ms,
        Some((t - t % 480 + 480) * 1000),
        "fresh until the window ends"
    );
    let (d, r) = get(&c, &store, "k", t - t % 480 + 480);
    assert_eq!(r.outcome, Some(Outcome::Refreshed));
    assert_ne!(a, d);
    assert!(store
        .data
        .borrow()
        .keys()
        .all(|k| k.starts_with("envoy_presign.cache.")));
    for i in 0..100 {
        get(&c, &store, &format!("key-{i}"), t);
    }
    assert!(store.data.borrow().len() <= 4, "bounded by max_entries");
}

/// docs/cache.md, URL cache: "the filter never writes more shared-data keys
/// than `max_entries`, plus one (`envoy_presign.scan_lease`)". Many
/// requests (misses, hits, refreshes over several windows, GET and HEAD,
/// queries) and two workers' scan ticks share one store with
/// `max_entries: 4`; the keys ever written must be among
/// `envoy_presign.cache.0..3` and `envoy_presign.scan_lease`.
#[test]
fn requests_and_scans_write_only_the_slots_and_the_scan_lease() {
    use crate::cache::scan::{ScanTick, Scanner};
    let doc = json!({
        "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
        "cache": {"max_entries": 4, "scan_interval": 2},
        "origins": [{"name": "media", "match": {"prefix": "/m/"}, "endpoint": "http://h:9000",
                     "bucket": "media", "region": "us-east-1", "expires_in": 10,
                     "allow_query": ["versionId"]}],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let store = FakeStore::default();
    let min_remaining = |name: &str| {
        c.origins
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.policy.min_remaining_ms)
    };
    let mut workers = [Scanner::default(), Scanner::default()];
    let mut passes = 0;
    let mut outcomes = Vec::new();
    let t0_ms = 1_700_000_000_000u64;
    for i in 0..1000u64 {
        // 25 ms apart: 25 s in all, two and a half 10 s lifetimes.
        let now_ms = t0_ms + i * 25;
        // Mostly one hot object (hits, refreshes), one request in ten
        // for one of many others (misses, evictions).
        let cold = i % 10 == 0;
        let key = if cold { format!("k{i}") } else { "hot".into() };
        let query = [("versionId".to_string(), (i % 3).to_string())];
        let req = ObjectRequest {
            method: if cold && i % 20 == 0 {
                Method::Head
            } else {
                Method::Get
            },
            key: &key,
            query: if cold && i % 30 == 0 { &query } else { &[] },
        };
        let host = Host {
            store: &store,
            now: UNIX_EPOCH + Duration::from_millis(now_ms),
            clock: None,
            keys: None,
        };
        let mut report = UrlReport::default();
        presigned_path(&c, &host, &c.origins[0], req, &mut report).unwrap();
        outcomes.extend(report.outcome);
        if i % 40 == 0 {
            // A tick a second on each worker, as the filter's on_tick.
            for (owner, scanner) in (1u64..).zip(workers.iter_mut()) {
                let tick = ScanTick {
                    owner,
                    now_ms,
                    hold_ms: 3000,
                    max_entries: c.cache.max_entries,
                    scan_interval_secs: c.cache.scan_interval_secs,
                    min_remaining: &min_remaining,
                };
                passes += usize::from(scanner.tick(&store, &tick).is_some());
            }
        }
    }
    assert!(passes > 1, "the scan ran: {passes} passes");
    for o in [Outcome::Miss, Outcome::Hit, Outcome::Refreshed] {
        assert!(outcomes.contains(&o), "no {o:?}");
    }
    let allowed: Vec<String> = (0..4)
        .map(slot_key)
        .chain([crate::cache::scan::SCAN_LEASE_KEY.to_string()])
        .collect();
    let written: Vec<String> = store.data.borrow().keys().cloned().collect();
    for k in &written {
        assert!(allowed.contains(k), "{k} is not a slot or the lease");
    }
    assert_eq!(written.len(), 5, "all four slots and the lease were used");
}

/// The largest shared entry a request can make: the longest key and allowed query,
/// with or without a session token.
fn largest_entry(session_token: Option<&str>) -> usize {
    let doc = json!({
        "credentials": {"source": "inline", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                        "secret_access_key": "s", "session_token": session_token},
        "origins": [{"name": "media-origin-with-a-long-name", "match": {"prefix": "/m/"},
                     "endpoint": "https://s3.dualstack.ap-southeast-2.amazonaws.com",
                     "bucket": "b".repeat(63), "region": "ap-southeast-2",
                     "expires_in": 604_800, "allow_query": ["versionId"]}],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let key = "\u{e9}".repeat(512); // 1024 bytes, every one encoded as %XX
    let raw = format!("versionId={}", "+".repeat(679));
    let query = crate::sigv4::canonical::allowed_query(&raw, &c.origins[0].allow_query).unwrap();
    let store = FakeStore::default();
    let host = Host {
        store: &store,
        now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        clock: Some(&SystemTime::now),
        keys: None,
    };
    let req = ObjectRequest {
        method: Method::Head,
        key: &key,
        query: &query,
    };
    let mut report = UrlReport::default();
    presigned_path(&c, &host, &c.origins[0], req, &mut report).unwrap();
    let stored = store
        .data
        .borrow()
        .values()
        .map(|(v, _)| v.len())
        .max()
        .unwrap();
    stored
}

/// docs/cache.md's bound on one shared entry: 2 × (3,072 + 2,048) + 1 KiB, plus
/// 3 × the session token's length.
#[test]
fn the_largest_request_fits_the_documented_entry_bound() {
    let bound = 2 * (3072 + 2048) + 1024;
    let stored = largest_entry(None);
    assert!(
        stored > 2 * (3072 + 2037),
        "the worst case was built: {stored}"
    );
    assert!(stored <= bound, "{stored}");
    // A session token adds at most 3 x its length (every byte %-encoded in the
    // presigned query; its fingerprint only in the identity).
    let token = "/+=".repeat(400);
    let with_token = largest_entry(Some(&token));
    assert!(
        with_token > stored + token.len(),
        "the token is in the entry"
    );
    assert!(with_token <= bound + 3 * token.len(), "{with_token}");
}

#[test]
fn signing_is_timed_only_with_a_clock() {
    let c = config(json!({"enabled": false}), "s1");
    let store = FakeStore::default();
    let (_, timed) = get(&c, &store, "k", 1_700_000_000);
    assert_eq!((timed.signed, timed.sign_us.is_some()), (1, true));
    let mut report = UrlReport::default();
    let host = host_at(&store, 1_700_000_000, None);
    let req = get_object("k");
    presigned_path(&c, &host, &c.origins[0], req, &mut report).unwrap();
    assert_eq!(
        (report.signed, report.sign_us),
        (1, None),
        "signed, untimed"
    );
}

/// A URL served at the very instant it becomes due (here while another
/// request holds the refresh claim) is not fresh: the worker must not keep
/// it in its local cache.
#[test]
fn a_url_due_right_now_is_not_fresh() {
    let c = config(json!({"align": false}), "s1");
    let store = FakeStore::default();
    let t0 = 1_700_000_000;
    let (first, r) = get(&c, &store, "k", t0);
    assert_eq!(r.fresh_until_ms, Some((t0 + 600 - 120) * 1000));
    for (_, (bytes, _)) in store.data.borrow_mut().iter_mut() {
        let mut e = crate::cache::Entry::decode(bytes).unwrap();
        e.claim_until_ms = u64::MAX;
        *bytes = e.encode();
    }
    let (path, r) = get(&c, &store, "k", t0 + 600 - 120);
    assert_eq!((path, r.outcome), (first, Some(Outcome::HitRefreshing)));
    assert_eq!(r.fresh_until_ms, None);
}

/// The reported signing time is what the clock measured around the
/// signing: a clock advancing 250 µs per read gives 250 µs.
#[test]
fn signing_time_is_measured_with_the_clock() {
    let c = config(json!({"enabled": false}), "s1");
    let store = FakeStore::default();
    let reads = std::cell::Cell::new(0u64);
    let clock = || {
        reads.set(reads.get() + 1);
        UNIX_EPOCH + Duration::from_micros(1_000_000 + 250 * reads.get())
    };
    let host = host_at(&store, 1_700_000_000, Some(&clock));
    let req = get_object("k");
    let mut report = UrlReport::default();
    presigned_path(&c, &host, &c.origins[0], req, &mut report).unwrap();
    assert_eq!((report.signed, report.sign_us), (1, Some(250)));
}

#[test]
fn disabled_cache_signs_every_request_without_the_store() {
    let c = config(json!({"enabled": false}), "s1");
    let store = FakeStore::default();
    let (_, r) = get(&c, &store, "k", 1_700_000_000);
    assert_eq!((r.outcome, r.signed), (None, 1));
    assert!(store.data.borrow().is_empty());
}

#[test]
fn missing_credentials_fall_back() {
    let doc = json!({"origins": [{"name": "m", "match": {"prefix": "/"}, "endpoint": "http://h",
            "bucket": "bkt", "region": "r"}]});
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let mut report = UrlReport::default();
    let host = Host {
        store: &FakeStore::default(),
        now: UNIX_EPOCH,
        clock: None,
        keys: None,
    };
    let req = ObjectRequest {
        method: Method::Get,
        key: "k",
        query: &[],
    };
    let r = presigned_path(&c, &host, &c.origins[0], req, &mut report);
    assert_eq!(r, Err(FallbackReason::NoCredentials));
}

/// `X-Amz-Expires` of a presigned path, in seconds.
fn amz_expires(path: &str) -> u64 {
    let rest = path.split("X-Amz-Expires=").nth(1).unwrap();
    rest.split('&').next().unwrap().parse().unwrap()
}

/// `presigned_path` for GET `key` at `now_ms` with this worker's `keys`.
fn get_with(
    c: &Config,
    store: &FakeStore,
    key: &str,
    now_ms: u64,
    keys: Keys<'_>,
) -> (Result<String, FallbackReason>, UrlReport) {
    let host = Host {
        store,
        now: UNIX_EPOCH + Duration::from_millis(now_ms),
        clock: None,
        keys: Some(keys),
    };
    let mut report = UrlReport::default();
    let r = presigned_path(c, &host, &c.origins[0], get_object(key), &mut report);
    (r, report)
}

fn temporary(id: &str, expires_at_ms: u64) -> Signer {
    Signer::new(&crate::sigv4::credentials::Credentials::temporary(
        id.into(),
        "tmp-secret".into(),
        Some("tmp-token".into()),
        expires_at_ms,
    ))
}

fn keys(signer: Option<&Signer>) -> Keys<'_> {
    Keys {
        signer,
        margin_ms: 60_000,
        retry_after_secs: 7,
    }
}

/// Issue 10: a presigned URL dies with the temporary credentials that
/// signed it, so its `X-Amz-Expires` is capped at what they have left
/// less the margin, in whole seconds: min(expires_in, not_after −
/// signed_at), with and without the cache (aligned or not), in the URL,
/// the report and the cached entry alike. Credentials with time to spare
/// leave `expires_in` (600 s) alone.
#[test]
fn urls_never_outlive_their_credentials() {
    let t = 1_700_000_000_000u64;
    let window_start = t - t % 480_000;
    for (cache, signed_at) in [
        (json!({"align": false}), t + 7_000),
        (json!({}), window_start),
        (json!({"enabled": false, "align": false}), t + 7_000),
    ] {
        let c = config(cache.clone(), "s");
        let now = t + 7_250;
        assert_eq!(c.origins[0].policy.signing_time_ms(now), signed_at);
        // Expiring 300.5 s from now: 240.5 s before the margin.
        let expiring = temporary("ASIA1", now + 300_500);
        let store = FakeStore::default();
        let (path, report) = get_with(&c, &store, "k", now, keys(Some(&expiring)));
        let path = path.unwrap();
        let not_after = now + 300_500 - 60_000;
        let want_secs = (not_after - signed_at) / 1000;
        assert_eq!(amz_expires(&path), want_secs, "{cache}");
        assert!(want_secs < 600);
        assert_eq!(
            report.expires_at_ms,
            Some(signed_at + want_secs * 1000),
            "{cache}"
        );
        assert!(report.expires_at_ms.unwrap() <= not_after);
        if c.cache.enabled {
            let stored: Vec<crate::cache::Entry> = store
                .data
                .borrow()
                .values()
                .map(|(v, _)| crate::cache::Entry::decode(v).unwrap())
                .collect();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].expires_at_ms, signed_at + want_secs * 1000);
            assert_eq!(stored[0].path, path);
        }
        // Credentials that outlast the URL do not shorten it.
        let lasting = temporary("ASIA2", now + 3_600_000);
        let (path, _) = get_with(&c, &FakeStore::default(), "k", now, keys(Some(&lasting)));
        assert_eq!(amz_expires(&path.unwrap()), 600, "{cache}");
        // Nor do static keys held as a worker's keys.
        let fixed = Signer::new(&crate::sigv4::credentials::Credentials::new(
            "AKID".into(),
            "s".into(),
            None,
        ));
        let (path, _) = get_with(&c, &FakeStore::default(), "k", now, keys(Some(&fixed)));
        assert_eq!(amz_expires(&path.unwrap()), 600, "{cache}");
    }
}

/// Static keys from the configuration (no rotating keys) keep
/// `expires_in` exactly: 600 s, signed at the aligned window start.
#[test]
fn static_keys_keep_expires_in() {
    for cache in [json!({}), json!({"enabled": false})] {
        let c = config(cache.clone(), "s");
        let (path, r) = get(&c, &FakeStore::default(), "k", 1_700_000_100);
        assert_eq!(amz_expires(&path), 600, "{cache}");
        let window_start = 1_700_000_100 - 1_700_000_100 % 480;
        assert_eq!(
            r.expires_at_ms,
            Some((window_start + 600) * 1000),
            "{cache}"
        );
    }
}

/// docs/configuration.md, local replies: rotating credentials not obtained yet, or
/// too close to expiry to leave a URL `min_remaining` (24 s here) plus a
/// whole second of life after the margin, sign nothing: the request is
/// refused as `credentials_unavailable` with the retry hint, reported as
/// the sign error.
#[test]
fn credentials_too_close_or_missing_are_unavailable() {
    let c = config(json!({"align": false}), "s");
    let now = 1_700_000_000_000u64;
    let unavailable = FallbackReason::CredentialsUnavailable {
        retry_after_secs: 7,
    };
    let (r, report) = get_with(&c, &FakeStore::default(), "k", now, keys(None));
    assert_eq!(r, Err(unavailable));
    assert_eq!(report.sign_error, Some(unavailable));
    assert_eq!(report.signed, 0);
    // The last usable instant: not_after = now + min_remaining + 1 s.
    let edge = temporary("ASIA1", now + 60_000 + 24_000 + 1_000);
    let store = FakeStore::default();
    let (r, report) = get_with(&c, &store, "k", now, keys(Some(&edge)));
    assert_eq!(amz_expires(&r.unwrap()), 25);
    assert_eq!(report.sign_error, None);
    let (r, report) = get_with(&c, &store, "k", now + 1, keys(Some(&edge)));
    assert_eq!(r, Err(unavailable));
    assert_eq!(report.sign_error, Some(unavailable));
    let expired = temporary("ASIA1", now - 1);
    let (r, _) = get_with(&c, &FakeStore::default(), "k", now, keys(Some(&expired)));
    assert_eq!(r, Err(unavailable));
}

/// Issue 10: "the cache identity already changes with the credentials":
/// once a worker holds new credentials, it never serves a URL the old
/// ones signed.
#[test]
fn new_credentials_never_get_the_old_urls() {
    let c = config(json!({}), "s");
    let store = FakeStore::default();
    let now = 1_700_000_000_000u64;
    let old = temporary("ASIAOLD", now + 3_600_000);
    let new = temporary("ASIANEW", now + 7_200_000);
    let (a, r) = get_with(&c, &store, "k", now, keys(Some(&old)));
    assert_eq!(r.outcome, Some(Outcome::Miss));
    let (b, r) = get_with(&c, &store, "k", now + 1000, keys(Some(&new)));
    assert_eq!(r.outcome, Some(Outcome::Miss));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a, b);
    assert!(b.contains("ASIANEW") && !b.contains("ASIAOLD"), "{b}");
}

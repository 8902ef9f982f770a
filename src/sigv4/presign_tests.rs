use super::*;
use crate::config::Config;
use crate::config::Origin;
use crate::testing::Vector;
use std::time::UNIX_EPOCH;

fn config_for(v: &Vector) -> Config {
    let doc = serde_json::json!({
        "credentials": {
            "source": "inline",
            "access_key_id": v.access_key_id,
            "secret_access_key": v.secret_access_key,
            "session_token": v.session_token,
        },
        "origins": [{
            "name": "vector",
            "match": {"prefix": "/"},
            "endpoint": v.endpoint,
            "bucket": v.bucket,
            "addressing": v.addressing,
            "region": v.region,
            "service": v.service,
            // The lifetime is passed to `presign` directly: vectors cover
            // the signer's whole range (1 s too), below what a cache
            // configuration accepts.
            "allow_query": v.query.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        }],
    });
    Config::parse(doc.to_string().as_bytes(), &|_| None)
        .unwrap_or_else(|e| panic!("{}: {e}", v.name))
}

#[test]
fn byte_identical_to_boto3() {
    let vectors = crate::testing::boto3_vectors();
    assert!(vectors.len() >= 40, "vector file too small");
    for v in &vectors {
        let config = config_for(v);
        let origin = &config.origins[0];
        let signer = config.signer.as_ref().unwrap();
        let method = Method::parse(&v.method).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(v.time);
        let p = presign(
            &origin.target(),
            method,
            &v.key,
            &v.query,
            signer,
            now,
            Duration::from_secs(v.expires_in),
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        let url = format!(
            "{}://{}{}",
            origin.endpoint.scheme, origin.authority, p.path
        );
        assert_eq!(url, v.url, "vector {}", v.name);
        assert_eq!(p.expires_at, now + Duration::from_secs(v.expires_in));
    }
}

/// `aws-sigv4`'s own full signer, configured as S3 requires: the reference
/// the direct canonical request must agree with.
fn reference(
    origin: &Origin,
    method: Method,
    key: &str,
    query: &[(String, String)],
    creds: &Credentials,
    now: SystemTime,
    expires_in: Duration,
) -> String {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SignatureLocation, SigningSettings, UriPathNormalizationMode,
    };
    use aws_sigv4::sign::v4::SigningParams;
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().map(str::to_string),
        None,
        "test",
    )
    .into();
    let path = object_path(&origin.target(), key);
    let q = crate::sigv4::canonical::format_query(query);
    let uri = format!(
        "{}://{}{}?{}",
        origin.endpoint.scheme, origin.authority, path, q
    );
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.expires_in = Some(expires_in);
    let params = SigningParams::builder()
        .identity(&identity)
        .region(&origin.region)
        .name(&origin.service)
        .time(now)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let req = SignableRequest::new(
        method.as_str(),
        uri,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let sig = instructions
        .params()
        .iter()
        .find(|(k, _)| *k == "X-Amz-Signature")
        .unwrap()
        .1
        .to_string();
    sig
}

#[test]
fn agrees_with_the_aws_sigv4_signer_across_days_regions_and_keys() {
    let keys = [
        "a",
        "my file(1).mp4",
        "caf\u{e9}/\u{4e2d}.png",
        "a+b=c&d;e,f'g!h*i(j)k@l$m:n",
        "//x//",
        "%25",
        "\u{1f3ac}",
    ];
    let regions = ["us-east-1", "eu-west-3", "auto"];
    for (t, token) in [
        (1_700_000_000u64, None),
        (1_709_251_199, Some("tok/en+=")),
        (1_709_251_200, None),
        (4_102_444_799, Some("x")),
    ] {
        for region in regions {
            let doc = serde_json::json!({
                "credentials": {"source": "inline", "access_key_id": "AKIDX", "secret_access_key": "sec/ret+", "session_token": token},
                "origins": [{"name": "o", "match": {"prefix": "/"}, "endpoint": "https://s3.example.com:8443",
                             "bucket": "bkt", "addressing": "virtual", "region": region, "allow_query": ["versionId"]}],
            });
            let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
            let signer = c.signer.as_ref().unwrap();
            let creds = &signer.credentials;
            for key in keys {
                for method in [Method::Get, Method::Head] {
                    for query in [vec![], vec![("versionId".to_string(), "v+1/=".to_string())]] {
                        let now = UNIX_EPOCH + Duration::from_secs(t);
                        let exp = Duration::from_secs(900);
                        let ours = presign(
                            &c.origins[0].target(),
                            method,
                            key,
                            &query,
                            signer,
                            now,
                            exp,
                        )
                        .unwrap();
                        let sig = reference(&c.origins[0], method, key, &query, creds, now, exp);
                        assert!(
                            ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                            "{key} {region} {t}"
                        );
                    }
                }
            }
        }
    }
}

/// `signer` signs a GET of `key` on `origin` at Unix time `t` (900 s) as the
/// reference signer does with `creds`; `what` names the case on failure.
fn signs_as_the_reference(
    origin: &Origin,
    key: &str,
    signer: &Signer,
    creds: &Credentials,
    t: u64,
    what: &str,
) {
    let now = UNIX_EPOCH + Duration::from_secs(t);
    let exp = Duration::from_secs(900);
    let ours = presign(&origin.target(), Method::Get, key, &[], signer, now, exp).unwrap();
    let sig = reference(origin, Method::Get, key, &[], creds, now, exp);
    assert!(
        ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
        "{what}"
    );
}

/// One signer keeps derived keys per (UTC day, region, service). Signing
/// with one `Signer` on both sides of UTC midnight, in two regions and two
/// services, in an order that comes back to each key after the others,
/// must give the reference signer's signature every time: a lookup that
/// served yesterday's key, or another region's or service's, would not.
#[test]
fn one_signer_uses_the_key_of_each_day_region_and_service() {
    let creds = Credentials::new("AKIDX".into(), "sec/ret+".into(), None);
    let signer = Signer::new(&creds);
    let origins: Vec<Config> = [("us-east-1", "s3"), ("eu-west-3", "s3"), ("us-east-1", "s3express")]
            .iter()
            .map(|(region, service)| {
                let doc = serde_json::json!({
                    "origins": [{"name": "o", "match": {"prefix": "/"}, "endpoint": "https://s3.example.com",
                                 "bucket": "bkt", "region": region, "service": service}],
                });
                Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap()
            })
            .collect();
    // 23:59:59 on 2024-02-29, then 00:00:00 on 2024-03-01, then back.
    for t in [
        1_709_251_199u64,
        1_709_251_200,
        1_709_251_199,
        1_709_337_600,
    ] {
        for c in &origins {
            let origin = &c.origins[0];
            let what = format!("{t} {} {}", origin.region, origin.service);
            signs_as_the_reference(origin, "k", &signer, &creds, t, &what);
        }
    }
}

/// Signatures within one second share the string to sign's head; one signer
/// signing in the same day at a second, the next, back at the first and a
/// minute later must give the reference signer's signature every time: a
/// head kept past its second would sign with the wrong date.
#[test]
fn one_signer_signs_each_second_with_its_own_date() {
    let creds = Credentials::new("AKIDX".into(), "sec/ret+".into(), None);
    let signer = Signer::new(&creds);
    let doc = serde_json::json!({
        "origins": [{"name": "o", "match": {"prefix": "/"}, "endpoint": "https://s3.example.com",
                     "bucket": "bkt", "region": "us-east-1"}],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let origin = &c.origins[0];
    for t in [
        1_700_000_000u64,
        1_700_000_000,
        1_700_000_001,
        1_700_000_000,
        1_700_000_060,
    ] {
        for key in ["a", "b/c.mp4"] {
            signs_as_the_reference(origin, key, &signer, &creds, t, &format!("{t} {key}"));
        }
    }
}

/// A signer's `Debug` names the access key id and never the secret or
/// the session token.
#[test]
fn signer_debug_shows_the_key_id_only() {
    let s = Signer::new(&Credentials::new(
        "AKIDEXAMPLE".into(),
        "wJalrXUtnFEMI".into(),
        Some("SESSIONTOKEN".into()),
    ));
    let d = format!("{s:?}");
    assert!(d.contains("AKIDEXAMPLE"), "{d}");
    assert!(
        !d.contains("wJalrXUtnFEMI") && !d.contains("SESSIONTOKEN"),
        "{d}"
    );
}

/// Credentials, a fresh signer and one origin, for the derived-key cache tests.
fn key_cache_fixture() -> (Credentials, Signer, Config) {
    let creds = Credentials::new("AKIDX".into(), "sec/ret+".into(), None);
    let signer = Signer::new(&creds);
    let c = Config::parse(br#"{"origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#, &|_| None).unwrap();
    (creds, signer, c)
}

/// Within one UTC day, region and service the signing key is derived once
/// and reused, whatever the time of day.
#[test]
fn one_key_per_day_is_derived_and_reused() {
    let (creds, signer, c) = key_cache_fixture();
    let origin = &c.origins[0];
    let midnight = 1_699_920_000u64; // 2023-11-14T00:00:00Z
    for t in [midnight, midnight + 1, midnight + 43_200, midnight + 86_399] {
        let now = UNIX_EPOCH + Duration::from_secs(t);
        let exp = Duration::from_secs(60);
        let ours = presign(&origin.target(), Method::Get, "k", &[], &signer, now, exp).unwrap();
        let sig = reference(origin, Method::Get, "k", &[], &creds, now, exp);
        assert!(
            ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
            "{t}"
        );
    }
    assert_eq!(signer.keys.borrow().len(), 1);
}

/// The derived-key cache is bounded: signing on more distinct days than
/// it holds keeps `KEY_CACHE_SIZE` keys, and a day whose key was evicted
/// is derived again correctly.
#[test]
fn key_cache_is_bounded_and_rederives_evicted_keys() {
    let (creds, signer, c) = key_cache_fixture();
    let origin = &c.origins[0];
    let exp = Duration::from_secs(60);
    let days = u64::try_from(KEY_CACHE_SIZE).unwrap() + 3;
    for round in 0..2 {
        for d in 0..days {
            let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + d * 86_400);
            let ours = presign(&origin.target(), Method::Get, "k", &[], &signer, now, exp).unwrap();
            let sig = reference(origin, Method::Get, "k", &[], &creds, now, exp);
            assert!(
                ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                "round {round} day {d}"
            );
            assert!(signer.keys.borrow().len() <= KEY_CACHE_SIZE);
        }
    }
    assert_eq!(signer.keys.borrow().len(), KEY_CACHE_SIZE);
}

#[test]
fn dates() {
    let epoch = amz_dates(0).unwrap();
    assert_eq!(
        (epoch.date(), epoch.datetime()),
        ("19700101", "19700101T000000Z")
    );
    assert_eq!(amz_dates(951_782_400).unwrap().date(), "20000229");
    assert_eq!(
        amz_dates(1_709_251_199).unwrap().datetime(),
        "20240229T235959Z"
    );
    assert_eq!(amz_dates(4_102_444_800).unwrap().date(), "21000101");
    assert!(amz_dates(253_402_300_800).is_none(), "year 10000");
    let s = Signer::new(&Credentials::new("A".into(), "s".into(), None));
    let c = Config::parse(br#"{"origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#, &|_| None).unwrap();
    let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        presign(
            &c.origins[0].target(),
            Method::Get,
            "k",
            &[],
            &s,
            before_epoch,
            Duration::from_secs(1)
        ),
        Err(SignError::Signer)
    );
}

/// `amz_dates` against a naive calendar over its whole range (1970 to
/// 9999): the first and last day of every year and the days around the
/// end of February, where the century and 400-year rules bite.
#[test]
fn dates_agree_with_a_naive_calendar_through_9999() {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut first_day = 0u64; // days since 1970-01-01 of January 1st
    for year in 1970..=9999u64 {
        let feb = if leap(year) { 29 } else { 28 };
        let check = |day_of_year: u64, month: u64, day: u64| {
            let secs = (first_day + day_of_year) * 86_400 + 86_399;
            let when = amz_dates(secs).unwrap();
            let (date, datetime) = (when.date(), when.datetime());
            assert_eq!(date, format!("{year:04}{month:02}{day:02}"));
            assert_eq!(datetime, format!("{date}T235959Z"));
        };
        check(0, 1, 1);
        check(31 + 27, 2, 28);
        check(31 + feb - 1, 2, feb);
        check(31 + feb, 3, 1);
        let len = 337 + feb;
        check(len - 1, 12, 31);
        first_day += len;
    }
    assert!(amz_dates(first_day * 86_400).is_none(), "year 10000");
}

#[test]
fn get_and_head_sign_differently() {
    let doc = br#"{"credentials":{"source":"inline","access_key_id":"AKID","secret_access_key":"s"},
            "origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#;
    let c = Config::parse(doc, &|_| None).unwrap();
    let s = c.signer.as_ref().unwrap();
    assert!(
        !format!("{s:?}").contains("\"s\""),
        "Debug redacts the secret"
    );
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let d = Duration::from_secs(60);
    let get = presign(&c.origins[0].target(), Method::Get, "k", &[], s, t, d).unwrap();
    let head = presign(&c.origins[0].target(), Method::Head, "k", &[], s, t, d).unwrap();
    assert_ne!(get.path, head.path);
    assert!(get
        .path
        .starts_with("/bkt/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    assert!(
        !get.path.contains("&s&") && !get.path.contains("=s&"),
        "secret must not appear"
    );
}

/// Issue 10: a signer knows when its credentials stop working (what
/// caps its URLs); static keys never do.
#[test]
fn a_signer_knows_when_its_credentials_expire() {
    let tmp = Credentials::temporary(
        "ASIA".into(),
        "s".into(),
        Some("t".into()),
        1_700_000_000_000,
    );
    assert_eq!(Signer::new(&tmp).expires_at_ms(), Some(1_700_000_000_000));
    let fixed = Credentials::new("AKID".into(), "s".into(), None);
    assert_eq!(Signer::new(&fixed).expires_at_ms(), None);
}

/// The HMAC kept as two hash states equals `aws-sigv4`'s, for keys of every
/// length around the block size (a longer key is hashed first) and messages
/// around block boundaries.
#[test]
fn hmac_states_agree_with_aws_sigv4() {
    for key_len in [0usize, 1, 31, 32, 33, 63, 64, 65, 100] {
        let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 3) as u8).collect();
        let hmac = HmacKey::new(&key);
        for msg_len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 200] {
            let msg: Vec<u8> = (0..msg_len).map(|i| (i * 13 + 1) as u8).collect();
            let mut inner = hmac.start();
            inner.update(&msg);
            let mut ours = String::new();
            push_hex(&mut ours, &hmac.finish(inner));
            let theirs = aws_sigv4::sign::v4::calculate_signature(&key, &msg);
            assert_eq!(ours, theirs, "key {key_len} bytes, message {msg_len} bytes");
        }
    }
}

#[test]
fn decimals() {
    for n in [0u64, 7, 10, 99, 3600, 604_800, u64::MAX] {
        assert_eq!(Decimal::new(n).as_str(), n.to_string());
    }
}

/// The order the parameters are written in is the canonical request's, so
/// a URL without client parameters or a token skips the sort.
#[test]
fn amz_params_are_sorted() {
    assert!(AMZ_PARAMS.is_sorted());
}

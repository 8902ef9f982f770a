//! Request path → object key → S3 path. Properties: the key never leaves the
//! configured prefix or bucket, the encoded path holds no byte S3 would
//! re-encode, and decoding it gives back the key exactly; through the whole
//! request flow with the real signer, the key signed is the prefix plus the
//! path decoded once, and the presigned path is that key in the bucket.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use envoy_presign::config::{Config, Origin};
use envoy_presign::request::decide::{decide, Decision, FallbackReason, RequestHead};
use envoy_presign::sigv4::canonical::{encode_key_into, object_key, percent_decode};
use envoy_presign::sigv4::presign::presign;
use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 3] = ["", "videos/", "a/b/"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let key_prefix = PREFIXES[usize::from(selector) % PREFIXES.len()];

    if let Ok(key) = object_key(key_prefix, raw) {
        assert!(key.starts_with(key_prefix));
        assert!(!key.is_empty() && key.len() <= 1024 && !key.contains('\0'));
        assert!(key.split('/').all(|s| s != "." && s != ".."));
        let mut enc = String::new();
        encode_key_into(&mut enc, &key);
        let b = enc.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    assert!(b[i + 1..i + 3]
                        .iter()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)));
                    i += 3;
                }
                c => {
                    assert!(
                        c.is_ascii_alphanumeric() || b"-_.~/".contains(&c),
                        "raw byte {c}"
                    );
                    i += 1;
                }
            }
        }
        assert_eq!(percent_decode(&enc, false).unwrap(), key.as_bytes());
    }

    // The whole request flow, with the real signer: the key signed is the configured prefix
    // plus the path after the origin's prefix decoded exactly once, and the presigned path
    // is that key in the configured bucket, signed.
    let doc = format!(
        r#"{{"credentials":{{"source":"inline","access_key_id":"A","secret_access_key":"s"}},
            "origins":[{{"name":"o","match":{{"prefix":"/m/"}},"endpoint":"http://h","bucket":"bkt",
            "region":"r","key_prefix":"{key_prefix}","allow_query":["versionId"]}}]}}"#
    );
    let config = Config::parse(doc.as_bytes(), &|_| None).unwrap();
    let signer = config.signer.as_ref().unwrap();
    let path = format!("/m/{raw}");
    let mut signed = None;
    let mut sign = |origin: &Origin, method, key: &str, query: &[(String, String)]| {
        signed = Some(key.to_string());
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        presign(
            &origin.target(),
            method,
            key,
            query,
            signer,
            at,
            Duration::from_secs(600),
        )
        .map(|p| p.path)
        .map_err(FallbackReason::SignError)
    };
    let head = RequestHead {
        method: "GET",
        authority: "envoy",
        path: path.as_bytes(),
    };
    if let Decision::Forward {
        rewrite: Some((authority, p)),
        ..
    } = decide(&config, head, &mut sign)
    {
        assert_eq!(authority, "h");
        let key = signed.expect("a rewrite comes from a signature");
        let raw_path = raw.split(['?', '#']).next().unwrap_or_default(); // a fragment is dropped
        let once = percent_decode(raw_path, false).expect("a signed path decodes");
        assert_eq!(key.as_bytes(), [key_prefix.as_bytes(), &once].concat());
        let (object, query) = p.split_once('?').expect("a presigned path has a query");
        let decoded = percent_decode(object, false).unwrap();
        assert_eq!(decoded, [b"/bkt/".as_slice(), key.as_bytes()].concat());
        assert!(query.contains("X-Amz-Credential=A%2F") && query.contains("&X-Amz-Signature="));
    }
});

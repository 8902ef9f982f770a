//! Request path → object key → S3 path. Properties: the key never leaves the
//! configured prefix or bucket, the encoded path holds no byte S3 would
//! re-encode, and decoding it gives back the key exactly.
#![no_main]

use envoy_presign::canonical::{encode_key_into, object_key, percent_decode};
use envoy_presign::config::Config;
use envoy_presign::request::{decide, Decision, RequestHead};
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

    // The whole request flow: the bucket and prefix are fixed by the config.
    let doc = format!(
        r#"{{"credentials":{{"source":"inline","access_key_id":"A","secret_access_key":"s"}},
            "origins":[{{"name":"o","match":{{"prefix":"/m/"}},"endpoint":"http://h","bucket":"bkt",
            "region":"r","key_prefix":"{key_prefix}","allow_query":["versionId"]}}]}}"#
    );
    let config = Config::parse(doc.as_bytes(), &|_| None).unwrap();
    let path = format!("/m/{raw}");
    let mut signed = None;
    let mut sign = |_: &envoy_presign::config::Origin, _, key: &str, _: &[(String, String)]| {
        signed = Some(key.to_string());
        Ok("/bkt/signed".to_string())
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
        assert_eq!(p, "/bkt/signed");
        assert!(signed.unwrap().starts_with(key_prefix));
    }
});

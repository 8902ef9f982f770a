use super::*;

/// Every byte as `%XX`: the "fully encoded" request form.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn enc(key: &str) -> String {
    let mut s = String::new();
    encode_key_into(&mut s, key);
    s
}

/// (raw request remainder, expected key, expected S3-encoded path)
const TABLE: &[(&str, &str, &str)] = &[
    ("plain.mp4", "plain.mp4", "plain.mp4"),
    ("my file(1).mp4", "my file(1).mp4", "my%20file%281%29.mp4"),
    ("my%20file(1).mp4", "my file(1).mp4", "my%20file%281%29.mp4"),
    (
        "my%20file%281%29.mp4",
        "my file(1).mp4",
        "my%20file%281%29.mp4",
    ),
    (
        "caf%C3%A9/%E4%B8%AD.png",
        "café/中.png",
        "caf%C3%A9/%E4%B8%AD.png",
    ),
    ("caf%c3%a9.png", "café.png", "caf%C3%A9.png"),
    ("a+b.txt", "a+b.txt", "a%2Bb.txt"),
    ("a%2Bb.txt", "a+b.txt", "a%2Bb.txt"),
    ("tilde~x", "tilde~x", "tilde~x"),
    ("at@x", "at@x", "at%40x"),
    ("bang!", "bang!", "bang%21"),
    ("star*", "star*", "star%2A"),
    ("quote'", "quote'", "quote%27"),
    ("eq=,;", "eq=,;", "eq%3D%2C%3B"),
    (
        "amp&dollar$colon:",
        "amp&dollar$colon:",
        "amp%26dollar%24colon%3A",
    ),
    ("pct%2525lit", "pct%25lit", "pct%2525lit"),
    ("a//b", "a//b", "a//b"),
    ("/lead", "/lead", "/lead"),
    ("a%2Fb", "a/b", "a/b"),
    (
        "dots..x/.hidden/...",
        "dots..x/.hidden/...",
        "dots..x/.hidden/...",
    ),
    ("trail/", "trail/", "trail/"),
    ("%F0%9F%8E%AC.mp4", "🎬.mp4", "%F0%9F%8E%AC.mp4"),
];

#[test]
fn canonicalisation_table() {
    for (raw, key, path) in TABLE {
        let k = object_key("", raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
        assert_eq!(&k, key, "key for {raw}");
        assert_eq!(&enc(&k), path, "encoding for {raw}");
    }
}

#[test]
fn raw_encoded_and_mixed_forms_agree() {
    for (_, key, path) in TABLE {
        // Fully encoded form of the key decodes to the same key.
        assert_eq!(&object_key("", &encode_all(key)).unwrap(), key);
        // The S3 encoding itself is also accepted as a request form.
        assert_eq!(&object_key("", path).unwrap(), key);
    }
}

/// Each path error has its own stable code, the one its local reply sends
/// (`x-presign-error` and the JSON body).
#[test]
fn path_error_codes_are_those_of_their_replies() {
    use crate::request::decide::LocalReply;
    for (e, code) in [
        (PathError::InvalidEncoding, "invalid_path_encoding"),
        (PathError::InvalidKey, "invalid_object_key"),
        (PathError::QueryTooLong, "query_too_long"),
    ] {
        assert_eq!(e.code(), code);
        assert_eq!(LocalReply::from(e).code, code);
    }
}

#[test]
fn max_length_key() {
    let k = "k".repeat(MAX_KEY_BYTES);
    assert_eq!(object_key("", &k).unwrap(), k);
    assert_eq!(object_key("", &format!("{k}x")), Err(PathError::InvalidKey));
    // The prefix counts toward the limit.
    assert_eq!(object_key("p/", &k[2..]).unwrap().len(), MAX_KEY_BYTES);
    assert_eq!(object_key("p/", &k[1..]), Err(PathError::InvalidKey));
}

#[test]
fn refusals() {
    use PathError::*;
    let cases: &[(&str, PathError)] = &[
        ("a%zz", InvalidEncoding),
        ("a%2", InvalidEncoding),
        ("a%", InvalidEncoding),
        ("%G0", InvalidEncoding),
        ("a%00b", InvalidKey),
        ("a/../b", InvalidKey),
        ("..", InvalidKey),
        ("%2e%2e/x", InvalidKey),
        ("a/%2E%2E", InvalidKey),
        ("a%2F..%2Fb", InvalidKey),
        ("./a", InvalidKey),
        ("a/./b", InvalidKey),
        ("", InvalidKey),
        ("%FF.bin", InvalidKey),
        ("%C3", InvalidKey),
    ];
    for (raw, want) in cases {
        assert_eq!(object_key("", raw), Err(*want), "{raw}");
    }
}

#[test]
fn key_prefix_is_prepended_and_checked() {
    assert_eq!(object_key("videos/", "a.mp4").unwrap(), "videos/a.mp4");
    assert_eq!(object_key("videos", "/../x"), Err(PathError::InvalidKey));
}

#[test]
fn query_allowlist() {
    let allow = vec!["versionId".to_string()];
    let q = allowed_query(
        "X-Amz-Signature=bad&versionId=a%2Bb%2Fc%3D&versionid=no&versionId=second&x=1",
        &allow,
    )
    .unwrap();
    assert_eq!(q, vec![("versionId".into(), "a+b/c=".into())]);
    assert_eq!(format_query(&q), "versionId=a%2Bb%2Fc%3D");
    assert!(allowed_query("X-Amz-Credential=x&a=b", &allow)
        .unwrap()
        .is_empty());
    assert!(allowed_query("versionId=1", &[]).unwrap().is_empty());
    assert_eq!(
        allowed_query("versionId=%zz", &allow),
        Err(PathError::InvalidEncoding)
    );
    assert_eq!(
        allowed_query("versionId", &allow).unwrap(),
        vec![("versionId".into(), String::new())]
    );
}

/// `+` is a space in a query value (form decoding) and a literal plus in
/// the path, so the same byte signs differently in the two places.
#[test]
fn plus_is_a_space_in_query_values_only() {
    let allow = vec!["versionId".to_string()];
    assert_eq!(
        allowed_query("versionId=a+b", &allow).unwrap(),
        vec![("versionId".into(), "a b".into())]
    );
    // Signed as %20, while an encoded plus stays a plus.
    let q = allowed_query("versionId=a+b%2Bc", &allow).unwrap();
    assert_eq!(q, vec![("versionId".to_string(), "a b+c".to_string())]);
    assert_eq!(format_query(&q), "versionId=a%20b%2Bc");
    assert_eq!(object_key("", "a+b").unwrap(), "a+b");
    assert_eq!(percent_decode("a+b%2B", true).unwrap(), b"a b+");
    assert_eq!(percent_decode("a+b%2B", false).unwrap(), b"a+b+");
}

#[test]
fn only_allowed_values_can_fail_a_request() {
    let allow = vec!["versionId".to_string(), "partNumber".to_string()];
    // A name that does not decode is just not an allowed one.
    assert_eq!(
        allowed_query("utm%=x&versionId=7", &allow).unwrap(),
        vec![("versionId".into(), "7".into())]
    );
    // Encoded names still match; the allow-list order is kept.
    assert_eq!(
        allowed_query("partNumber=2&version%49d=v", &allow).unwrap(),
        vec![
            ("versionId".into(), "v".into()),
            ("partNumber".into(), "2".into())
        ]
    );
    // A bad value of a name that is not allowed never fails.
    assert!(allowed_query("junk=%zz&a&a&a", &allow).unwrap().is_empty());
}

#[test]
fn allowed_values_are_capped() {
    let allow = vec!["versionId".to_string()];
    let fits = "v".repeat(MAX_SIGNED_QUERY_BYTES - "versionId=".len());
    let q = allowed_query(&format!("versionId={fits}"), &allow).unwrap();
    assert_eq!(format_query(&q).len(), MAX_SIGNED_QUERY_BYTES);
    let over = format!("versionId={fits}v");
    assert_eq!(allowed_query(&over, &allow), Err(PathError::QueryTooLong));
    // Encoding counts: 700 spaces are 2100 bytes once encoded.
    let spaces = format!("versionId={}", "+".repeat(700));
    assert_eq!(allowed_query(&spaces, &allow), Err(PathError::QueryTooLong));
    let huge = format!("versionId={}", "v".repeat(50_000));
    assert_eq!(allowed_query(&huge, &allow), Err(PathError::QueryTooLong));
    // Only the first occurrence is kept, so repeats cost nothing.
    let repeated = format!("versionId=1{}", "&versionId=".repeat(5000) + "x");
    assert_eq!(allowed_query(&repeated, &allow).unwrap().len(), 1);
}

/// The cap counts the `&` between parameters: two parameters that take
/// exactly `MAX_SIGNED_QUERY_BYTES` as `a=…&b=…` fit, one byte more does not.
#[test]
fn the_query_cap_counts_separators() {
    let allow = vec!["a".to_string(), "b".to_string()];
    let rest = MAX_SIGNED_QUERY_BYTES - "a=&b=x".len();
    let fits = format!("a={}&b=x", "v".repeat(rest));
    let q = allowed_query(&fits, &allow).unwrap();
    assert_eq!(format_query(&q).len(), MAX_SIGNED_QUERY_BYTES);
    let over = format!("a={}&b=xy", "v".repeat(rest));
    assert_eq!(allowed_query(&over, &allow), Err(PathError::QueryTooLong));
}

/// A raw value of up to three times the cap is decoded (so a bad escape
/// in it is an encoding error); a longer one is refused as too long
/// without being decoded.
#[test]
fn hopeless_values_are_refused_before_decoding() {
    let allow = vec!["v".to_string()];
    let at_limit = format!("v=%zz{}", "x".repeat(MAX_SIGNED_QUERY_BYTES * 3 - 3));
    assert_eq!(
        allowed_query(&at_limit, &allow),
        Err(PathError::InvalidEncoding)
    );
    let over = format!("v=%zz{}", "x".repeat(MAX_SIGNED_QUERY_BYTES * 3 - 2));
    assert_eq!(allowed_query(&over, &allow), Err(PathError::QueryTooLong));
}

/// An allowed name sent fully percent-encoded (three bytes per byte) is
/// still recognised.
#[test]
fn a_fully_encoded_allowed_name_matches() {
    let allow = vec!["ab".to_string(), "x".to_string()];
    assert_eq!(
        allowed_query("%61%62=1", &allow).unwrap(),
        vec![("ab".into(), "1".into())]
    );
}

#[test]
fn format_query_joins_parameters_with_ampersands() {
    let q = vec![
        ("partNumber".to_string(), "2".to_string()),
        ("versionId".to_string(), "a b".to_string()),
    ];
    assert_eq!(format_query(&q), "partNumber=2&versionId=a%20b");
}

#[test]
fn auth_params_are_counted() {
    assert_eq!(
        count_auth_params("X-Amz-Signature=a&x-amz-date=b&versionId=1&X-Am=2"),
        2
    );
    assert_eq!(count_auth_params(""), 0);
}

#[test]
fn auth_params_are_removed_from_passed_through_paths() {
    assert_eq!(without_auth_params("/m/a?x=1"), None);
    assert_eq!(without_auth_params("/m/a"), None);
    assert_eq!(
        without_auth_params("/m/a?X-Amz-Signature=s&x=1&x-amz-credential=c").as_deref(),
        Some("/m/a?x=1")
    );
    assert_eq!(
        without_auth_params("/m/a?X-Amz-Date=d").as_deref(),
        Some("/m/a")
    );
}

/// S3 percent-decodes query names (`+` as a space) before it reads them,
/// so a client `X-Amz-*` parameter in any encoding is SigV4 material: it
/// is removed and counted like a raw one, and every other parameter is
/// kept byte for byte, in order. (raw query, query kept, how many removed)
const AUTH_TABLE: &[(&str, &str, u64)] = &[
    // Raw, any case (as before).
    ("X-Amz-Signature=s&x=1", "x=1", 1),
    ("x-AmZ-dAtE=d&x=1", "x=1", 1),
    // The security review's cases.
    (
        "X%2DAmz-Signature=forged&x%2damz-credential=a&keep=1",
        "keep=1",
        2,
    ),
    ("%58-Amz-Date=d&keep=1", "keep=1", 1),
    ("X-Amz%2DSecurity-Token=t&keep=1", "keep=1", 1),
    // Every prefix byte encoded, upper- and lower-case hex and letters.
    ("%58%2D%41%4D%5A%2DAlgorithm=a&k", "k", 1),
    ("%78%2d%61%6d%7a%2dalgorithm=a&k", "k", 1),
    ("%78%2D%61%6d%7A%2dCredential=c&k", "k", 1),
    ("X%2dAMZ%2Dsignature=s&k", "k", 1),
    ("%58-aMz%2DExpires=60&k", "k", 1),
    // The rest of the name encoded too, or an `=` hidden in it.
    ("X-Amz-%53ignature=s&k", "k", 1),
    ("X%2DAmz%2DSignature%3Dforged&k", "k", 1),
    // The bare prefix, and `+` read as a space after it.
    ("x-amz-&k", "k", 1),
    ("x-amz-+y=1&k", "k", 1),
    ("X-Amz-%20=1&k", "k", 1),
    // Not SigV4 names once decoded: kept as sent.
    ("+x-amz-a=1&k", "+x-amz-a=1&k", 0),
    ("x+amz-a=1&k", "x+amz-a=1&k", 0),
    ("%20X-Amz-Date=1", "%20X-Amz-Date=1", 0),
    ("X-Am=2&X-Amz=3&Xamz-=4", "X-Am=2&X-Amz=3&Xamz-=4", 0),
    ("x%2Damz=1&x-amzz-=2", "x%2Damz=1&x-amzz-=2", 0),
    // Decoded once, as S3 does: a double-encoded name is not one.
    ("%2558-Amz-Date=d", "%2558-Amz-Date=d", 0),
    // Values are never read: an `X-Amz-` value or a bad escape in one stays.
    (
        "keep=X-Amz-Signature&k=X%2DAmz-Date&v=100%&w=%zz",
        "keep=X-Amz-Signature&k=X%2DAmz-Date&v=100%&w=%zz",
        0,
    ),
    // Names that decode to bytes that are not UTF-8 are not refused for it.
    ("%FF%FE=1&k", "%FF%FE=1&k", 0),
    // A name that is not valid percent-encoding is removed (what an origin
    // makes of it cannot be known; it may read it as X-Amz-*).
    ("X-Amz%=1&k", "k", 1),
    ("X%2DAmz%zz=1&k", "k", 1),
    ("%58-Amz-Date%2=1&k", "k", 1),
    ("keep%=1&k", "k", 1),
    ("a%G0=1&k", "k", 1),
    ("%=1&k", "k", 1),
    // Everything else byte for byte, empty parameters and order included.
    (
        "a=%41&&b=c+d&X%2dAmz-Date=1&c&x-amz-date=2&%7e=~",
        "a=%41&&b=c+d&c&%7e=~",
        2,
    ),
];

#[test]
fn encoded_auth_params_are_removed_and_counted() {
    for (query, kept, removed) in AUTH_TABLE {
        assert_eq!(count_auth_params(query), *removed, "count of {query}");
        let path = format!("/m/a?{query}");
        let want = match (*removed, *kept) {
            (0, _) => None,
            (_, "") => Some("/m/a".to_string()),
            (_, kept) => Some(format!("/m/a?{kept}")),
        };
        assert_eq!(without_auth_params(&path), want, "{query}");
        if *removed == 0 {
            assert_eq!(query, kept, "a query with nothing removed is kept whole");
        }
    }
}

/// Every way to spell the `X-Amz-` prefix with each of its six bytes raw
/// or `%XX` (upper- or lower-case hex), letters in either case: each is
/// removed, and the parameters around it are kept.
#[test]
fn every_spelling_of_the_prefix_is_removed() {
    let prefix = b"x-amz-";
    for encoded in 0u32..64 {
        for upper in 0u32..64 {
            for lower_hex in [false, true] {
                let mut name = String::new();
                for (i, &b) in prefix.iter().enumerate() {
                    let b = if upper & (1 << i) != 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    };
                    if encoded & (1 << i) != 0 {
                        name.push_str(&if lower_hex {
                            format!("%{b:02x}")
                        } else {
                            format!("%{b:02X}")
                        });
                    } else {
                        name.push(char::from(b));
                    }
                }
                let path = format!("/m/a?a=1&{name}Signature=s&b=2");
                assert_eq!(
                    without_auth_params(&path).as_deref(),
                    Some("/m/a?a=1&b=2"),
                    "{name}"
                );
                assert_eq!(count_auth_params(&path), 1, "{name}");
            }
        }
    }
}

/// An auth parameter that is the only one leaves no `?`; a fragment is
/// dropped as `split_path` drops it.
#[test]
fn a_path_left_without_parameters_has_no_question_mark() {
    assert_eq!(
        without_auth_params("/m/a?X%2DAmz-Date=d&x%2damz-credential=c").as_deref(),
        Some("/m/a")
    );
    assert_eq!(
        without_auth_params("/m/a?%58-Amz-Date=d#frag").as_deref(),
        Some("/m/a")
    );
}

#[test]
fn split_path_cases() {
    assert_eq!(split_path("/a/b?x=1&y"), ("/a/b", "x=1&y"));
    assert_eq!(split_path("/a/b"), ("/a/b", ""));
    assert_eq!(split_path("/a?b?c"), ("/a", "b?c"));
    assert_eq!(split_path("/a#frag?x"), ("/a", ""));
    assert_eq!(split_path("/a?x=1#frag"), ("/a", "x=1"));
    assert_eq!(split_path("/ü/€?é=ß#ø"), ("/ü/€", "é=ß"));
    assert_eq!(split_path("?"), ("", ""));
    assert_eq!(split_path("#"), ("", ""));
    assert_eq!(split_path(""), ("", ""));
}

/// The byte search splits exactly where `char` patterns would, multi-byte
/// characters around the separators included.
#[test]
fn split_path_agrees_with_char_patterns() {
    fn by_chars(path: &str) -> (&str, &str) {
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        path.split_once('?').unwrap_or((path, ""))
    }
    let parts = ["", "/", "?", "#", "&", "=", "ü", "€", "a", "?#", "#?"];
    for a in parts {
        for b in parts {
            for c in parts {
                let path = format!("/m{a}x{b}y{c}");
                assert_eq!(split_path(&path), by_chars(&path), "{path:?}");
            }
        }
    }
}

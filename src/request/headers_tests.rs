use super::*;

/// Serializes like Envoy does (slices, so literals of any length mix).
fn ser(map: &[(&[u8], &[u8])]) -> Vec<u8> {
    serialize(map)
}

#[test]
fn picks_the_needed_headers() {
    let buf = ser(&[
        (b":authority", b"cdn.example.com"),
        (b":path", b"/media/a%20b?x=1"),
        (b":method", b"GET"),
        (b"x-request-id", b"rid-1"),
        (b"authorization", b"AWS4-HMAC-SHA256 bogus"),
        (b"x-amz-date", b"x"),
        (b"range", b"bytes=0-1"),
        (b"empty", b""),
    ]);
    let v = HeaderView::parse(&buf);
    assert_eq!(v.method, "GET");
    assert_eq!(v.authority, "cdn.example.com");
    assert_eq!(v.path, Some(&b"/media/a%20b?x=1"[..]));
    assert_eq!(v.request_id(), "rid-1");
    assert_eq!(v.auth_headers, vec!["authorization", "x-amz-date"]);
    assert_eq!(v.origin, None);
    let buf = ser(&[(b":path", b"/x"), (b"origin", b"https://app.example.com")]);
    assert_eq!(
        HeaderView::parse(&buf).origin,
        Some("https://app.example.com")
    );
}

#[test]
fn marker_header_from_the_client_is_noticed() {
    let buf = ser(&[(b":path", b"/x"), (b"X-Envoy-Presign-Origin", b"media")]);
    assert!(HeaderView::parse(&buf).marker);
    let buf = ser(&[(b":path", b"/x")]);
    assert!(!HeaderView::parse(&buf).marker);
}

#[test]
fn serialize_is_the_inverse_of_pairs() {
    let map = [
        ("content-type", "application/json"),
        ("x-presign-error", ""),
        ("", "v"),
    ];
    let buf = serialize(&map);
    let back: Vec<(&[u8], &[u8])> = pairs(&buf).collect();
    let want: Vec<(&[u8], &[u8])> = map
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    assert_eq!(back, want);
    assert_eq!(serialize::<&str, &str>(&[]), 0u32.to_le_bytes().to_vec());
}

#[test]
fn non_utf8_path_and_missing_path() {
    let buf = ser(&[(b":path", b"/a\xff"), (b":method", b"GET")]);
    assert_eq!(HeaderView::parse(&buf).path, Some(&b"/a\xff"[..]));
    let buf = ser(&[(b":method", b"CONNECT")]);
    assert_eq!(HeaderView::parse(&buf).path, None);
}

#[test]
fn malformed_buffers_never_panic() {
    let good = ser(&[(b":path", b"/x"), (b":method", b"GET")]);
    for n in 0..good.len() {
        let _ = HeaderView::parse(&good[..n]);
    }
    assert_eq!(HeaderView::parse(&[]), HeaderView::default());
    let mut huge = good.clone();
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let _ = HeaderView::parse(&huge);
    let mut bad_len = good;
    bad_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(pairs(&bad_len).count(), 0);
}

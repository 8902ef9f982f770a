//! Reading the request header map in place. Envoy hands over all headers as
//! one serialized buffer (`u32` count, then `u32` name and value lengths, then
//! the NUL-terminated bytes); the SDK turns it into one `String` and one `Vec`
//! per header. Parsing it here, borrowing from the buffer, costs one
//! allocation per request instead of two per header, and never panics on a
//! malformed buffer (it is treated as empty).

/// The request facts the filter needs, borrowed from the serialized map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// `:method`, or empty if it was not UTF-8.
    pub method: &'a str,
    /// `:authority`, or empty.
    pub authority: &'a str,
    /// `:path`; `None` when absent (e.g. CONNECT), `Some(Err(()))` when its
    /// bytes are not UTF-8 (the filter rejects those).
    pub path: Option<Result<&'a str, ()>>,
    /// `x-request-id`, the correlation id used in logs.
    pub request_id: &'a str,
    /// Names of headers that carry client credentials, to strip.
    pub auth_headers: Vec<&'a str>,
}

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// Iterates the (name, value) pairs of a serialized header map; stops at the
/// first inconsistency.
pub fn pairs(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let count = u32_at(buf, 0).unwrap_or(0);
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    let mut i = 0usize;
    std::iter::from_fn(move || {
        if i >= count {
            return None;
        }
        let name_len = u32_at(buf, 4 + i * 8)?;
        let value_len = u32_at(buf, 8 + i * 8)?;
        let name = buf.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len + 1)?;
        let value = buf.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        i += 1;
        Some((name, value))
    })
}

impl<'a> HeaderView<'a> {
    /// Picks the headers the filter needs out of a serialized request map.
    pub fn parse(buf: &'a [u8]) -> Self {
        let text = |v: &'a [u8]| std::str::from_utf8(v).unwrap_or_default();
        let mut view = Self::default();
        for (name, value) in pairs(buf) {
            match name {
                b":method" => view.method = text(value),
                b":authority" => view.authority = text(value),
                b":path" => view.path = Some(std::str::from_utf8(value).map_err(|_| ())),
                b"x-request-id" => view.request_id = text(value),
                _ => {
                    let name = text(name);
                    if crate::request::is_client_auth_header(name) {
                        view.auth_headers.push(name);
                    }
                }
            }
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes like Envoy does.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn picks_the_needed_headers() {
        let buf = serialize(&[
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
        assert_eq!(v.path, Some(Ok("/media/a%20b?x=1")));
        assert_eq!(v.request_id, "rid-1");
        assert_eq!(v.auth_headers, vec!["authorization", "x-amz-date"]);
    }

    #[test]
    fn non_utf8_path_and_missing_path() {
        let buf = serialize(&[(b":path", b"/a\xff"), (b":method", b"GET")]);
        assert_eq!(HeaderView::parse(&buf).path, Some(Err(())));
        let buf = serialize(&[(b":method", b"CONNECT")]);
        assert_eq!(HeaderView::parse(&buf).path, None);
    }

    #[test]
    fn malformed_buffers_never_panic() {
        let good = serialize(&[(b":path", b"/x"), (b":method", b"GET")]);
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
}

//! Reading the request header map in place. Envoy hands over all headers as
//! one serialized buffer (`u32` count, then `u32` name and value lengths, then
//! the NUL-terminated bytes); the SDK turns it into one `String` and one `Vec`
//! per header. Parsing it here, borrowing from the buffer, costs one
//! allocation per request instead of two per header, and never panics on a
//! malformed buffer (it is treated as empty).

/// The header the filter sets on every request it forwards to a matched
/// origin, naming the origin. The shipped Envoy configuration routes to an
/// origin's cluster only requests that carry it (and removes it before the
/// request leaves), so a request no origin matched can never reach a private
/// origin. A copy sent by a client is always removed.
pub const ORIGIN_MARKER_HEADER: &str = "x-envoy-presign-origin";

/// The request facts the filter needs, borrowed from the serialized map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// `:method`, or empty if it was not UTF-8.
    pub method: &'a str,
    /// `:authority`, or empty.
    pub authority: &'a str,
    /// `:path` as raw bytes; `None` when absent (e.g. CONNECT). Not always
    /// UTF-8: a path that matches no origin passes through whatever its bytes.
    pub path: Option<&'a [u8]>,
    /// `x-request-id`, the correlation id used in logs, as sent: decoded only
    /// for a log line (`request_id`), not on every request.
    pub request_id_raw: &'a [u8],
    /// `origin` (the browser's, for CORS on a redirect), if sent.
    pub origin: Option<&'a str>,
    /// Names of headers that carry client credentials, to strip.
    pub auth_headers: Vec<&'a str>,
    /// Whether the client sent the origin marker header (it is removed).
    pub marker: bool,
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
    /// `x-request-id` for a log line; empty if absent or not UTF-8.
    pub fn request_id(&self) -> &'a str {
        std::str::from_utf8(self.request_id_raw).unwrap_or_default()
    }

    /// Picks the headers the filter needs out of a serialized request map.
    pub fn parse(buf: &'a [u8]) -> Self {
        let text = |v: &'a [u8]| std::str::from_utf8(v).unwrap_or_default();
        let mut view = Self::default();
        for (name, value) in pairs(buf) {
            match name {
                b":method" => view.method = text(value),
                b":authority" => view.authority = text(value),
                b":path" => view.path = Some(value),
                b"x-request-id" => view.request_id_raw = value,
                b"origin" => view.origin = Some(text(value)),
                _ if name.eq_ignore_ascii_case(ORIGIN_MARKER_HEADER.as_bytes()) => {
                    view.marker = true
                }
                // Judged on the bytes: only a credential header's name is
                // decoded (a name that is not UTF-8 is none).
                _ if crate::request::decide::is_client_auth_header_name(name) => {
                    if let Ok(name) = std::str::from_utf8(name) {
                        view.auth_headers.push(name);
                    }
                }
                _ => {}
            }
        }
        view
    }
}

/// Serializes header pairs the way the proxy-wasm ABI passes a map (the
/// inverse of `pairs`), for the headers of a local reply.
pub fn serialize<K: AsRef<[u8]>, V: AsRef<[u8]>>(map: &[(K, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let size = map
        .iter()
        .fold(4, |n, (k, v)| n + 10 + k.as_ref().len() + v.as_ref().len());
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len(map.len()));
    for (k, v) in map {
        out.extend_from_slice(&len(k.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;

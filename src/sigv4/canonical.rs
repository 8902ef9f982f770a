//! Request path → object key → S3-encoded path, and the client query string →
//! the allow-listed parameters that are forwarded and signed.
//!
//! The rules (documented in docs/):
//! - the part of the path after `strip_prefix` is percent-decoded exactly once;
//!   a `%` not followed by two hex digits is an error, `+` is a literal plus;
//! - `%2F` decodes to `/`: S3 keys are flat strings, so `a%2Fb` and `a/b` are the
//!   same key;
//! - the decoded key must be valid UTF-8, free of NUL, non-empty, at most 1024
//!   bytes (S3's limit), and have no `.` or `..` segment (S3 would take them
//!   literally, but caches and browsers in front of Envoy resolve them, so they
//!   are refused instead of guessed at);
//! - empty segments (`a//b`) are kept: they are a distinct key in S3;
//! - the key is encoded the way S3 (and boto3) expects: every byte except
//!   `A-Z a-z 0-9 - _ . ~ /` as upper-case `%XX`.
//!
//! The bucket is never taken from the request: it comes from the configuration,
//! so no path can reach another bucket.

/// S3's limit on the length of an object key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Most bytes the allow-listed query parameters may take once encoded for
/// signing: what a request can make the cache store (twice per entry) is
/// bounded by this and `MAX_KEY_BYTES`.
pub const MAX_SIGNED_QUERY_BYTES: usize = 2048;

/// Why a request path cannot be turned into an object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    InvalidEncoding,
    /// Decoded bytes that are not a usable key (bad UTF-8, NUL, dot segment,
    /// empty, too long).
    InvalidKey,
    /// The allow-listed query parameters are longer than
    /// `MAX_SIGNED_QUERY_BYTES` once encoded.
    QueryTooLong,
}

impl PathError {
    /// Stable error code for local replies, logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            PathError::InvalidEncoding => "invalid_path_encoding",
            PathError::InvalidKey => "invalid_object_key",
            PathError::QueryTooLong => "query_too_long",
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The bytes of `raw` with its `%XX` escapes decoded once (`+` a space when
/// `plus_is_space`), one at a time; an `Err` for a `%` not followed by two hex
/// digits, and nothing after it.
struct Decoded<'a> {
    rest: &'a [u8],
    plus_is_space: bool,
}

impl<'a> Decoded<'a> {
    fn new(raw: &'a str, plus_is_space: bool) -> Self {
        Self {
            rest: raw.as_bytes(),
            plus_is_space,
        }
    }
}

impl Iterator for Decoded<'_> {
    type Item = Result<u8, PathError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Walks the bytes by slicing, not by index arithmetic: each step
        // consumes exactly what it read, so no step can revisit or skip input.
        let (&b, tail) = self.rest.split_first()?;
        let (decoded, rest) = match b {
            b'%' => match tail {
                [hi, lo, after @ ..] => match (hex_val(*hi), hex_val(*lo)) {
                    (Some(h), Some(l)) => (Ok(h << 4 | l), after),
                    _ => (Err(PathError::InvalidEncoding), &[][..]),
                },
                _ => (Err(PathError::InvalidEncoding), &[][..]),
            },
            b'+' if self.plus_is_space => (Ok(b' '), tail),
            _ => (Ok(b), tail),
        };
        self.rest = rest;
        Some(decoded)
    }
}

/// Decodes `%XX` escapes once. `plus_is_space` selects form decoding (query
/// strings) over path decoding (where `+` is a literal plus).
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    for b in Decoded::new(raw, plus_is_space) {
        out.push(b?);
    }
    Ok(out)
}

/// Builds the object key from the raw path remainder (after `strip_prefix`).
pub fn object_key(key_prefix: &str, raw_rest: &str) -> Result<String, PathError> {
    // Decoded straight after the prefix: one buffer, checked as UTF-8 once
    // (the prefix is UTF-8, so the whole is exactly when the rest is).
    let mut key = Vec::with_capacity(key_prefix.len() + raw_rest.len());
    key.extend_from_slice(key_prefix.as_bytes());
    for b in Decoded::new(raw_rest, false) {
        key.push(b?);
    }
    let key = String::from_utf8(key).map_err(|_| PathError::InvalidKey)?;
    validate_key(&key)?;
    Ok(key)
}

fn validate_key(key: &str) -> Result<(), PathError> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES || bytes.contains(&0) {
        return Err(PathError::InvalidKey);
    }
    if bytes
        .split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(PathError::InvalidKey);
    }
    Ok(())
}

/// Upper-case hex digit of a nibble (`n` is always < 16 here).
fn hex_upper(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'A' + (n - 10)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode_into(out: &mut String, s: &str, keep_slash: bool) {
    let bytes = s.as_bytes();
    let kept = |b: u8| is_unreserved(b) || (keep_slash && b == b'/');
    // Runs of kept bytes (ASCII, so always whole characters) go in at once.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if kept(b) {
            continue;
        }
        push_ascii(out, bytes.get(run..i).unwrap_or_default());
        push_ascii(out, &[b'%', hex_upper(b >> 4), hex_upper(b & 0x0f)]);
        run = i + 1;
    }
    push_ascii(out, bytes.get(run..).unwrap_or_default());
}

/// Appends bytes known to be ASCII (a non-ASCII slice, never passed, is left out).
fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

/// Appends the S3 encoding of an object key (`/` kept) to `out`.
pub fn encode_key_into(out: &mut String, key: &str) {
    encode_into(out, key, true);
}

/// Appends the SigV4 encoding of a query name or value (`/` encoded) to `out`.
pub fn encode_query_into(out: &mut String, s: &str) {
    encode_into(out, s, false);
}

/// Which allow-list entry a raw query parameter name is, if any. Names that
/// need no decoding are compared as they are; a name that does not decode is
/// simply not allowed (it never fails the request), and a name too long to be
/// an allowed one is never decoded.
fn allowed_index(raw_name: &str, allow: &[String], longest: usize) -> Option<usize> {
    if !raw_name.contains(['%', '+']) {
        return allow.iter().position(|n| n == raw_name);
    }
    if raw_name.len() > longest.saturating_mul(3) {
        return None;
    }
    let decoded = percent_decode(raw_name, true).ok()?;
    allow.iter().position(|n| n.as_bytes() == decoded)
}

/// The allow-listed parameters of a raw query string, decoded, in the order of
/// the allow-list. The first occurrence of a name wins; names are exact and
/// case-sensitive (S3's `versionId` is not `VersionId`). Anything else —
/// including every client `X-Amz-*` parameter — is dropped. One pass over the
/// query; only the values of allowed names are decoded, so only they can fail
/// the request (`InvalidEncoding`), and together they may take at most
/// `MAX_SIGNED_QUERY_BYTES` once encoded (`QueryTooLong`).
pub fn allowed_query(
    raw_query: &str,
    allow: &[String],
) -> Result<Vec<(String, String)>, PathError> {
    if allow.is_empty() || raw_query.is_empty() {
        return Ok(Vec::new());
    }
    let longest = allow.iter().map(String::len).max().unwrap_or(0);
    let mut found: Vec<Option<String>> = vec![None; allow.len()];
    let mut encoded_len = 0usize;
    for pair in raw_query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = allowed_index(raw_name, allow, longest) else {
            continue;
        };
        let Some(slot @ None) = found.get_mut(i) else {
            continue;
        };
        // A raw value is at most three times its encoded form: refuse a
        // hopeless one before decoding it.
        if raw_value.len() > MAX_SIGNED_QUERY_BYTES.saturating_mul(3) {
            return Err(PathError::QueryTooLong);
        }
        let value = String::from_utf8(percent_decode(raw_value, true)?)
            .map_err(|_| PathError::InvalidEncoding)?;
        // `name=value`, and a `&` before every parameter but the first.
        let separator = usize::from(encoded_len > 0);
        encoded_len += separator + allow.get(i).map_or(0, String::len) + 1 + encoded_len_of(&value);
        if encoded_len > MAX_SIGNED_QUERY_BYTES {
            return Err(PathError::QueryTooLong);
        }
        *slot = Some(value);
    }
    Ok(allow
        .iter()
        .zip(found)
        .filter_map(|(name, value)| Some((name.clone(), value?)))
        .collect())
}

/// Length of the SigV4 encoding of `s` (`/` encoded).
fn encoded_len_of(s: &str) -> usize {
    s.bytes()
        .map(|b| if is_unreserved(b) { 1 } else { 3 })
        .sum()
}

/// Formats `name=value&…` with SigV4 encoding, the same bytes every time for
/// the same parameters (so signed URLs are reproducible).
pub fn format_query(params: &[(String, String)]) -> String {
    let mut q = String::new();
    format_query_into(&mut q, params);
    q
}

/// Appends `format_query(params)` to `out`, without an intermediate string.
pub fn format_query_into(out: &mut String, params: &[(String, String)]) {
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_query_into(out, k);
        out.push('=');
        encode_query_into(out, v);
    }
}

/// The prefix of every SigV4 query parameter, compared case-insensitively.
const AUTH_PREFIX: &[u8; 6] = b"x-amz-";

/// Whether a raw query parameter (`name` or `name=value`) carries SigV4 auth:
/// its name, percent-decoded once with `+` as a space (S3 decodes query names
/// before it reads them, as forms do), starts with `x-amz-` in any case, so
/// `X%2DAmz-Signature` and `%58-amz-date` are as much SigV4 material as
/// `X-Amz-Signature`. A name that is not valid percent-encoding (a `%` not
/// followed by two hex digits) counts too: what an origin would make of it
/// cannot be known, and a well-formed query never has one. The value is
/// never read. No allocation: the name is decoded a byte at a time.
fn is_auth_param(pair: &str) -> bool {
    let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
    let mut decoded = Decoded::new(raw_name, true);
    let mut prefixed = true;
    for want in AUTH_PREFIX {
        match decoded.next() {
            Some(Ok(b)) => prefixed &= b.eq_ignore_ascii_case(want),
            Some(Err(_)) => return true,
            None => {
                prefixed = false;
                break;
            }
        }
    }
    // Past the prefix, only a bad escape can still make it one.
    prefixed || decoded.any(|b| b.is_err())
}

/// How many client query parameters carry SigV4 auth (`X-Amz-*` in any case
/// and any percent-encoding, or a name that does not decode: see
/// `is_auth_param`); they are dropped, and counted for the `auth_stripped`
/// metric. Exactly the parameters `without_auth_params` removes.
pub fn count_auth_params(raw_query: &str) -> u64 {
    if raw_query.is_empty() {
        return 0;
    }
    let n = raw_query.split('&').filter(|p| is_auth_param(p)).count();
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The `:path` without its client `X-Amz-*` query parameters (however their
/// names are percent-encoded, and names that do not decode: see
/// `is_auth_param`), when it has any (for methods passed through unsigned:
/// client SigV4 material never reaches the origin); `None` when there is
/// nothing to remove. Every other parameter is kept byte for byte as the
/// client sent it, in its order.
pub fn without_auth_params(path: &str) -> Option<String> {
    let (p, q) = split_path(path);
    if count_auth_params(q) == 0 {
        return None;
    }
    let kept: Vec<&str> = q.split('&').filter(|p| !is_auth_param(p)).collect();
    Some(if kept.is_empty() {
        p.to_string()
    } else {
        format!("{p}?{}", kept.join("&"))
    })
}

/// Splits a `:path` into the path and the query (without `?`); a fragment,
/// which clients should never send, is dropped.
pub fn split_path(path: &str) -> (&str, &str) {
    // Byte searches: `#` and `?` are ASCII, so never inside a multi-byte
    // character, and a byte loop beats a `char` pattern's searcher on paths
    // this short (every request takes this).
    let at = |s: &str, b: u8| s.bytes().position(|c| c == b);
    let path = at(path, b'#').and_then(|i| path.get(..i)).unwrap_or(path);
    match at(path, b'?') {
        Some(i) => (
            path.get(..i).unwrap_or(path),
            path.get(i + 1..).unwrap_or(""),
        ),
        None => (path, ""),
    }
}

#[cfg(test)]
#[path = "canonical_tests.rs"]
mod tests;

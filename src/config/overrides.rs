//! S3's response overrides: the `response-*` query parameters that make the
//! store set a response header (`response-content-type`,
//! `response-content-disposition`, ...). Signed, they are the store's word,
//! so a value a client picks must never turn an uploaded object into a page:
//! `response-content-type=text/html` on a user's upload would be stored
//! cross-site scripting from the media domain. This module decides which
//! override names a request may carry and which values are signed. It never
//! calls a hostcall.

use crate::sigv4::canonical::percent_decode;

/// S3's content-type override.
pub const CONTENT_TYPE: &str = "response-content-type";
/// S3's content-disposition override.
pub const CONTENT_DISPOSITION: &str = "response-content-disposition";
/// The prefix every S3 response override shares.
const OVERRIDE_PREFIX: &[u8] = b"response-";

/// The `response-content-type` values allowed when the configuration lists
/// none: media and download types no browser renders as a document.
pub const DEFAULT_CONTENT_TYPES: [&str; 17] = [
    "application/octet-stream",
    "application/vnd.apple.mpegurl",
    "application/zip",
    "audio/aac",
    "audio/mp4",
    "audio/mpeg",
    "audio/ogg",
    "audio/webm",
    "image/avif",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "video/mp2t",
    "video/mp4",
    "video/quicktime",
    "video/webm",
];

/// Most `response_content_types` entries per origin (each is compared per request).
pub const MAX_CONTENT_TYPES: usize = 32;
/// Longest `response_content_types` entry.
pub const MAX_CONTENT_TYPE_BYTES: usize = 100;
/// Longest file name in a `response-content-disposition` value.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a request's overrides are refused; each is a 400 with its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideError {
    /// A `response-*` parameter the origin's `allow_query` does not name.
    NotAllowed,
    /// A `response-content-type` outside the origin's allow-list.
    ContentType,
    /// A `response-content-disposition` that is not `inline` or `attachment`
    /// with an optional well-formed file name.
    ContentDisposition,
}

/// Whether a media type makes a browser render or run the body as a
/// document (HTML, SVG, any XML, script): allowed only when an operator
/// lists it on purpose, and then warned about at startup.
pub fn renders_as_document(media_type: &str) -> bool {
    let t = media_type.to_ascii_lowercase();
    t.starts_with("text/") && t != "text/plain" && t != "text/csv" && t != "text/vtt"
        || t.ends_with("+xml")
        || t.starts_with("multipart/")
        || matches!(
            t.as_str(),
            "application/xml"
                | "application/javascript"
                | "application/ecmascript"
                | "application/x-javascript"
                | "application/pdf"
                | "application/x-shockwave-flash"
        )
}

/// Checks one configured content type: `type/subtype` of RFC 9110 token
/// characters, no parameters. Returns it lower-cased.
pub fn compile_content_type(value: &str) -> Result<String, &'static str> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match value.split_once('/') {
        Some((t, s)) if value.len() <= MAX_CONTENT_TYPE_BYTES && token(t) && token(s) => {
            Ok(value.to_ascii_lowercase())
        }
        _ => Err("must be a media type type/subtype (no parameters), at most 100 characters"),
    }
}

/// Refuses any `response-*` parameter of the raw query that `allow` does
/// not name exactly, then checks the values of the allowed overrides that
/// carry a risk. `allowed` holds the decoded allowed parameters.
pub fn check(
    raw_query: &str,
    allow: &[String],
    allowed: &[(String, String)],
    content_types: &[String],
) -> Result<(), OverrideError> {
    if !raw_query.is_empty()
        && raw_query
            .split('&')
            .any(|pair| is_unlisted_override(pair.split_once('=').map_or(pair, |(n, _)| n), allow))
    {
        return Err(OverrideError::NotAllowed);
    }
    for (name, value) in allowed {
        if name == CONTENT_TYPE && !content_types.iter().any(|t| t.eq_ignore_ascii_case(value)) {
            return Err(OverrideError::ContentType);
        }
        if name == CONTENT_DISPOSITION && !is_safe_disposition(value) {
            return Err(OverrideError::ContentDisposition);
        }
    }
    Ok(())
}

/// Whether a raw parameter name is an S3 response override (compared
/// case-insensitively, after percent-decoding) that `allow` does not name.
fn is_unlisted_override(raw_name: &str, allow: &[String]) -> bool {
    if raw_name.len() < OVERRIDE_PREFIX.len() {
        return false;
    }
    let decoded;
    let name: &[u8] = if raw_name.contains(['%', '+']) {
        match percent_decode(raw_name, true) {
            Ok(d) => {
                decoded = d;
                &decoded
            }
            // Not a name S3 could read as an override either.
            Err(_) => return false,
        }
    } else {
        raw_name.as_bytes()
    };
    name.get(..OVERRIDE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(OVERRIDE_PREFIX))
        && !allow.iter().any(|a| a.as_bytes() == name)
}

/// `inline` or `attachment`, optionally followed by `; filename="name"`
/// (printable ASCII, no `"` or `\`) and/or `; filename*=UTF-8''name`
/// (RFC 8187 attribute characters and `%XX`), each at most once, in that
/// order. Keywords are case-insensitive.
fn is_safe_disposition(value: &str) -> bool {
    let mut parts = value.split(';');
    let kind = parts.next().unwrap_or_default().trim_end_matches(' ');
    if !kind.eq_ignore_ascii_case("inline") && !kind.eq_ignore_ascii_case("attachment") {
        return false;
    }
    let mut seen_plain = false;
    let mut seen_ext = false;
    for part in parts {
        let part = part.trim_start_matches(' ').trim_end_matches(' ');
        let Some((name, v)) = part.split_once('=') else {
            return false;
        };
        if name.eq_ignore_ascii_case("filename") && !seen_plain && !seen_ext {
            seen_plain = true;
            if !is_quoted_filename(v) {
                return false;
            }
        } else if name.eq_ignore_ascii_case("filename*") && !seen_ext {
            seen_ext = true;
            if !is_ext_filename(v) {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// `"name"`: 1 to 255 printable ASCII characters, no `"` or `\`.
fn is_quoted_filename(v: &str) -> bool {
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    (1..=MAX_FILENAME_BYTES).contains(&inner.len())
        && inner
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// `UTF-8''name`: RFC 8187 attribute characters and `%XX` escapes that
/// decode to UTF-8 without control characters, at most 255 bytes decoded.
fn is_ext_filename(v: &str) -> bool {
    let Some(encoded) = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("UTF-8''"))
        .and_then(|_| v.get(7..))
    else {
        return false;
    };
    let attr_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b);
    if encoded.is_empty() || !encoded.bytes().all(attr_char) {
        return false;
    }
    match percent_decode(encoded, false).map(String::from_utf8) {
        Ok(Ok(name)) => {
            (1..=MAX_FILENAME_BYTES).contains(&name.len())
                && !name.chars().any(|c| c.is_control() || is_line_separator(c))
        }
        _ => false,
    }
}

/// Unicode's line and paragraph separators, which some log and header
/// consumers treat as line breaks.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')
}

#[cfg(test)]
#[path = "overrides_tests.rs"]
mod tests;

//! SigV4 query-string presigning of one object request. Pure: the time is an
//! argument, the output is the new `:path`.
//!
//! What S3 verifies decides the shape: the path is encoded once by us (no
//! double encoding, no normalisation), the only signed header is `host`, the
//! payload is `UNSIGNED-PAYLOAD`, and a session token is part of the signed
//! query. For this one shape the canonical request is written directly, and
//! the `aws-sigv4` crate supplies the cryptography (`generate_signing_key`,
//! `calculate_signature`). The derived signing key only changes with the UTC
//! date, region and service, so it is kept instead of re-derived (four HMACs)
//! on every request. The tests check every URL against boto3's and against
//! `aws-sigv4`'s own full signer.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest, Sha256};

use crate::sigv4::canonical::{encode_key_into, encode_query_into, format_query_into};
use crate::sigv4::credentials::Credentials;

/// The two methods the filter signs; each URL is valid for its own method only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: download (and ranged download).
    Get,
    /// `HEAD`: metadata only.
    Head,
}

impl Method {
    /// Recognises the signable methods (exact, upper-case, as HTTP requires).
    pub fn parse(m: &str) -> Option<Self> {
        match m {
            "GET" => Some(Method::Get),
            "HEAD" => Some(Method::Head),
            _ => None,
        }
    }

    /// The method as it appears on the wire and in the canonical request.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }
}

/// Why signing failed; the category is stable and never carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// The URL could not be built (kept for the metrics' stable categories).
    InvalidUri,
    /// The signing time is not representable (before 1970 or after 9999).
    Signer,
}

impl SignError {
    /// Stable category for logs and metrics.
    pub fn category(self) -> &'static str {
        match self {
            SignError::InvalidUri => "invalid_uri",
            SignError::Signer => "signer",
        }
    }
}

/// A signing key derived for one UTC day, region and service.
#[derive(Clone)]
struct DerivedKey {
    day: u64,
    region: String,
    service: String,
    key: Vec<u8>,
}

/// How many (day, region, service) keys a signer keeps: a few origins' worth.
const KEY_CACHE_SIZE: usize = 8;

/// Credentials ready for signing, built once per configuration.
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    fingerprint: String,
    keys: RefCell<Vec<DerivedKey>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Keeps the credentials for signing.
    pub fn new(creds: &Credentials) -> Self {
        Self {
            credentials: creds.clone(),
            fingerprint: fingerprint(creds),
            keys: RefCell::new(Vec::new()),
        }
    }

    /// When the credentials stop working (Unix ms); `None` for static keys.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.credentials.expires_at_ms()
    }

    /// The access key id, which identifies the credentials in cache keys and logs.
    pub fn access_key_id(&self) -> &str {
        self.credentials.access_key_id()
    }

    /// Identifies the whole credential set (key id, secret, token) in cache
    /// identities, so rotating the secret or the token for the same key id
    /// never serves a URL signed with the old one. A truncated SHA-256: it
    /// reveals nothing usable about the secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs `string_to_sign` with the key of `day` (days since the epoch).
    fn signature(
        &self,
        at: SystemTime,
        day: u64,
        region: &str,
        service: &str,
        string_to_sign: &str,
    ) -> String {
        let mut keys = self.keys.borrow_mut();
        if let Some(k) = keys
            .iter()
            .find(|k| k.day == day && k.region == region && k.service == service)
        {
            return calculate_signature(&k.key, string_to_sign.as_bytes());
        }
        let key = generate_signing_key(self.credentials.secret_access_key(), at, region, service)
            .as_ref()
            .to_vec();
        let signature = calculate_signature(&key, string_to_sign.as_bytes());
        if keys.len() >= KEY_CACHE_SIZE {
            keys.remove(0);
        }
        keys.push(DerivedKey {
            day,
            region: region.to_string(),
            service: service.to_string(),
            key,
        });
        signature
    }
}

fn fingerprint(creds: &Credentials) -> String {
    let mut h = Sha256::new();
    h.update(b"envoy-presign credential fingerprint\0");
    h.update(creds.access_key_id().as_bytes());
    h.update(b"\0");
    h.update(creds.secret_access_key().as_bytes());
    h.update(b"\0");
    h.update(creds.session_token().unwrap_or_default().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(creds.access_key_id().len() + 17);
    out.push_str(creds.access_key_id());
    out.push('/');
    push_hex(&mut out, digest.get(..8).unwrap_or_default());
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

/// The signed request: what the filter puts in `:path` (and `:authority`, from
/// the origin), plus when the URL stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// Path and query of the presigned URL.
    pub path: String,
    /// The instant `X-Amz-Date + X-Amz-Expires`, after which S3 refuses the URL.
    pub expires_at: SystemTime,
}

/// Where URLs are signed for: all SigV4 needs to know of an origin, so the
/// signer depends on no configuration type (the configuration's `Origin`
/// lends one with `Origin::target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The `host` the signature covers (`host[:port]`).
    pub authority: &'a str,
    /// Path prefix of every object's URL: `/bucket` for path style, empty for
    /// virtual-hosted style.
    pub url_path_prefix: &'a str,
    /// SigV4 region.
    pub region: &'a str,
    /// SigV4 service name.
    pub service: &'a str,
}

/// The encoded path (without query) of the object on the target.
pub fn object_path(target: &Target<'_>, key: &str) -> String {
    let mut p = String::with_capacity(target.url_path_prefix.len() + 1 + key.len() * 3);
    object_path_into(&mut p, target, key);
    p
}

/// Appends `object_path(target, key)` to `out`.
pub fn object_path_into(out: &mut String, target: &Target<'_>, key: &str) {
    out.push_str(target.url_path_prefix);
    out.push('/');
    encode_key_into(out, key);
}

/// The object's URL path and allowed query without a signature: what an
/// unsigned fallback (`on_error: passthrough`) forwards.
pub fn unsigned_path(target: &Target<'_>, key: &str, query: &[(String, String)]) -> String {
    let mut p = object_path(target, key);
    if !query.is_empty() {
        p.push('?');
        format_query_into(&mut p, query);
    }
    p
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a Unix time (proleptic Gregorian, UTC).
fn amz_dates(secs: u64) -> Option<(String, String)> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
    let z = i64::try_from(days).ok()? + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let date = format!("{year:04}{month:02}{day:02}");
    let datetime = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    Some((date, datetime))
}

/// Presigns `method key` on `target` at time `now` (whole seconds) for `expires_in`.
pub fn presign(
    target: &Target<'_>,
    method: Method,
    key: &str,
    query: &[(String, String)],
    signer: &Signer,
    now: SystemTime,
    expires_in: Duration,
) -> Result<Presigned, SignError> {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignError::Signer)?
        .as_secs();
    let (date, datetime) = amz_dates(secs).ok_or(SignError::Signer)?;
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    let creds = &signer.credentials;
    let credential = format!(
        "{}/{date}/{}/{}/aws4_request",
        creds.access_key_id(),
        target.region,
        target.service
    );
    let expires = expires_in.as_secs().to_string();

    // The X-Amz-* parameters in the order boto3 writes them; the signature
    // (appended last) is not part of the canonical request.
    let mut amz: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", &datetime),
        ("X-Amz-Expires", &expires),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = creds.session_token() {
        amz.push(("X-Amz-Security-Token", token));
    }

    // Encoded pairs: client parameters first (as boto3), then ours.
    let encode = |k: &str, v: &str| {
        let mut ek = String::with_capacity(k.len());
        encode_query_into(&mut ek, k);
        let mut ev = String::with_capacity(v.len() + 16);
        encode_query_into(&mut ev, v);
        (ek, ev)
    };
    let pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| encode(k, v))
        .chain(amz.iter().map(|(k, v)| encode(k, v)))
        .collect();
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();

    let path = object_path(target, key);
    let mut creq = String::with_capacity(
        256 + path.len()
            + pairs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    creq.push_str(method.as_str());
    creq.push('\n');
    creq.push_str(&path);
    creq.push('\n');
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            creq.push('&');
        }
        creq.push_str(k);
        creq.push('=');
        creq.push_str(v);
    }
    creq.push_str("\nhost:");
    creq.push_str(target.authority);
    creq.push_str("\n\nhost\nUNSIGNED-PAYLOAD");

    let mut sts = String::with_capacity(160);
    sts.push_str("AWS4-HMAC-SHA256\n");
    sts.push_str(&datetime);
    sts.push('\n');
    sts.push_str(
        credential
            .get(creds.access_key_id().len() + 1..)
            .unwrap_or_default(),
    );
    sts.push('\n');
    push_hex(&mut sts, &Sha256::digest(creq.as_bytes()));

    let signature = signer.signature(at, secs / 86_400, target.region, target.service, &sts);

    let mut out = path;
    out.reserve(
        pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
            + 90,
    );
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.push_str("&X-Amz-Signature=");
    out.push_str(&signature);
    Ok(Presigned {
        path: out,
        expires_at: at + expires_in,
    })
}

#[cfg(test)]
#[path = "presign_tests.rs"]
mod tests;

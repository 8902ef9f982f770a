//! SigV4 query-string presigning of one object request. Pure: the time is an
//! argument, the output is the new `:path`.
//!
//! What S3 verifies decides the shape: the path is encoded once by us (no
//! double encoding, no normalisation), the only signed header is `host`, the
//! payload is `UNSIGNED-PAYLOAD`, and a session token is part of the signed
//! query. For this one shape the canonical request is hashed in a few large
//! pieces (for most URLs straight from the URL's own buffer, whose query is
//! then the canonical query), and the `aws-sigv4` crate derives the signing key
//! (`generate_signing_key`). The derived key only changes with the UTC date,
//! region and service, so it is kept instead of re-derived (four HMACs) on
//! every request, as the two SHA-256 states of its HMAC after the padded key
//! (what an HMAC recomputes first on every call), and its credential scope;
//! the string to sign's head (algorithm, date, scope: one SHA-256 block) is
//! kept with it for the second it was made. In Wasm, where SHA-256 has no CPU
//! instructions, a signature's cost is mostly its blocks: 8 for a short key
//! without a session token (5 of canonical request, 2 of string to sign, 1
//! outer; a token adds its encoded length to the canonical request). The
//! tests check every URL against boto3's and against `aws-sigv4`'s own full
//! signer, and the HMAC against `aws-sigv4`'s `calculate_signature`.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4::generate_signing_key;
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

/// A signing key derived for one UTC day, region and service, kept as what
/// signing with it needs: the HMAC's two SHA-256 states after the padded key,
/// and the credential scope (`YYYYMMDD/region/service/aws4_request`).
#[derive(Clone)]
struct DerivedKey {
    day: u64,
    region: String,
    service: String,
    hmac: HmacKey,
    scope: String,
    /// `X-Amz-Credential`'s value, query-encoded: the access key id and the scope.
    credential: String,
    /// The HMAC of the string to sign up to the canonical request's hash, for
    /// the second it was made: signatures within one second share its first
    /// block's compression.
    second: Option<(AmzDate, Sha256)>,
}

impl DerivedKey {
    /// The HMAC's inner hash after the string to sign's fixed head (algorithm,
    /// `when`, scope), from this second's copy when there is one.
    fn string_to_sign_head(&mut self, when: AmzDate) -> Sha256 {
        if let Some((at, head)) = &self.second {
            if *at == when {
                return head.clone();
            }
        }
        let mut head = self.hmac.start();
        head.update("AWS4-HMAC-SHA256\n");
        head.update(when.datetime());
        head.update("\n");
        head.update(&self.scope);
        head.update("\n");
        self.second = Some((when, head.clone()));
        head
    }
}

/// HMAC-SHA256 with a fixed key (RFC 2104), its inner and outer hash states
/// computed once: each MAC then costs the message's compressions and two more,
/// not four.
#[derive(Clone)]
struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    /// The states after `key ^ ipad` and `key ^ opad`; a key longer than the
    /// block (never here: derived keys are 32 bytes) is hashed first.
    fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > block.len() {
            let digest = Sha256::digest(key);
            for (b, k) in block.iter_mut().zip(digest.iter()) {
                *b = *k;
            }
        } else {
            for (b, k) in block.iter_mut().zip(key) {
                *b = *k;
            }
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        Self { inner, outer }
    }

    /// A hasher for the message, to be finished with `finish`.
    fn start(&self) -> Sha256 {
        self.inner.clone()
    }

    /// The MAC of what `inner` (from `start`) was given.
    fn finish(&self, inner: Sha256) -> [u8; 32] {
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// How many (day, region, service) keys a signer keeps: a few origins' worth.
const KEY_CACHE_SIZE: usize = 8;

/// Credentials ready for signing, built once per configuration.
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    /// The session token query-encoded once (it is long, and the same in
    /// every URL these credentials sign).
    token: Option<String>,
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
        let token = creds.session_token().map(|t| {
            let mut encoded = String::with_capacity(t.len() * 3 / 2);
            encode_query_into(&mut encoded, t);
            encoded
        });
        Self {
            credentials: creds.clone(),
            token,
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

    /// Runs `f` with the key of `day` (days since the epoch), region and
    /// service, deriving and keeping it if this signer has not yet (`None`
    /// never happens: the key was found or just added).
    fn with_key<R>(
        &self,
        at: SystemTime,
        day: u64,
        date: &str,
        target: &Target<'_>,
        f: impl FnOnce(&mut DerivedKey) -> R,
    ) -> Option<R> {
        let mut keys = self.keys.borrow_mut();
        let found = keys
            .iter()
            .position(|k| k.day == day && k.region == target.region && k.service == target.service);
        let index = match found {
            Some(i) => i,
            None => {
                let secret = self.credentials.secret_access_key();
                let key = generate_signing_key(secret, at, target.region, target.service);
                let scope = format!("{date}/{}/{}/aws4_request", target.region, target.service);
                if keys.len() >= KEY_CACHE_SIZE {
                    keys.remove(0);
                }
                keys.push(DerivedKey {
                    day,
                    region: target.region.to_string(),
                    service: target.service.to_string(),
                    hmac: HmacKey::new(key.as_ref()),
                    credential: encoded_credential(self.credentials.access_key_id(), &scope),
                    scope,
                    second: None,
                });
                keys.len() - 1
            }
        };
        keys.get_mut(index).map(f)
    }
}

/// `access_key_id/scope`, query-encoded.
fn encoded_credential(access_key_id: &str, scope: &str) -> String {
    let mut out = String::with_capacity((access_key_id.len() + scope.len()) * 3 / 2);
    encode_query_into(&mut out, access_key_id);
    out.push_str("%2F");
    encode_query_into(&mut out, scope);
    out
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

/// A SHA-256 digest in lower-case hex, on the stack.
fn hex_lower(digest: &[u8; 32]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest) {
        for (o, nibble) in pair.iter_mut().zip([b >> 4, b & 0x0f]) {
            *o = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
        }
    }
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

/// `YYYYMMDDTHHMMSSZ` of a Unix time (proleptic Gregorian, UTC), written
/// without allocating; its first eight bytes are the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AmzDate([u8; 16]);

impl AmzDate {
    /// `YYYYMMDD`.
    fn date(&self) -> &str {
        self.datetime().get(..8).unwrap_or_default()
    }

    /// `YYYYMMDDTHHMMSSZ`.
    fn datetime(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The `AmzDate` of a Unix time; `None` outside 1970 to 9999.
fn amz_dates(secs: u64) -> Option<AmzDate> {
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
    let mut out = *b"00000000T000000Z";
    let fields = [
        (0, 4, u64::try_from(year).ok()?),
        (4, 2, u64::try_from(month).ok()?),
        (6, 2, u64::try_from(day).ok()?),
        (9, 2, rem / 3600),
        (11, 2, rem % 3600 / 60),
        (13, 2, rem % 60),
    ];
    for (at, width, mut value) in fields {
        for i in (at..at + width).rev() {
            let digit = u8::try_from(value % 10).ok()?;
            *out.get_mut(i)? = b'0' + digit;
            value /= 10;
        }
    }
    Some(AmzDate(out))
}

/// A number in decimal, on the stack (a `u64` has at most 20 digits): the
/// URL's `X-Amz-Expires` without an allocation.
struct Decimal {
    digits: [u8; 20],
    at: usize,
}

impl Decimal {
    fn new(n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            if let (Some(d), Ok(v)) = (digits.get_mut(at), u8::try_from(n % 10)) {
                *d = b'0' + v;
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        Self { digits, at }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.digits.get(self.at..).unwrap_or_default()).unwrap_or_default()
    }
}

/// One query parameter, encoded, as two ranges of a shared buffer.
#[derive(Clone, Copy)]
struct Pair {
    key: (usize, usize),
    value: (usize, usize),
}

impl Pair {
    /// Encodes `k=v` onto `buf` and remembers where each half is.
    fn encode(buf: &mut String, k: &str, v: &str) -> Self {
        let k0 = buf.len();
        encode_query_into(buf, k);
        let v0 = buf.len();
        encode_query_into(buf, v);
        Self {
            key: (k0, v0),
            value: (v0, buf.len()),
        }
    }

    /// Appends `k=v` as they are: names and values made only of unreserved
    /// characters, or already encoded.
    fn raw(buf: &mut String, k: &str, v: &str) -> Self {
        let k0 = buf.len();
        buf.push_str(k);
        let v0 = buf.len();
        buf.push_str(v);
        Self {
            key: (k0, v0),
            value: (v0, buf.len()),
        }
    }

    /// The encoded name and value.
    fn parts<'b>(&self, buf: &'b str) -> (&'b str, &'b str) {
        (
            buf.get(self.key.0..self.key.1).unwrap_or_default(),
            buf.get(self.value.0..self.value.1).unwrap_or_default(),
        )
    }
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
    let when = amz_dates(secs).ok_or(SignError::Signer)?;
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    let day = secs / 86_400;
    signer
        .with_key(at, day, when.date(), target, |k| {
            sign_with(target, method, key, query, signer, k, when, expires_in)
        })
        .ok_or(SignError::Signer)
        .map(|path| Presigned {
            path,
            expires_at: at + expires_in,
        })
}

/// The X-Amz-* parameters every URL carries (the session token's aside), in
/// the order boto3 writes them, which is also their sorted order: a URL
/// with no client parameter and no token needs no sort for its canonical
/// request (`amz_params_are_sorted` holds it to that).
const AMZ_PARAMS: [&str; 5] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
];

/// The presigned path: the URL's query in boto3's order, the canonical
/// request's hash, the string to sign's tail added to its head's HMAC state,
/// the signature appended.
#[allow(clippy::too_many_arguments)]
fn sign_with(
    target: &Target<'_>,
    method: Method,
    key: &str,
    query: &[(String, String)],
    signer: &Signer,
    k: &mut DerivedKey,
    when: AmzDate,
    expires_in: Duration,
) -> String {
    let url = Url {
        target,
        method,
        key,
        when,
        expires: Decimal::new(expires_in.as_secs()),
    };
    let (mut path, canonical_hash) = match signer.token.as_deref() {
        None if query.is_empty() => url.amz_params_only(k),
        token => url.with_sorted_params(k, query, token),
    };
    let mut sts = k.string_to_sign_head(when);
    sts.update(hex_lower(&canonical_hash));
    let signature = k.hmac.finish(sts);

    path.push_str("&X-Amz-Signature=");
    path.push_str(std::str::from_utf8(&hex_lower(&signature)).unwrap_or_default());
    path
}

/// What every URL of one signature is made of, whichever way its query is
/// written.
struct Url<'a> {
    target: &'a Target<'a>,
    method: Method,
    key: &'a str,
    when: AmzDate,
    expires: Decimal,
}

impl Url<'_> {
    /// The values of `AMZ_PARAMS`, in its order: the algorithm, the
    /// credential (query-encoded once per key), the date, the expiry in
    /// seconds and the signed headers.
    fn amz_values<'v>(&'v self, k: &'v DerivedKey) -> [&'v str; AMZ_PARAMS.len()] {
        [
            "AWS4-HMAC-SHA256",
            k.credential.as_str(),
            self.when.datetime(),
            self.expires.as_str(),
            "host",
        ]
    }

    /// Writes the object's encoded path into `path` (empty) and returns its
    /// length.
    fn push_object_path(&self, path: &mut String) -> usize {
        object_path_into(path, self.target, self.key);
        path.len()
    }

    /// The SHA-256 of the canonical request of `object` (encoded) with
    /// `canonical_query` (sorted, encoded): its one signed header is `host`,
    /// its payload unsigned.
    fn canonical_hash(&self, object: &[u8], canonical_query: &[u8]) -> [u8; 32] {
        let mut creq = Sha256::new();
        creq.update(self.method.as_str().as_bytes());
        creq.update(b"\n");
        creq.update(object);
        creq.update(b"\n");
        creq.update(canonical_query);
        creq.update(b"\nhost:");
        creq.update(self.target.authority.as_bytes());
        creq.update(b"\n\nhost\nUNSIGNED-PAYLOAD");
        creq.finalize().into()
    }

    /// Most URLs: no client parameter and no session token. `AMZ_PARAMS`'
    /// order is both boto3's and the sorted one, so the URL's query is the
    /// canonical query, hashed from the URL itself: one buffer, written once.
    fn amz_params_only(&self, k: &DerivedKey) -> (String, [u8; 32]) {
        let values = self.amz_values(k);
        let mut path = String::with_capacity(
            self.target.url_path_prefix.len()
                + self.key.len() * 3
                + AMZ_PARAMS
                    .iter()
                    .chain(&values)
                    .map(|p| p.len() + 1)
                    .sum::<usize>()
                + 86,
        );
        let object_len = self.push_object_path(&mut path);
        for (i, (name, value)) in AMZ_PARAMS.into_iter().zip(values).enumerate() {
            push_param(&mut path, i == 0, name, value);
        }
        // The object path, then the query without its `?`.
        let (object, query) = path
            .as_bytes()
            .split_at_checked(object_len)
            .unwrap_or_default();
        let hash = self.canonical_hash(object, query.get(1..).unwrap_or_default());
        (path, hash)
    }

    /// A URL with client parameters or a session token: the parameters
    /// encoded once into one buffer, written into the URL in boto3's order
    /// (the client's first), then sorted into the canonical query.
    fn with_sorted_params(
        &self,
        k: &DerivedKey,
        query: &[(String, String)],
        token: Option<&str>,
    ) -> (String, [u8; 32]) {
        let mut buf = String::with_capacity(
            160 + query.iter().map(|(a, b)| a.len() + b.len()).sum::<usize>()
                + k.credential.len()
                + token.map_or(0, str::len),
        );
        // Client parameters first (as boto3), then the X-Amz-* ones in the
        // order boto3 writes them; the signature (appended last) is not
        // signed. Ours are unreserved characters or encoded once per key (the
        // credential) or per signer (the token).
        let mut pairs: Vec<Pair> = Vec::with_capacity(query.len() + 6);
        for (name, value) in query {
            pairs.push(Pair::encode(&mut buf, name, value));
        }
        for (name, value) in AMZ_PARAMS.into_iter().zip(self.amz_values(k)) {
            pairs.push(Pair::raw(&mut buf, name, value));
        }
        if let Some(token) = token {
            pairs.push(Pair::raw(&mut buf, "X-Amz-Security-Token", token));
        }
        let mut path = String::with_capacity(
            self.target.url_path_prefix.len()
                + self.key.len() * 3
                + 2
                + buf.len()
                + 2 * pairs.len()
                + 84,
        );
        let object_len = self.push_object_path(&mut path);
        for (i, pair) in pairs.iter().enumerate() {
            let (name, value) = pair.parts(&buf);
            push_param(&mut path, i == 0, name, value);
        }
        pairs.sort_by(|a, b| a.parts(&buf).cmp(&b.parts(&buf)));
        let mut sorted = String::with_capacity(buf.len() + 2 * pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let (name, value) = pair.parts(&buf);
            if i > 0 {
                sorted.push('&');
            }
            sorted.push_str(name);
            sorted.push('=');
            sorted.push_str(value);
        }
        let object = path.get(..object_len).unwrap_or_default().as_bytes();
        let hash = self.canonical_hash(object, sorted.as_bytes());
        (path, hash)
    }
}

/// Appends one `name=value` to a URL's query: `?` before the first.
fn push_param(path: &mut String, first: bool, name: &str, value: &str) {
    path.push(if first { '?' } else { '&' });
    path.push_str(name);
    path.push('=');
    path.push_str(value);
}

#[cfg(test)]
#[path = "presign_tests.rs"]
mod tests;

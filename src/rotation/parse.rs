//! Parsers for the answers of AWS credential providers: the instance metadata
//! service (role name and role credentials), the ECS / EKS Pod Identity
//! container endpoint, and STS `AssumeRole` / `AssumeRoleWithWebIdentity` in
//! JSON or XML.
//!
//! Functions from bytes to [`Credentials`], with no panic on any input. An
//! error is a [`ParseError`], a stable category that never carries a value
//! from the body, so a secret key or session token can never reach a log line
//! through it.
//!
//! Every field of an answer is bounded and checked (see the `MAX_*` consts,
//! which the memory bounds of docs/cache.md cite): the key id, secret and token are
//! visible ASCII of a bounded length, and the expiry is at most
//! [`MAX_CREDENTIAL_LIFETIME_MS`] ahead of the time the answer is read at,
//! an argument: the parsers are pure (no hostcall, no clock).

use std::fmt;

use serde_json::{Map, Value};

use crate::sigv4::credentials::Credentials;

/// Largest provider body accepted; anything larger is refused before parsing
/// (`too_large`). The filter reads at most this + 1 bytes of an answer, and
/// envoy/credentials.yaml has Envoy itself give up on a larger one (its
/// `http.async_response_buffer_limit` runtime key): without that, Envoy buffers
/// up to 32 MiB of an answer before the filter sees a byte. An honest answer
/// with every field at its bound below is about 9 KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest access key id accepted, in bytes (= characters: visible ASCII).
/// AWS documents 16 to 128 characters (IAM `AccessKey`, STS `Credentials`).
/// No lower bound and no alphabet beyond visible ASCII: S3-compatible stores
/// issue short, lower-case and other styles of ids. The id is copied into every
/// cache entry (its `X-Amz-Credential`, percent-encoded: up to 3 × this) and
/// into log lines.
pub const MAX_ACCESS_KEY_ID_LEN: usize = 128;

/// Longest secret access key accepted, in bytes. AWS's are 40 characters, and
/// S3-compatible stores' 40 to 64 (Cloudflare R2: 64); this is twice the
/// longest known. A secret is kept once per worker and in shared data, never in
/// a cache entry (entries hold a fingerprint).
pub const MAX_SECRET_ACCESS_KEY_LEN: usize = 128;

/// Longest session token accepted, in bytes. AWS does not fix its size (STS:
/// "make no assumptions about the maximum size"): IMDS, ECS and STS tokens are
/// about 1-2 KB and grow with session policies and tags (EKS Pod Identity adds
/// six tags) to about 3 KB; MinIO's and SeaweedFS's STS tokens are JWTs that
/// carry the session policy, a few KB. 8 KiB is over twice the largest of
/// those. The token is in every presigned URL (`X-Amz-Security-Token`), so a
/// shared cache entry holds it percent-encoded: up to 3 × this (24 KiB).
pub const MAX_SESSION_TOKEN_LEN: usize = 8192;

/// Longest life accepted for credentials, from the moment their answer is read
/// to their `Expiration`: 36 h, the longest AWS issues any temporary
/// credentials for (`GetSessionToken`, `GetFederationToken`). Nothing the
/// filter asks lasts as long: instance and container credentials live about
/// 6 h, and an STS `duration` is at most 12 h, so 24 h are left for a provider
/// whose clock runs ahead.
///
/// An answer claiming more (a year-9999 `Expiration` pinned a key until
/// restart) is refused, `expiration_too_far`, a `parse` failure: refused rather
/// than cut to now + 36 h, because an answer that breaks the providers'
/// contract says nothing trustworthy about the key's real life (cutting would
/// sign URLs until a time the provider never gave), because the refusal is
/// counted (`credential_refreshes{result="parse"}`, `credential_last_failure`)
/// and alerted on (`EnvoyPresignCredentialRefreshFailing`) while a cut would
/// hide the broken provider, and because the last good credentials keep
/// signing meanwhile. Accepted credentials therefore always have a refresh due within
/// this bound: `cred_refresh` starts one `refresh.before` ahead of expiry or at
/// half-life, whichever is later, so at most 36 h - `refresh.before` after the
/// answer was read.
pub const MAX_CREDENTIAL_LIFETIME_MS: u64 = 36 * 3_600_000;

/// The last millisecond of year 9999 (`9999-12-31T23:59:59.999Z`): no expiry is later.
const MAX_EXPIRY_MS: u64 = 253_402_300_799_999;

/// Deepest XML element nesting accepted (STS documents nest four levels).
const MAX_XML_DEPTH: usize = 32;

/// Why a provider's answer was not usable; stable category, never a value from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The body is larger than MAX_BODY_BYTES.
    TooLarge,
    /// Not the expected format (not JSON / not XML / wrong shape / not UTF-8).
    Malformed,
    /// A required field is missing or empty (names the field, e.g. "AccessKeyId").
    Missing(&'static str),
    /// The provider answered with an error document (IMDS Code != Success, STS
    /// `<ErrorResponse>`, JSON `{"Error":..}` / `{"code":..}`).
    ProviderError,
    /// Expiration present but not parseable.
    BadExpiration,
    /// (role name only) not a valid IAM role name.
    BadRoleName,
    /// A credential field (named, e.g. "AccessKeyId") is longer than its bound
    /// (`MAX_ACCESS_KEY_ID_LEN`, `MAX_SECRET_ACCESS_KEY_LEN`,
    /// `MAX_SESSION_TOKEN_LEN`) or holds a character outside visible ASCII
    /// (0x21-0x7E: no control, space, U+2028 or other non-ASCII character).
    BadField(&'static str),
    /// The credentials claim to last more than `MAX_CREDENTIAL_LIFETIME_MS`.
    ExpirationTooFar,
}

impl ParseError {
    /// A stable label for logs and metrics.
    pub fn category(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Missing(_) => "missing_field",
            Self::ProviderError => "provider_error",
            Self::BadExpiration => "bad_expiration",
            Self::BadRoleName => "bad_role_name",
            Self::BadField(_) => "bad_field",
            Self::ExpirationTooFar => "expiration_too_far",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "response larger than {MAX_BODY_BYTES} bytes"),
            Self::Malformed => write!(f, "response is not in the expected format"),
            Self::Missing(field) => write!(f, "response has no {field}"),
            Self::ProviderError => write!(f, "provider answered with an error document"),
            Self::BadExpiration => write!(f, "response has an unreadable Expiration"),
            Self::BadRoleName => write!(f, "response is not a valid IAM role name"),
            Self::BadField(field) => write!(
                f,
                "response has a {field} that is too long or not visible ASCII"
            ),
            Self::ExpirationTooFar => write!(
                f,
                "response has credentials expiring more than {} h from now",
                MAX_CREDENTIAL_LIFETIME_MS / 3_600_000
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Which STS action answered (their documents differ only by the element prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsAction {
    /// `AssumeRole` (a role assumed with other credentials).
    AssumeRole,
    /// `AssumeRoleWithWebIdentity` (an OIDC token, as on EKS with IRSA).
    AssumeRoleWithWebIdentity,
}

impl StsAction {
    /// The action's name as STS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRole",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
        }
    }

    fn response_element(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRoleResponse",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentityResponse",
        }
    }

    fn result_element(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRoleResult",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentityResult",
        }
    }
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// RFC 3339 timestamp -> Unix milliseconds: `2021-09-18T03:31:56Z`, with
/// fractional seconds (`…56.359Z`, truncated to the millisecond), with an
/// offset `+02:00` / `-05:30` (converted to UTC), lower-case `t` / `z`
/// accepted; year 1970..=9999; month, day (leap years included), hour, minute
/// and second ranges checked (no leap second 60). `None` if invalid, before
/// 1970 or after 9999 in UTC.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let mut c = Cursor(s.as_bytes());
    let year = c.digits(4)?;
    c.byte(b'-')?;
    let month = c.digits(2)?;
    c.byte(b'-')?;
    let day = c.digits(2)?;
    c.byte_of(b"Tt")?;
    let hour = c.digits(2)?;
    c.byte(b':')?;
    let minute = c.digits(2)?;
    c.byte(b':')?;
    let second = c.digits(2)?;
    let mut millis = 0;
    if c.byte(b'.').is_some() {
        // At least one digit; the first three are milliseconds, the rest are dropped.
        let mut n = 0;
        while let Some(d) = c.digit() {
            if n < 3 {
                millis = millis * 10 + d;
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match c.next()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let h = c.digits(2)?;
            c.byte(b':')?;
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 60 + m);
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    if !c.0.is_empty()
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    let ms = secs.checked_mul(1000)?.checked_add(i64::from(millis))?;
    u64::try_from(ms).ok().filter(|&ms| ms <= MAX_EXPIRY_MS)
}

/// An `Expiration` value as JSON: a string (RFC 3339) or a number of epoch
/// SECONDS (integer or float, as STS JSON gives) -> Unix ms. Negative, NaN or
/// absurd (after year 9999) -> `None`.
pub fn parse_expiration(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => parse_rfc3339_ms(s),
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                secs.checked_mul(1000).filter(|&ms| ms <= MAX_EXPIRY_MS)
            } else {
                let ms = n.as_f64()? * 1000.0;
                // Rounded: 1631935916.359 * 1000 is 1631935916358.9998 in binary.
                // MAX_EXPIRY_MS is below 2^53, so the cast is exact and in range.
                (ms.is_finite() && (0.0..=MAX_EXPIRY_MS as f64).contains(&ms))
                    .then(|| ms.round() as u64)
            }
        }
        _ => None,
    }
}

/// A forward-only reader over ASCII bytes, without indexing.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        self.byte_of(&[want])
    }

    fn byte_of(&mut self, set: &[u8]) -> Option<()> {
        match self.0.split_first() {
            Some((b, rest)) if set.contains(b) => {
                self.0 = rest;
                Some(())
            }
            _ => None,
        }
    }

    fn digit(&mut self) -> Option<u32> {
        match self.0.split_first() {
            Some((&b, rest)) if b.is_ascii_digit() => {
                self.0 = rest;
                Some(u32::from(b - b'0'))
            }
            _ => None,
        }
    }

    /// Exactly `n` ASCII digits (n <= 4, so no overflow).
    fn digits(&mut self, n: usize) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some(acc * 10 + self.digit()?))
    }
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------
// Instance metadata (IMDS) and container endpoints
// ---------------------------------------------------------------------------

fn check_size(body: &[u8]) -> Result<(), ParseError> {
    if body.len() > MAX_BODY_BYTES {
        Err(ParseError::TooLarge)
    } else {
        Ok(())
    }
}

/// IMDSv2 `GET /latest/meta-data/iam/security-credentials/` body: the role
/// name is the first non-empty line, trimmed. IAM role names are 1..=64
/// characters of `[A-Za-z0-9+=,.@_-]`; anything else is `BadRoleName` (the
/// name goes into a URL path).
pub fn parse_imds_role(body: &[u8]) -> Result<String, ParseError> {
    check_size(body)?;
    let text = std::str::from_utf8(body).map_err(|_| ParseError::Malformed)?;
    let name = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or(ParseError::Missing("role name"))?;
    let valid = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ParseError::BadRoleName)
    }
}

/// IMDS role credentials JSON: `{"Code":"Success","LastUpdated":..,"Type":"AWS-HMAC",
/// "AccessKeyId","SecretAccessKey","Token","Expiration"}`. Keys are matched
/// case-insensitively (as the AWS Rust SDK does). `Code`, if present, must be
/// `Success`, else `ProviderError`. AccessKeyId, SecretAccessKey, Token and
/// Expiration are required (Token becomes the session token). `now_ms` (Unix
/// ms) is the origin of the lifetime bound.
pub fn parse_imds_credentials(body: &[u8], now_ms: u64) -> Result<Credentials, ParseError> {
    json_credentials(body, true, now_ms)
}

/// ECS / EKS Pod Identity container endpoint JSON: `{"AccessKeyId",
/// "SecretAccessKey","Token","Expiration","RoleArn"?}`, keys matched
/// case-insensitively. An error document (`{"code":..,"message":..}`, or
/// `Code` / `Message` without AccessKeyId) is `ProviderError`. AccessKeyId,
/// SecretAccessKey and Expiration are required; Token is optional (`None` if
/// absent or empty). `now_ms` (Unix ms) is the origin of the lifetime bound.
pub fn parse_container_credentials(body: &[u8], now_ms: u64) -> Result<Credentials, ParseError> {
    json_credentials(body, false, now_ms)
}

/// The shared shape of the IMDS and container documents.
fn json_credentials(
    body: &[u8],
    token_required: bool,
    now_ms: u64,
) -> Result<Credentials, ParseError> {
    check_size(body)?;
    let doc = json_object(body)?;
    // The AWS SDK's rule for both endpoints: a Code other than Success is an error.
    match field(&doc, "Code") {
        None | Some(Value::Null) => {}
        Some(Value::String(code)) if code == "Success" => {}
        Some(_) => return Err(ParseError::ProviderError),
    }
    // `{"message": ...}` with no key is an error document too (container endpoints).
    if field(&doc, "AccessKeyId").is_none() && field(&doc, "Message").is_some() {
        return Err(ParseError::ProviderError);
    }
    let akid = required_str(&doc, ACCESS_KEY_ID)?;
    let secret = required_str(&doc, SECRET_ACCESS_KEY)?;
    let token = if token_required {
        Some(required_str(&doc, TOKEN)?)
    } else {
        optional_str(&doc, TOKEN)?
    };
    let expires = within_lifetime(json_expiration(&doc)?, now_ms)?;
    Ok(Credentials::temporary(akid, secret, token, expires))
}

/// Parses a body that must be one JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    // serde_json bounds nesting (128 levels), so hostile depth is an error, not a stack overflow.
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ParseError::Malformed),
    }
}

/// A key matched exactly, else case-insensitively (first in key order).
fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn optional_str(obj: &Map<String, Value>, f: Field) -> Result<Option<String>, ParseError> {
    match field(obj, f.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => checked(f, s).map(|s| Some(s.to_owned())),
        Some(_) => Err(ParseError::Malformed),
    }
}

fn required_str(obj: &Map<String, Value>, f: Field) -> Result<String, ParseError> {
    optional_str(obj, f)?.ok_or(ParseError::Missing(f.name))
}

fn json_expiration(obj: &Map<String, Value>) -> Result<u64, ParseError> {
    match field(obj, "Expiration") {
        None | Some(Value::Null) => Err(ParseError::Missing("Expiration")),
        Some(Value::String(s)) if s.is_empty() => Err(ParseError::Missing("Expiration")),
        Some(v) => parse_expiration(v).ok_or(ParseError::BadExpiration),
    }
}

/// A credential field of the answers: its name and its longest accepted length.
#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    max_len: usize,
}

const ACCESS_KEY_ID: Field = Field {
    name: "AccessKeyId",
    max_len: MAX_ACCESS_KEY_ID_LEN,
};
const SECRET_ACCESS_KEY: Field = Field {
    name: "SecretAccessKey",
    max_len: MAX_SECRET_ACCESS_KEY_LEN,
};
/// The session token as IMDS and container endpoints name it.
const TOKEN: Field = Field {
    name: "Token",
    max_len: MAX_SESSION_TOKEN_LEN,
};
/// The session token as STS names it.
const SESSION_TOKEN: Field = Field {
    name: "SessionToken",
    max_len: MAX_SESSION_TOKEN_LEN,
};

/// A field's value if it is at most `max_len` bytes of visible ASCII
/// (0x21-0x7E). Anything else would break the header, URL or log line it ends
/// up in (a newline, a space, U+2028 read as a line break by some log
/// consumers, bidirectional controls) or cost memory in every cache entry:
/// refused as `BadField`, which names the field, never the value.
fn checked(f: Field, s: &str) -> Result<&str, ParseError> {
    if s.len() <= f.max_len && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s)
    } else {
        Err(ParseError::BadField(f.name))
    }
}

/// `expires_ms` if the credentials last at most `MAX_CREDENTIAL_LIFETIME_MS`
/// from `now_ms` (credentials already expired pass: the caller counts them).
fn within_lifetime(expires_ms: u64, now_ms: u64) -> Result<u64, ParseError> {
    if expires_ms.saturating_sub(now_ms) <= MAX_CREDENTIAL_LIFETIME_MS {
        Ok(expires_ms)
    } else {
        Err(ParseError::ExpirationTooFar)
    }
}

// ---------------------------------------------------------------------------
// STS
// ---------------------------------------------------------------------------

/// STS response, JSON or XML (decided by the first non-whitespace byte: `{`
/// JSON, `<` XML).
///
/// JSON (STS with `Accept: application/json`):
/// `{"<Action>Response":{"<Action>Result":{"Credentials":{"AccessKeyId",
/// "SecretAccessKey","SessionToken","Expiration"}}}}`, Expiration an
/// epoch-seconds number (or an RFC 3339 string). `{"Error":..}` or
/// `{"ErrorResponse":..}` is `ProviderError`.
///
/// XML: `<Action>Response` / `<Action>Result` / `Credentials` with the four
/// fields as child elements, Expiration RFC 3339; `<ErrorResponse>` is
/// `ProviderError`. A response for the other action is `Malformed`.
///
/// SessionToken and Expiration are required. `now_ms` (Unix ms) is the
/// origin of the lifetime bound.
pub fn parse_sts_credentials(
    body: &[u8],
    action: StsAction,
    now_ms: u64,
) -> Result<Credentials, ParseError> {
    check_size(body)?;
    let text = std::str::from_utf8(body).map_err(|_| ParseError::Malformed)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let c = match text.trim_start().as_bytes().first() {
        Some(b'{') => sts_json(text.as_bytes(), action)?,
        Some(b'<') => sts_xml(text, action)?,
        _ => return Err(ParseError::Malformed),
    };
    within_lifetime(c.expires_at_ms().unwrap_or(0), now_ms)?;
    Ok(c)
}

fn sts_json(body: &[u8], action: StsAction) -> Result<Credentials, ParseError> {
    let doc = json_object(body)?;
    if field(&doc, "Error").is_some() || field(&doc, "ErrorResponse").is_some() {
        return Err(ParseError::ProviderError);
    }
    let result = field(&doc, action.response_element())
        .and_then(Value::as_object)
        .and_then(|r| field(r, action.result_element()))
        .and_then(Value::as_object)
        .ok_or(ParseError::Malformed)?;
    let creds = match field(result, "Credentials") {
        None | Some(Value::Null) => return Err(ParseError::Missing("Credentials")),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(ParseError::Malformed),
    };
    let akid = required_str(creds, ACCESS_KEY_ID)?;
    let secret = required_str(creds, SECRET_ACCESS_KEY)?;
    let token = required_str(creds, SESSION_TOKEN)?;
    let expires = json_expiration(creds)?;
    Ok(Credentials::temporary(akid, secret, Some(token), expires))
}

/// The four values of an STS `Credentials` element, in field order.
const STS_FIELDS: [&str; 4] = [
    "AccessKeyId",
    "SecretAccessKey",
    "SessionToken",
    "Expiration",
];

/// What an open XML element is, by its place in the document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Response,
    Result,
    Credentials,
    /// One of STS_FIELDS, by position.
    Field(usize),
    Other,
}

fn sts_xml(text: &str, action: StsAction) -> Result<Credentials, ParseError> {
    let mut xml = XmlScanner { rest: text };
    // Open elements: their full name (to match the end tag) and role.
    let mut stack: Vec<(&str, Role)> = Vec::new();
    let mut seen_root = false;
    let mut seen_result = false;
    let mut seen_credentials = false;
    let mut values: [Option<String>; 4] = Default::default();

    while let Some(token) = xml.next_token()? {
        match token {
            Token::Start { name, empty } => {
                let local = name.rsplit(':').next().unwrap_or(name);
                let parent = stack.last().map(|&(_, role)| role);
                let role = match parent {
                    None => {
                        if seen_root {
                            return Err(ParseError::Malformed);
                        }
                        seen_root = true;
                        if local == "ErrorResponse" {
                            return Err(ParseError::ProviderError);
                        }
                        if local != action.response_element() {
                            return Err(ParseError::Malformed);
                        }
                        Role::Response
                    }
                    Some(Role::Response) if local == action.result_element() => {
                        if std::mem::replace(&mut seen_result, true) {
                            return Err(ParseError::Malformed);
                        }
                        Role::Result
                    }
                    Some(Role::Result) if local == "Credentials" => {
                        if std::mem::replace(&mut seen_credentials, true) {
                            return Err(ParseError::Malformed);
                        }
                        Role::Credentials
                    }
                    Some(Role::Credentials) => match STS_FIELDS.iter().position(|f| *f == local) {
                        Some(i) => {
                            let slot = values.get_mut(i).ok_or(ParseError::Malformed)?;
                            if slot.is_some() {
                                return Err(ParseError::Malformed);
                            }
                            *slot = Some(String::new());
                            Role::Field(i)
                        }
                        None => Role::Other,
                    },
                    // A value is text only.
                    Some(Role::Field(_)) => return Err(ParseError::Malformed),
                    Some(_) => Role::Other,
                };
                if !empty {
                    if stack.len() >= MAX_XML_DEPTH {
                        return Err(ParseError::Malformed);
                    }
                    stack.push((name, role));
                }
            }
            Token::End(name) => match stack.pop() {
                Some((open, _)) if open == name => {}
                _ => return Err(ParseError::Malformed),
            },
            Token::Text(raw) => match stack.last() {
                Some(&(_, Role::Field(i))) => {
                    let slot = values.get_mut(i).and_then(Option::as_mut);
                    decode_xml_text(slot.ok_or(ParseError::Malformed)?, raw)?;
                }
                Some(_) => {}
                None if raw.trim().is_empty() => {}
                None => return Err(ParseError::Malformed),
            },
            Token::CData(raw) => match stack.last() {
                Some(&(_, Role::Field(i))) => {
                    let slot = values.get_mut(i).and_then(Option::as_mut);
                    slot.ok_or(ParseError::Malformed)?.push_str(raw);
                }
                Some(_) => {}
                None => return Err(ParseError::Malformed),
            },
        }
    }
    if !seen_root || !stack.is_empty() || !seen_result {
        return Err(ParseError::Malformed);
    }
    if !seen_credentials {
        return Err(ParseError::Missing("Credentials"));
    }
    let [akid, secret, token, expiration] = values;
    // A value, trimmed (STS wraps none, but the samples indent them).
    let text = |v: &Option<String>, name: &'static str| {
        let v = v.as_deref().unwrap_or_default().trim();
        if v.is_empty() {
            Err(ParseError::Missing(name))
        } else {
            Ok(v.to_owned())
        }
    };
    let take = |v: &Option<String>, f: Field| {
        let v = text(v, f.name)?;
        checked(f, &v)?;
        Ok(v)
    };
    let akid = take(&akid, ACCESS_KEY_ID)?;
    let secret = take(&secret, SECRET_ACCESS_KEY)?;
    let token = take(&token, SESSION_TOKEN)?;
    let expiration = text(&expiration, "Expiration")?;
    let expires = parse_rfc3339_ms(&expiration).ok_or(ParseError::BadExpiration)?;
    Ok(Credentials::temporary(akid, secret, Some(token), expires))
}

/// One piece of an XML document.
enum Token<'a> {
    /// `<name ...>` or, with `empty`, `<name .../>`.
    Start { name: &'a str, empty: bool },
    /// `</name>`.
    End(&'a str),
    /// Character data, still escaped.
    Text(&'a str),
    /// The inside of `<![CDATA[...]]>`, taken literally.
    CData(&'a str),
}

/// Just enough XML for STS: every step consumes input and scans forward only,
/// so the work is linear in the body. Declarations, processing instructions
/// and comments are skipped; a DOCTYPE is refused (no entity definitions).
struct XmlScanner<'a> {
    rest: &'a str,
}

impl<'a> XmlScanner<'a> {
    fn next_token(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        loop {
            if self.rest.is_empty() {
                return Ok(None);
            }
            let Some(markup) = self.rest.strip_prefix('<') else {
                let end = self.rest.find('<').unwrap_or(self.rest.len());
                let (text, rest) = self
                    .rest
                    .split_at_checked(end)
                    .ok_or(ParseError::Malformed)?;
                self.rest = rest;
                return Ok(Some(Token::Text(text)));
            };
            if let Some(r) = markup.strip_prefix('?') {
                self.rest = after(r, "?>")?.1;
            } else if let Some(r) = markup.strip_prefix("!--") {
                self.rest = after(r, "-->")?.1;
            } else if let Some(r) = markup.strip_prefix("![CDATA[") {
                let (data, rest) = after(r, "]]>")?;
                self.rest = rest;
                return Ok(Some(Token::CData(data)));
            } else if markup.starts_with('!') {
                return Err(ParseError::Malformed);
            } else if let Some(r) = markup.strip_prefix('/') {
                let (inner, rest) = after(r, ">")?;
                self.rest = rest;
                return Ok(Some(Token::End(element_name(inner.trim_end())?)));
            } else {
                let end = start_tag_end(markup)?;
                let (inner, rest) = markup.split_at_checked(end).ok_or(ParseError::Malformed)?;
                self.rest = rest.get(1..).ok_or(ParseError::Malformed)?;
                let empty = inner.ends_with('/');
                let inner = inner.strip_suffix('/').unwrap_or(inner);
                let name_end = inner
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(inner.len());
                let name = inner.get(..name_end).ok_or(ParseError::Malformed)?;
                return Ok(Some(Token::Start {
                    name: element_name(name)?,
                    empty,
                }));
            }
        }
    }
}

/// Splits at the first `pat`: the text before it and the text after it.
fn after<'a>(s: &'a str, pat: &str) -> Result<(&'a str, &'a str), ParseError> {
    let i = s.find(pat).ok_or(ParseError::Malformed)?;
    let before = s.get(..i).ok_or(ParseError::Malformed)?;
    let rest = s.get(i + pat.len()..).ok_or(ParseError::Malformed)?;
    Ok((before, rest))
}

/// The byte offset of a start tag's closing `>`, skipping quoted attribute values.
fn start_tag_end(s: &str) -> Result<usize, ParseError> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '>') => return Ok(i),
            (None, '<') => return Err(ParseError::Malformed),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            _ => {}
        }
    }
    Err(ParseError::Malformed)
}

fn element_name(name: &str) -> Result<&str, ParseError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(ParseError::Malformed)
    }
}

/// Appends XML character data to `out`, decoding the five predefined entities
/// and numeric character references.
fn decode_xml_text(out: &mut String, mut s: &str) -> Result<(), ParseError> {
    while let Some(amp) = s.find('&') {
        let (plain, rest) = s.split_at_checked(amp).ok_or(ParseError::Malformed)?;
        out.push_str(plain);
        // A failed entity ends the scan, a decoded one consumes its text: linear overall.
        let (entity, rest) = after(rest.get(1..).ok_or(ParseError::Malformed)?, ";")?;
        out.push(decode_entity(entity).ok_or(ParseError::Malformed)?);
        s = rest;
    }
    out.push_str(s);
    Ok(())
}

fn decode_entity(entity: &str) -> Option<char> {
    match entity {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = entity.strip_prefix('#')?;
            let (digits, radix) = match num.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            // from_str_radix would accept a leading '+'.
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            char::from_u32(u32::from_str_radix(digits, radix).ok()?).filter(|&c| c != '\0')
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

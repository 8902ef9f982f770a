//! The bounds every provider answer is held to (the `MAX_*` consts, which
//! the memory bounds of docs/cache.md cite), the checks of a credential field
//! against them, and [`ParseError`], the stable category of what an answer
//! broke: it never carries a value from the body.

use std::fmt;

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
/// this bound: `rotation::refresh` starts one `refresh.before` ahead of expiry or at
/// half-life, whichever is later, so at most 36 h - `refresh.before` after the
/// answer was read.
pub const MAX_CREDENTIAL_LIFETIME_MS: u64 = 36 * 3_600_000;

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

/// A credential field of the answers: its name and its longest accepted length.
#[derive(Clone, Copy)]
pub(super) struct Field {
    /// The field's name in the answers.
    pub(super) name: &'static str,
    /// Its longest accepted length, in bytes.
    pub(super) max_len: usize,
}

/// The access key id.
pub(super) const ACCESS_KEY_ID: Field = Field {
    name: "AccessKeyId",
    max_len: MAX_ACCESS_KEY_ID_LEN,
};
/// The secret access key.
pub(super) const SECRET_ACCESS_KEY: Field = Field {
    name: "SecretAccessKey",
    max_len: MAX_SECRET_ACCESS_KEY_LEN,
};
/// The session token as IMDS and container endpoints name it.
pub(super) const TOKEN: Field = Field {
    name: "Token",
    max_len: MAX_SESSION_TOKEN_LEN,
};
/// The session token as STS names it.
pub(super) const SESSION_TOKEN: Field = Field {
    name: "SessionToken",
    max_len: MAX_SESSION_TOKEN_LEN,
};

/// A field's value if it is at most `max_len` bytes of visible ASCII
/// (0x21-0x7E). Anything else would break the header, URL or log line it ends
/// up in (a newline, a space, U+2028 read as a line break by some log
/// consumers, bidirectional controls) or cost memory in every cache entry:
/// refused as `BadField`, which names the field, never the value.
pub(super) fn checked(f: Field, s: &str) -> Result<&str, ParseError> {
    if s.len() <= f.max_len && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s)
    } else {
        Err(ParseError::BadField(f.name))
    }
}

/// `expires_ms` if the credentials last at most `MAX_CREDENTIAL_LIFETIME_MS`
/// from `now_ms` (credentials already expired pass: the caller counts them).
pub(super) fn within_lifetime(expires_ms: u64, now_ms: u64) -> Result<u64, ParseError> {
    if expires_ms.saturating_sub(now_ms) <= MAX_CREDENTIAL_LIFETIME_MS {
        Ok(expires_ms)
    } else {
        Err(ParseError::ExpirationTooFar)
    }
}

/// `TooLarge` for a body over `MAX_BODY_BYTES`, checked before any parsing.
pub(super) fn check_size(body: &[u8]) -> Result<(), ParseError> {
    if body.len() > MAX_BODY_BYTES {
        Err(ParseError::TooLarge)
    } else {
        Ok(())
    }
}

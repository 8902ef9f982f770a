//! Parsers for the answers of AWS credential providers: the instance metadata
//! service (role name and role credentials), the ECS / EKS Pod Identity
//! container endpoint, and STS `AssumeRole` / `AssumeRoleWithWebIdentity` in
//! JSON or XML.
//!
//! Functions from bytes to [`Credentials`](crate::sigv4::credentials::Credentials),
//! with no panic on any input. An error is a [`ParseError`], a stable category
//! that never carries a value from the body, so a secret key or session token
//! can never reach a log line through it.
//!
//! Every field of an answer is bounded and checked (see the `MAX_*` consts,
//! which the memory bounds of docs/cache.md cite): the key id, secret and token are
//! visible ASCII of a bounded length, and the expiry is at most
//! [`MAX_CREDENTIAL_LIFETIME_MS`] ahead of the time the answer is read at,
//! an argument: the parsers are pure (no hostcall, no clock).
//!
//! The files: `bounds` (the limits, the field checks and `ParseError`),
//! `timestamp` (expiration times), `json` (the JSON reading every JSON answer
//! shares), `metadata` (IMDS and container endpoints), `xml` (a scanner just
//! big enough for STS) and `sts` (both STS actions, JSON or XML).

mod bounds;
mod json;
mod metadata;
mod sts;
mod timestamp;
mod xml;

/// The bounds and the error, named from here as before the split.
pub use bounds::{
    ParseError, MAX_ACCESS_KEY_ID_LEN, MAX_BODY_BYTES, MAX_CREDENTIAL_LIFETIME_MS,
    MAX_SECRET_ACCESS_KEY_LEN, MAX_SESSION_TOKEN_LEN,
};
/// The IMDS and container endpoint parsers.
pub use metadata::{parse_container_credentials, parse_imds_credentials, parse_imds_role};
/// The STS parser and the action it reads.
pub use sts::{parse_sts_credentials, StsAction};
/// The expiration readers (the fuzz target checks them directly).
pub use timestamp::{parse_expiration, parse_rfc3339_ms};

#[cfg(test)]
mod tests;

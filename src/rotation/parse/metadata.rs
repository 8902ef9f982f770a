//! The instance metadata service (IMDSv2: the role name, then its
//! credentials) and the ECS / EKS Pod Identity container endpoint: JSON
//! documents of the same shape, the container's token optional.

use serde_json::Value;

use crate::rotation::parse::bounds::{
    check_size, within_lifetime, ParseError, ACCESS_KEY_ID, SECRET_ACCESS_KEY, TOKEN,
};
use crate::rotation::parse::json::{
    field, json_expiration, json_object, optional_str, required_str,
};
use crate::sigv4::credentials::Credentials;

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

//! The JSON reading shared by every JSON answer (IMDS, container endpoints,
//! STS with `Accept: application/json`): one object, keys matched as the AWS
//! SDKs match them, fields checked against their bounds.

use serde_json::{Map, Value};

use crate::rotation::parse::bounds::{checked, Field, ParseError};
use crate::rotation::parse::timestamp::parse_expiration;

/// Parses a body that must be one JSON object.
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    // serde_json bounds nesting (128 levels), so hostile depth is an error, not a stack overflow.
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ParseError::Malformed),
    }
}

/// A key matched exactly, else case-insensitively (first in key order).
pub(super) fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A field's value if present and not empty, checked against its bound.
pub(super) fn optional_str(
    obj: &Map<String, Value>,
    f: Field,
) -> Result<Option<String>, ParseError> {
    match field(obj, f.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => checked(f, s).map(|s| Some(s.to_owned())),
        Some(_) => Err(ParseError::Malformed),
    }
}

/// A field's value, checked against its bound; `Missing` if absent or empty.
pub(super) fn required_str(obj: &Map<String, Value>, f: Field) -> Result<String, ParseError> {
    optional_str(obj, f)?.ok_or(ParseError::Missing(f.name))
}

/// The `Expiration` field as Unix ms; `Missing` if absent or empty.
pub(super) fn json_expiration(obj: &Map<String, Value>) -> Result<u64, ParseError> {
    match field(obj, "Expiration") {
        None | Some(Value::Null) => Err(ParseError::Missing("Expiration")),
        Some(Value::String(s)) if s.is_empty() => Err(ParseError::Missing("Expiration")),
        Some(v) => parse_expiration(v).ok_or(ParseError::BadExpiration),
    }
}

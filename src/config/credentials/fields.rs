//! The small rules every part of the `credentials` block shares: how a
//! refusal names its field (`credentials.…`, or the VM environment variable
//! it came from), how the VM environment is read, and the checks of cluster
//! names, authorities, timeouts and paths.

use crate::config::error::ConfigError;

/// Each call's timeout unless `timeout_ms` says otherwise: the AWS SDKs'
/// metadata read timeout is 5 s with a 2 s connect; one number here.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Longest accepted `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 30_000;

/// How the VM environment is read: a lookup, so tests pass a map.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An error naming `field` under `credentials`.
pub(super) fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("credentials.{field}"), reason)
}

/// A VM environment variable, when set and not empty.
pub(super) fn env_var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// A cluster name or authority: `value`, or `default` when not given.
pub(super) fn name_field(
    value: Option<&String>,
    field: &str,
    default: &str,
) -> Result<String, ConfigError> {
    let v = value.map_or(default, String::as_str);
    if v.is_empty() || v.len() > 255 || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(err(
            field,
            "must be 1 to 255 characters without spaces or control characters",
        ));
    }
    Ok(v.to_string())
}

/// A per-call `timeout_ms`, `DEFAULT_TIMEOUT_MS` when not given.
pub(super) fn timeout(value: Option<u64>, field: &str) -> Result<u64, ConfigError> {
    let t = value.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&t) {
        return Err(err(
            field,
            format!("must be between 1 and {MAX_TIMEOUT_MS} ms, got {t}"),
        ));
    }
    Ok(t)
}

/// A field under `credentials`, or an environment variable named as itself.
pub(super) fn err_named(field: &str, reason: impl Into<String>) -> ConfigError {
    if field.starts_with("AWS_") {
        ConfigError::new(format!("credentials (VM environment {field})"), reason)
    } else {
        err(field, reason)
    }
}

/// A URI path (or ARN, or external id): visible ASCII, at most 2048 bytes.
pub(super) fn valid_path(p: &str) -> bool {
    p.len() <= 2048 && p.bytes().all(|b| b.is_ascii_graphic())
}

//! The STS sources (`assume_role`, `web_identity`): region, role, session
//! name and duration, from the block or the VM environment.

use crate::config::credentials::fields::{env_var, err, name_field, timeout, valid_path, Env};
use crate::config::credentials::raw::RawSts;
use crate::config::credentials::sources::{Endpoint, StsSource};
use crate::config::error::ConfigError;

/// STS session length unless `duration` says otherwise (STS's own default).
pub const DEFAULT_STS_DURATION_SECS: u32 = 3_600;
/// `RoleSessionName` unless configured (or `AWS_ROLE_SESSION_NAME`).
pub const DEFAULT_SESSION_NAME: &str = "envoy-presign";

/// Compiles an STS block named `block`, calling `default_cluster` unless
/// the block names another.
pub(super) fn sts(
    raw: &RawSts,
    block: &str,
    default_cluster: &str,
    env: Env<'_>,
) -> Result<StsSource, ConfigError> {
    let f = |name: &str| format!("{block}.{name}");
    let region = raw
        .region
        .clone()
        .or_else(|| env_var(env, "AWS_REGION"))
        .or_else(|| env_var(env, "AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            err(
                &f("region"),
                "required (or AWS_REGION in the VM environment)",
            )
        })?;
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err(&f("region"), "must be a region name like eu-west-1"));
    }
    let default_authority = if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    };
    let role_arn = match raw.role_arn.clone() {
        Some(v) => v,
        None if block == "web_identity" => env_var(env, "AWS_ROLE_ARN").ok_or_else(|| {
            err(
                &f("role_arn"),
                "required (or AWS_ROLE_ARN in the VM environment)",
            )
        })?,
        None => return Err(err(&f("role_arn"), "required")),
    };
    if !role_arn.starts_with("arn:") || role_arn.len() > 2048 || !valid_path(&role_arn) {
        return Err(err(&f("role_arn"), "must be a role ARN (arn:...)"));
    }
    let session_name = raw
        .session_name
        .clone()
        .or_else(|| env_var(env, "AWS_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !(2..=64).contains(&session_name.len())
        || !session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=,.@_-".contains(&b))
    {
        return Err(err(
            &f("session_name"),
            "must be 2 to 64 characters of letters, digits and =,.@_-",
        ));
    }
    if let Some(x) = &raw.external_id {
        if !(2..=1224).contains(&x.len()) || !valid_path(x) {
            return Err(err(
                &f("external_id"),
                "must be 2 to 1224 visible ASCII characters",
            ));
        }
    }
    let duration = raw.duration.unwrap_or(DEFAULT_STS_DURATION_SECS);
    if !(900..=43_200).contains(&duration) {
        return Err(err(
            &f("duration"),
            format!("must be between 900 and 43200 seconds, got {duration}"),
        ));
    }
    Ok(StsSource {
        endpoint: Endpoint {
            cluster: name_field(raw.cluster.as_ref(), &f("cluster"), default_cluster)?,
            authority: name_field(raw.authority.as_ref(), &f("authority"), &default_authority)?,
            timeout_ms: timeout(raw.timeout_ms, &f("timeout_ms"))?,
        },
        region,
        role_arn,
        session_name,
        external_id: raw.external_id.clone(),
        duration_secs: duration,
    })
}

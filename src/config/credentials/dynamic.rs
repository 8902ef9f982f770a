//! A rotating source by name (`imds`, `container`, `assume_role`,
//! `web_identity`), compiled from its block; for `assume_role`, also the
//! credentials that sign its call (`base`).

use crate::config::credentials::blocks::static_keys;
use crate::config::credentials::container::container;
use crate::config::credentials::fields::{err, name_field, timeout, Env};
use crate::config::credentials::raw::{RawCredentials, RawImds, RawSts};
use crate::config::credentials::sources::{
    BaseCredentials, Endpoint, ImdsSource, Source, DEFAULT_IMDS_CLUSTER, DEFAULT_STS_CLUSTER,
    DEFAULT_WEB_IDENTITY_CLUSTER, IMDS_AUTHORITY,
};
use crate::config::credentials::sts::sts;
use crate::config::error::ConfigError;
use crate::sigv4::credentials::Credentials;

/// IMDSv2 token lifetime the filter asks for (the SDKs' value, the maximum).
pub const DEFAULT_IMDS_TOKEN_TTL_SECS: u32 = 21_600;

/// Compiles the source `name`; `field` names where it was asked for
/// (`source`, `chain[i]`, `assume_role.base`).
pub(super) fn dynamic(
    raw: &RawCredentials,
    name: &str,
    field: &str,
    env: Env<'_>,
) -> Result<Source, ConfigError> {
    match name {
        "imds" => imds(raw.imds.as_ref()).map(Source::Imds),
        "container" => container(raw.container.as_ref(), env).map(Source::Container),
        "web_identity" => {
            let d = RawSts::default();
            let s = raw.web_identity.as_ref().unwrap_or(&d);
            if s.base.is_some() || s.external_id.is_some() {
                let f = if s.base.is_some() {
                    "base"
                } else {
                    "external_id"
                };
                return Err(err(
                    &format!("web_identity.{f}"),
                    "only read under assume_role",
                ));
            }
            sts(s, "web_identity", DEFAULT_WEB_IDENTITY_CLUSTER, env).map(Source::WebIdentity)
        }
        "assume_role" => {
            let Some(s) = raw.assume_role.as_ref() else {
                return Err(err(field, "source assume_role needs an assume_role block"));
            };
            let call = sts(s, "assume_role", DEFAULT_STS_CLUSTER, env)?;
            let base = base(raw, s.base.as_deref(), env)?;
            Ok(Source::AssumeRole(call, base))
        }
        _ => Err(err(field, format!("unknown source {name:?}"))),
    }
}

/// `assume_role.base`: env (default), inline, imds, container or web_identity.
fn base(
    raw: &RawCredentials,
    name: Option<&str>,
    env: Env<'_>,
) -> Result<BaseCredentials, ConfigError> {
    let field = "assume_role.base";
    match name.unwrap_or("env") {
        "env" => Credentials::from_env(env)
            .map(BaseCredentials::Static)
            .map_err(|e| err(field, format!("base env: {e}"))),
        "inline" => {
            let (_, creds) = static_keys(raw, true, env)?;
            creds
                .map(BaseCredentials::Static)
                .map_err(|e| err(field, e))
        }
        n @ ("imds" | "container" | "web_identity") => Ok(BaseCredentials::Fetched(Box::new(
            dynamic(raw, n, field, env)?,
        ))),
        other => Err(err(
            field,
            format!("must be env, inline, imds, container or web_identity; got {other:?}"),
        )),
    }
}

fn imds(raw: Option<&RawImds>) -> Result<ImdsSource, ConfigError> {
    let d = RawImds::default();
    let raw = raw.unwrap_or(&d);
    let ttl = raw.token_ttl.unwrap_or(DEFAULT_IMDS_TOKEN_TTL_SECS);
    if !(1..=21_600).contains(&ttl) {
        return Err(err(
            "imds.token_ttl",
            format!("must be between 1 and 21600 seconds, got {ttl}"),
        ));
    }
    Ok(ImdsSource {
        endpoint: Endpoint {
            cluster: name_field(raw.cluster.as_ref(), "imds.cluster", DEFAULT_IMDS_CLUSTER)?,
            authority: name_field(raw.authority.as_ref(), "imds.authority", IMDS_AUTHORITY)?,
            timeout_ms: timeout(raw.timeout_ms, "imds.timeout_ms")?,
        },
        token_ttl_secs: ttl,
    })
}

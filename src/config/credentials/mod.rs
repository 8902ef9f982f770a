//! The `credentials` block of the configuration: static keys (`env`,
//! `inline`) or a rotating source the filter fetches from an Envoy cluster
//! (`imds`, `container`, `assume_role`, `web_identity`, or a `chain` of them).
//! Pure: the VM environment is a lookup, and every refusal names its field.
//!
//! The files, leaves first (each uses only those before it): `fields`
//! (shared checks and the field-named error), `raw` (the block as serde
//! reads it), `sources` (the compiled sources), `container` and `sts` (their
//! blocks), `blocks` (what a source reads; static keys), `dynamic` (a source
//! by name), `rotating` (refresh timing, fingerprint), `compiled` (the
//! result), `chain`, and this file, `compile`.

mod blocks;
mod chain;
mod compiled;
mod container;
mod dynamic;
mod fields;
mod raw;
mod rotating;
mod sources;
mod sts;

pub use blocks::DEFAULT_CHAIN;
pub use compiled::CompiledCredentials;
pub use container::full_uri;
pub use dynamic::DEFAULT_IMDS_TOKEN_TTL_SECS;
pub use fields::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
pub(crate) use raw::RawCredentials;
pub use rotating::{
    check_timing, stops_signing_ms, RefreshSettings, Rotating, DEFAULT_EXPIRY_MARGIN_SECS,
    DEFAULT_REFRESH_BEFORE_SECS, DEFAULT_RETRY_MAX_MS, DEFAULT_RETRY_MIN_MS,
};
pub use sources::{
    BaseCredentials, ContainerSource, Endpoint, ImdsSource, Source, StsSource,
    DEFAULT_CONTAINER_CLUSTER, DEFAULT_IMDS_CLUSTER, DEFAULT_POD_IDENTITY_CLUSTER,
    DEFAULT_STS_CLUSTER, DEFAULT_WEB_IDENTITY_CLUSTER, ECS_CONTAINER_AUTHORITY, IMDS_AUTHORITY,
    SOURCE_LABELS,
};
pub use sts::{DEFAULT_SESSION_NAME, DEFAULT_STS_DURATION_SECS};

use crate::config::credentials::blocks::{
    base_is_inline, no_inline_keys, static_keys, unread_blocks,
};
use crate::config::credentials::chain::chain;
use crate::config::credentials::compiled::{fixed, rotating};
use crate::config::credentials::dynamic::dynamic;
use crate::config::credentials::fields::{err, Env};
use crate::config::error::ConfigError;
use crate::sigv4::credentials::{Credentials, CredentialsSource};

/// Compiles the `credentials` block (absent: `source: env`).
pub(crate) fn compile(
    raw: Option<RawCredentials>,
    env: Env<'_>,
) -> Result<CompiledCredentials, ConfigError> {
    let raw = match raw {
        Some(r) => r,
        None => {
            return Ok(fixed(CredentialsSource::Env, Credentials::from_env(env)));
        }
    };
    if raw.chain.is_some() && raw.source != "chain" {
        return Err(err("chain", "only read with \"source\": \"chain\""));
    }
    unread_blocks(&raw)?;
    match raw.source.as_str() {
        "env" | "inline" => {
            let (source, creds) = static_keys(&raw, raw.source == "inline", env)?;
            Ok(fixed(source, creds))
        }
        "imds" | "container" | "assume_role" | "web_identity" => {
            if !base_is_inline(&raw) {
                no_inline_keys(&raw, &raw.source)?;
            }
            let source = dynamic(&raw, &raw.source, "source", env)?;
            rotating(&raw, source, Vec::new(), Vec::new())
        }
        "chain" => chain(&raw, env),
        other => Err(err(
            "source",
            format!(
                "must be one of env, inline, imds, container, assume_role, web_identity, chain; got {other:?}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests;

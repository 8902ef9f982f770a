//! `source: chain`: the first configured entry is the source, as the AWS
//! SDKs resolve their chain; the others are named in the startup log.

use crate::config::credentials::blocks::{base_is_inline, no_inline_keys, DEFAULT_CHAIN};
use crate::config::credentials::compiled::{fixed, rotating, CompiledCredentials};
use crate::config::credentials::dynamic::dynamic;
use crate::config::credentials::fields::{env_var, err, Env};
use crate::config::credentials::raw::RawCredentials;
use crate::config::credentials::sources::Source;
use crate::config::error::ConfigError;
use crate::sigv4::credentials::{Credentials, CredentialsSource};

/// `source: chain`: the first entry configured here is the source, as the
/// AWS SDKs resolve their chain; an entry is passed over only when it is not
/// configured (neither its block nor its variables). A configured source
/// that fails later is retried with back-off, never replaced by the next
/// entry: falling through on a failure would sign as another identity for
/// as long as that one lasts. Every entry is named in the startup log with
/// why it is or is not used; configured entries an earlier one shadows are
/// warned about (but `imds`, which applies everywhere on EC2).
pub(super) fn chain(
    raw: &RawCredentials,
    env: Env<'_>,
) -> Result<CompiledCredentials, ConfigError> {
    if !base_is_inline(raw) {
        no_inline_keys(raw, "chain")?;
    }
    let names: Vec<String> = match &raw.chain {
        Some(names) => names.clone(),
        None => DEFAULT_CHAIN.iter().map(|s| (*s).to_string()).collect(),
    };
    if names.is_empty() {
        return Err(err("chain", "must name at least one source"));
    }
    let mut notes = Vec::new();
    let mut dropped = Vec::new();
    // The chosen entry: its name, and its rotating source (`None`: env keys).
    let mut chosen: Option<(&str, Option<Source>)> = None;
    for (i, name) in names.iter().enumerate() {
        let field = format!("chain[{i}]");
        if names.iter().take(i).any(|n| n == name) {
            return Err(err(&field, format!("{name:?} is listed twice")));
        }
        let not_configured = match name.as_str() {
            "env" => Credentials::from_env(env)
                .err()
                .map(|_| "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"),
            "imds" | "container" | "assume_role" | "web_identity" => configured(raw, name, env),
            other => {
                return Err(err(
                    &field,
                    format!(
                    "must be one of env, imds, container, assume_role, web_identity; got {other:?}"
                ),
                ))
            }
        };
        if let Some(why) = not_configured {
            notes.push(format!("{name} ({why})"));
            continue;
        }
        // Compiled even when shadowed: a broken block is refused wherever
        // the configuration runs, not only where that entry would apply.
        let source = match name.as_str() {
            "env" => None,
            n => Some(dynamic(raw, n, &field, env)?),
        };
        match &chosen {
            None => chosen = Some((name.as_str(), source)),
            Some((first, _)) => {
                notes.push(format!("{name} (configured, but {first} comes first)"));
                if name != "imds" {
                    dropped.push(name.clone());
                }
            }
        }
    }
    let mut compiled = match chosen {
        None => {
            return Err(err(
                "chain",
                format!("no source is configured: {}", notes.join(", ")),
            ))
        }
        Some((_, None)) => fixed(CredentialsSource::Env, Credentials::from_env(env)),
        Some((_, Some(source))) => rotating(raw, source, Vec::new(), Vec::new())?,
    };
    compiled.skipped = notes;
    compiled.dropped = dropped;
    Ok(compiled)
}

/// Whether a chain entry applies, as the AWS SDKs decide: `None` when it
/// does, else why not. IMDS always applies; the others need their settings.
fn configured(raw: &RawCredentials, name: &str, env: Env<'_>) -> Option<&'static str> {
    match name {
        "container"
            if raw.container.is_none()
                && env_var(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
                && env_var(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none() =>
        {
            Some("no container block and no AWS_CONTAINER_CREDENTIALS_*_URI")
        }
        "web_identity" if raw.web_identity.is_none() && env_var(env, "AWS_ROLE_ARN").is_none() => {
            Some("no web_identity block and no AWS_ROLE_ARN")
        }
        "assume_role" if raw.assume_role.is_none() => Some("no assume_role block"),
        _ => None,
    }
}

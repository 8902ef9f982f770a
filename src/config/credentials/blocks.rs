//! Which parts of the `credentials` block a source reads: its own block,
//! the chain's entries, `assume_role`'s base, and inline keys. A part no
//! source reads is refused rather than silently ignored; the static keys
//! (`env`, `inline`) are read here.

use crate::config::credentials::fields::{err, Env};
use crate::config::credentials::raw::RawCredentials;
use crate::config::error::ConfigError;
use crate::sigv4::credentials::{Credentials, CredentialsSource};

/// The chain's order when `chain` is not given: the AWS SDKs' order.
pub const DEFAULT_CHAIN: [&str; 4] = ["env", "web_identity", "container", "imds"];

/// The sources the document reads: the source itself, a chain's entries,
/// and an `assume_role`'s base.
fn sources_read(raw: &RawCredentials) -> Vec<&str> {
    let mut read: Vec<&str> = match (raw.source.as_str(), &raw.chain) {
        ("chain", Some(names)) => names.iter().map(String::as_str).collect(),
        ("chain", None) => DEFAULT_CHAIN.to_vec(),
        (one, _) => vec![one],
    };
    if read.contains(&"assume_role") {
        let base = raw.assume_role.as_ref().and_then(|a| a.base.as_deref());
        read.push(base.unwrap_or("env"));
    }
    read
}

/// A block no source reads is refused (a typo, or a source left out of a
/// chain), rather than silently ignored.
pub(super) fn unread_blocks(raw: &RawCredentials) -> Result<(), ConfigError> {
    let read = sources_read(raw);
    let blocks = [
        ("imds", raw.imds.is_some()),
        ("container", raw.container.is_some()),
        ("assume_role", raw.assume_role.is_some()),
        ("web_identity", raw.web_identity.is_some()),
    ];
    for (name, present) in blocks {
        if present && !read.contains(&name) {
            return Err(err(
                name,
                format!("not read: source {:?} does not use {name}", raw.source),
            ));
        }
    }
    if raw.refresh.is_some() && matches!(raw.source.as_str(), "env" | "inline") {
        return Err(err(
            "refresh",
            "only read with a rotating source (static keys are never refreshed)",
        ));
    }
    Ok(())
}

/// Inline keys are read for an `assume_role` signed by them (`base: inline`).
pub(super) fn base_is_inline(raw: &RawCredentials) -> bool {
    sources_read(raw).contains(&"inline") && raw.source != "inline"
}

/// Refuses inline keys a source other than `inline` would ignore.
pub(super) fn no_inline_keys(raw: &RawCredentials, source: &str) -> Result<(), ConfigError> {
    if raw.access_key_id.is_some() || raw.secret_access_key.is_some() || raw.session_token.is_some()
    {
        return Err(ConfigError::new(
            "credentials",
            format!("inline keys are only read with \"source\": \"inline\" (source is {source:?})"),
        ));
    }
    Ok(())
}

/// `env` or `inline` keys.
pub(super) fn static_keys(
    raw: &RawCredentials,
    inline: bool,
    env: Env<'_>,
) -> Result<(CredentialsSource, Result<Credentials, String>), ConfigError> {
    if !inline {
        no_inline_keys(raw, "env")?;
        return Ok((CredentialsSource::Env, Credentials::from_env(env)));
    }
    let id = raw.access_key_id.clone().unwrap_or_default();
    let secret = raw.secret_access_key.clone().unwrap_or_default();
    if id.is_empty() {
        return Err(err("access_key_id", "required with source \"inline\""));
    }
    if secret.is_empty() {
        return Err(err("secret_access_key", "required with source \"inline\""));
    }
    let token = raw.session_token.clone().filter(|t| !t.is_empty());
    Ok((
        CredentialsSource::Inline,
        Ok(Credentials::new(id, secret, token)),
    ))
}

//! What the `credentials` block compiles to, and its two shapes: static
//! keys (`fixed`) or a rotating setup (`rotating`).

use crate::config::credentials::raw::RawCredentials;
use crate::config::credentials::rotating::{fingerprint_of, refresh_settings, Rotating};
use crate::config::credentials::sources::Source;
use crate::config::error::ConfigError;
use crate::sigv4::credentials::{Credentials, CredentialsSource};

/// What the `credentials` block compiles to.
#[derive(Debug, Clone)]
pub struct CompiledCredentials {
    /// Where they come from (startup log line).
    pub source: CredentialsSource,
    /// Static keys, or why there are none (the reason names variables, never
    /// values); `Err` as well when the credentials rotate.
    pub fixed: Result<Credentials, String>,
    /// The rotating setup, when the source is dynamic.
    pub rotating: Option<Rotating>,
    /// Entries of a `chain` not used, and why (startup log line).
    pub skipped: Vec<String>,
    /// Configured entries of a `chain` (but the ambient `imds`) that an
    /// earlier entry shadows: never used here, so warned about at startup.
    pub dropped: Vec<String>,
}

/// Static keys (or why there are none).
pub(super) fn fixed(
    source: CredentialsSource,
    creds: Result<Credentials, String>,
) -> CompiledCredentials {
    CompiledCredentials {
        source,
        fixed: creds,
        rotating: None,
        skipped: Vec::new(),
        dropped: Vec::new(),
    }
}

/// A rotating setup around `source`.
pub(super) fn rotating(
    raw: &RawCredentials,
    source: Source,
    skipped: Vec<String>,
    dropped: Vec<String>,
) -> Result<CompiledCredentials, ConfigError> {
    let refresh = refresh_settings(raw.refresh.as_ref(), &source)?;
    let fingerprint = fingerprint_of(&source);
    Ok(CompiledCredentials {
        source: CredentialsSource::Rotating,
        fixed: Err("rotating credentials are fetched after startup".into()),
        rotating: Some(Rotating {
            source,
            refresh,
            fingerprint,
        }),
        skipped,
        dropped,
    })
}

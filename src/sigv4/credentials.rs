//! AWS credentials, held so that a secret can never be printed: `Debug` redacts
//! the secret key and session token, and there is no `Display`.

use std::fmt;

/// Environment variable holding the access key id.
pub const ENV_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable holding the secret access key.
pub const ENV_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Environment variable holding the optional session token.
pub const ENV_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// Where the credentials were configured to come from (logged at startup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialsSource {
    /// The Wasm VM's environment (`vm_config.environment_variables`).
    Env,
    /// Inline in the filter configuration (visible in `/config_dump`).
    Inline,
    /// Fetched from a credentials provider and refreshed before they expire.
    Rotating,
}

/// A key pair with an optional session token, and for temporary credentials
/// the time they stop working (every URL they sign dies with them).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expires_at_ms: Option<u64>,
}

impl Credentials {
    /// Builds credentials; callers have already checked the strings are non-empty.
    pub fn new(
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            session_token,
            expires_at_ms: None,
        }
    }

    /// Temporary credentials from a provider (instance metadata, container
    /// endpoint, STS), which stop working at `expires_at_ms` (Unix ms).
    pub fn temporary(
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            expires_at_ms: Some(expires_at_ms),
            ..Self::new(access_key_id, secret_access_key, session_token)
        }
    }

    /// When the credentials stop working (Unix ms); `None` for static keys.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.expires_at_ms
    }

    /// Reads the standard AWS variables. The error names the missing variables
    /// (never their values) so the operator knows what to pass to the VM.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        match (get(ENV_ACCESS_KEY_ID), get(ENV_SECRET_ACCESS_KEY)) {
            (Some(id), Some(secret)) => Ok(Self::new(id, secret, get(ENV_SESSION_TOKEN))),
            (id, secret) => {
                let mut missing = Vec::new();
                if id.is_none() {
                    missing.push(ENV_ACCESS_KEY_ID);
                }
                if secret.is_none() {
                    missing.push(ENV_SECRET_ACCESS_KEY);
                }
                Err(format!(
                    "{} not set in the Wasm VM environment",
                    missing.join(" and ")
                ))
            }
        }
    }

    /// The public half of the key pair: safe to log and to use in cache keys.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret; only the signer may read it.
    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The session token, if the credentials are temporary.
    pub(crate) fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;

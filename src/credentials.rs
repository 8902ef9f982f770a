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
mod tests {
    use super::*;
    use crate::testing::env_of;

    #[test]
    fn reads_env_with_optional_token() {
        let c = Credentials::from_env(&env_of(&[
            (ENV_ACCESS_KEY_ID, "AKID"),
            (ENV_SECRET_ACCESS_KEY, "s3cr3t"),
            (ENV_SESSION_TOKEN, "tok"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id(), "AKID");
        assert_eq!(c.session_token(), Some("tok"));
        let c = Credentials::from_env(&env_of(&[
            (ENV_ACCESS_KEY_ID, "AKID"),
            (ENV_SECRET_ACCESS_KEY, "s"),
        ]))
        .unwrap();
        assert_eq!(c.session_token(), None);
    }

    #[test]
    fn missing_env_names_variables_not_values() {
        let e =
            Credentials::from_env(&env_of(&[(ENV_SECRET_ACCESS_KEY, "topsecret")])).unwrap_err();
        assert!(e.contains(ENV_ACCESS_KEY_ID));
        assert!(!e.contains("topsecret"));
        let e = Credentials::from_env(&env_of(&[
            (ENV_ACCESS_KEY_ID, "AKID"),
            (ENV_SECRET_ACCESS_KEY, ""),
        ]))
        .unwrap_err();
        assert!(e.contains(ENV_SECRET_ACCESS_KEY));
    }

    #[test]
    fn temporary_credentials_carry_their_expiry() {
        let c = Credentials::temporary("ASIA".into(), "s".into(), Some("t".into()), 42_000);
        assert_eq!(c.expires_at_ms(), Some(42_000));
        assert_eq!(c.session_token(), Some("t"));
        assert_eq!(
            Credentials::new("A".into(), "s".into(), None).expires_at_ms(),
            None
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::new("AKID".into(), "topsecret".into(), Some("tokentoken".into()));
        let s = format!("{c:?}");
        assert!(s.contains("AKID"));
        assert!(!s.contains("topsecret"));
        assert!(!s.contains("tokentoken"));
    }

    /// Temporary credentials show their key id and expiry in Debug (the
    /// refresh logs), never the secret or token.
    #[test]
    fn debug_shows_the_key_id_and_expiry() {
        let c = Credentials::temporary(
            "ASIAX".into(),
            "sk-tmp".into(),
            Some("tk-tmp".into()),
            42_000,
        );
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ASIAX") && shown.contains("expires_at_ms: Some(42000)"),
            "{shown}"
        );
        assert!(
            !shown.contains("sk-tmp") && !shown.contains("tk-tmp"),
            "{shown}"
        );
    }
}

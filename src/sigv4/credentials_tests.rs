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
    let e = Credentials::from_env(&env_of(&[(ENV_SECRET_ACCESS_KEY, "topsecret")])).unwrap_err();
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

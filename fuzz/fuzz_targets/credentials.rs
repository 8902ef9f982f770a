//! Any bytes as a credential provider's answer: no parser panics; whatever
//! parses has an access key id and an expiry no later than year 9999; a role
//! name is one IAM allows; and the IMDS form, being the container form with a
//! required token, never parses where the container form does not.
#![no_main]

use envoy_presign::rotation::parse::{
    parse_container_credentials, parse_expiration, parse_imds_credentials, parse_imds_role,
    parse_rfc3339_ms, parse_sts_credentials, StsAction,
};
use envoy_presign::sigv4::credentials::Credentials;
use libfuzzer_sys::fuzz_target;

/// `9999-12-31T23:59:59.999Z` in Unix ms.
const MAX_EXPIRY_MS: u64 = 253_402_300_799_999;
/// The time answers are read at: any fixed time (the lifetime bound is relative to it).
const NOW_MS: u64 = 1_700_000_000_000;

fn check(c: &Credentials) -> u64 {
    assert!(!c.access_key_id().is_empty());
    let expiry = c.expires_at_ms().expect("temporary credentials expire");
    assert!(expiry <= MAX_EXPIRY_MS);
    expiry
}

fuzz_target!(|data: &[u8]| {
    if let Ok(role) = parse_imds_role(data) {
        assert!((1..=64).contains(&role.len()));
        assert!(role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)));
    }

    let container = parse_container_credentials(data, NOW_MS);
    if let Ok(c) = &container {
        check(c);
    }
    if let Ok(c) = parse_imds_credentials(data, NOW_MS) {
        let expiry = check(&c);
        let container = container.expect("the IMDS form is a container form");
        assert_eq!(container.access_key_id(), c.access_key_id());
        assert_eq!(container.expires_at_ms(), Some(expiry));
    }

    for action in [StsAction::AssumeRole, StsAction::AssumeRoleWithWebIdentity] {
        if let Ok(c) = parse_sts_credentials(data, action, NOW_MS) {
            check(&c);
        }
    }

    if let Some(ms) = parse_rfc3339_ms(&String::from_utf8_lossy(data)) {
        assert!(ms <= MAX_EXPIRY_MS);
    }
    if let Ok(v) = serde_json::from_slice(data) {
        if let Some(ms) = parse_expiration(&v) {
            assert!(ms <= MAX_EXPIRY_MS);
        }
    }
});

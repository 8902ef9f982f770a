//! Any bytes as the filter configuration: parsing never panics, and whatever
//! it accepts satisfies the invariants the request path relies on.
#![no_main]

use envoy_presign::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |k: &str| {
        (k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY").then(|| "x".to_string())
    };
    if let Ok(c) = Config::parse(data, &env) {
        assert!(!c.origins.is_empty());
        for o in &c.origins {
            assert!(o.match_prefix.starts_with('/'));
            assert!(o.match_prefix.starts_with(o.strip_prefix.as_str()));
            assert!(o.policy.refresh_before_ms < o.policy.expires_in_ms);
            assert!(o.policy.min_remaining_ms <= o.policy.refresh_before_ms);
            assert!(!o.name.is_empty() && !o.name.starts_with('_'));
        }
    }
});

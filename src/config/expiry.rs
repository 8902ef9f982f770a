//! How long an origin's presigned URLs live and when they are refreshed:
//! `expires_in`, `refresh_before` and `min_remaining`, compiled into the
//! cache `Policy`, and refused when they cannot work.

use crate::cache::Policy;
use crate::config::error::ConfigError;
use crate::config::raw::RawOrigin;

/// Longest lifetime SigV4 allows for a presigned URL (7 days).
pub const MAX_EXPIRES_IN_SECS: u64 = 7 * 24 * 3600;
/// Default lifetime of a presigned URL when `expires_in` is omitted.
pub const DEFAULT_EXPIRES_IN_SECS: u64 = 3600;

/// Smallest `expires_in` that can work: 2 s, with `refresh_before: 1` (and
/// the default `min_remaining`, 200 ms). With the default `refresh_before`
/// (1/5 of it) the smallest is 5 s.
pub const MIN_EXPIRES_IN_SECS: u64 = 2;
/// Smallest `min_remaining`: a URL must still be valid when the request
/// reaches the origin (S3 checks the expiry on arrival).
pub const MIN_REMAINING_MS: u64 = 200;
/// Smallest refresh window (`refresh_before − min_remaining`): time for a
/// claimed refresh (100 ms to 2 s) to be retried before the URL is unusable.
pub const MIN_REFRESH_WINDOW_MS: u64 = 800;

/// Compiles an origin's `expires_in`, `refresh_before` and `min_remaining`
/// (under `at`, e.g. `origins[0]`) into its lifetime in seconds and its
/// cache policy.
pub(super) fn compile_expiry(
    o: &RawOrigin,
    at: &str,
    align: bool,
) -> Result<(u64, Policy), ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let expires_secs = o.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    if !(MIN_EXPIRES_IN_SECS..=MAX_EXPIRES_IN_SECS).contains(&expires_secs) {
        return Err(ConfigError::new(
            field("expires_in"),
            format!("must be between {MIN_EXPIRES_IN_SECS} and {MAX_EXPIRES_IN_SECS} seconds (SigV4 limit), got {expires_secs}"),
        ));
    }

    // Defaults (in ms, so short lifetimes keep a margin): refresh in the last
    // 20% of a URL's life, never serve in the last 4%.
    let expires_ms = expires_secs * 1000;
    let refresh_before_ms = o
        .refresh_before
        .map_or(expires_ms / 5, |v| v.saturating_mul(1000));
    if refresh_before_ms >= expires_ms {
        return Err(ConfigError::new(
            field("refresh_before"),
            format!(
                "must be less than expires_in ({expires_secs} s), got {}",
                refresh_before_ms / 1000
            ),
        ));
    }
    let min_remaining_ms = o
        .min_remaining
        .map_or(refresh_before_ms / 5, |v| v.saturating_mul(1000));
    if min_remaining_ms > refresh_before_ms {
        return Err(ConfigError::new(
            field("min_remaining"),
            format!(
                "must not exceed refresh_before ({} s), got {}",
                refresh_before_ms / 1000,
                min_remaining_ms / 1000
            ),
        ));
    }
    check_timing(
        at,
        &Timing {
            refresh_before_ms,
            min_remaining_ms,
            refresh_before_set: o.refresh_before.is_some(),
            min_remaining_set: o.min_remaining.is_some(),
        },
    )?;
    let policy = Policy {
        expires_in_ms: expires_ms,
        refresh_before_ms,
        min_remaining_ms,
        align,
    };
    Ok((expires_secs, policy))
}

/// An origin's refresh settings in ms, and which were given explicitly (a
/// derived default is reported under the field it was derived from).
struct Timing {
    refresh_before_ms: u64,
    min_remaining_ms: u64,
    refresh_before_set: bool,
    min_remaining_set: bool,
}

/// Refuses expiry settings that cannot work: URLs served with (almost) no
/// time left, refreshes with no time to happen, or a re-signature on every
/// request. Each message names the smallest value that works.
fn check_timing(at: &str, t: &Timing) -> Result<(), ConfigError> {
    let secs = |ms: u64| format!("{}.{:03} s", ms / 1000, ms % 1000);
    let rb_field = if t.refresh_before_set {
        "refresh_before"
    } else {
        "expires_in"
    };
    let mr_field = if t.min_remaining_set {
        "min_remaining"
    } else {
        rb_field
    };
    let defaults =
        " (refresh_before defaults to expires_in / 5, min_remaining to refresh_before / 5)";
    let err = |f: &str, msg: String| {
        let why = if f == "expires_in" || (f == "refresh_before" && !t.min_remaining_set) {
            defaults
        } else {
            ""
        };
        ConfigError::new(format!("{at}.{f}"), format!("{msg}{why}"))
    };
    if t.min_remaining_ms < MIN_REMAINING_MS {
        return Err(err(
            mr_field,
            format!(
                "gives min_remaining {}, below the smallest that works ({}): a URL must outlive the request's trip to the origin",
                secs(t.min_remaining_ms),
                secs(MIN_REMAINING_MS)
            ),
        ));
    }
    let smallest_rb = t.min_remaining_ms + MIN_REFRESH_WINDOW_MS;
    if t.refresh_before_ms < smallest_rb {
        return Err(err(
            rb_field,
            format!(
                "gives refresh_before {}; it must be at least min_remaining + {} = {} so a refresh has time to happen",
                secs(t.refresh_before_ms),
                secs(MIN_REFRESH_WINDOW_MS),
                secs(smallest_rb)
            ),
        ));
    }
    // The signing window (expires_in − refresh_before) is always at least
    // 1 s: explicit values are whole seconds with refresh_before < expires_in,
    // and the default leaves 4/5 of a lifetime of at least 2 s.
    Ok(())
}

//! Wall-clock time as the core counts it: milliseconds since the Unix epoch.
//! The host's clock is read once per callback and converted here, so every
//! decision in that callback sees the same instant.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

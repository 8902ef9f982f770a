//! The `cache` block: whether presigned URLs are cached and shared between
//! workers, how many, and how the cache is scanned. Global: one for all origins.

use crate::config::error::ConfigError;
use crate::config::raw::RawCache;

/// Default number of cache slots (shared-data keys) when `cache.max_entries` is omitted.
pub const DEFAULT_MAX_ENTRIES: u32 = 10_000;
/// Upper bound on `cache.max_entries`, to keep the shared-data footprint sane.
pub const MAX_MAX_ENTRIES: u32 = 10_000_000;

/// Global cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off: every request is signed (and gets a different URL).
    pub enabled: bool,
    /// Number of slots, hence of shared-data keys the filter ever writes.
    pub max_entries: u32,
    /// Fleet-stable URLs (see `cache::Policy::align`).
    pub align: bool,
    /// Seconds per full pass of the cache-size scan (gauges `cache_entries`, `cache_bytes`).
    pub scan_interval_secs: u64,
    /// Slots of each worker's local copy of fresh rewrites (0: off).
    pub local_entries: u32,
}

/// Default slots of the per-worker local cache.
pub const DEFAULT_LOCAL_ENTRIES: u32 = 1024;
/// Upper bound on `cache.local_entries`: with `LOCAL_ENTRY_MAX_BYTES` per
/// entry, at most about 270 MiB per worker (see docs/cache.md, "Bounded memory").
pub const MAX_LOCAL_ENTRIES: u32 = 65_536;

/// Default seconds per cache-size scan pass.
pub const DEFAULT_SCAN_INTERVAL_SECS: u64 = 10;

/// Compiles the `cache` block (absent: every default).
pub(super) fn compile_cache(raw: Option<RawCache>) -> Result<CacheSettings, ConfigError> {
    let raw = raw.unwrap_or(RawCache {
        enabled: None,
        max_entries: None,
        align: None,
        scan_interval: None,
        local_entries: None,
    });
    let local_entries = raw.local_entries.unwrap_or(DEFAULT_LOCAL_ENTRIES);
    if local_entries > MAX_LOCAL_ENTRIES {
        return Err(ConfigError::new(
            "cache.local_entries",
            format!("must be between 0 and {MAX_LOCAL_ENTRIES}, got {local_entries}"),
        ));
    }
    let scan_interval_secs = raw.scan_interval.unwrap_or(DEFAULT_SCAN_INTERVAL_SECS);
    if !(1..=3600).contains(&scan_interval_secs) {
        return Err(ConfigError::new(
            "cache.scan_interval",
            format!("must be between 1 and 3600 seconds, got {scan_interval_secs}"),
        ));
    }
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    if !(1..=MAX_MAX_ENTRIES).contains(&max_entries) {
        return Err(ConfigError::new(
            "cache.max_entries",
            format!("must be between 1 and {MAX_MAX_ENTRIES}, got {max_entries}"),
        ));
    }
    Ok(CacheSettings {
        enabled: raw.enabled.unwrap_or(true),
        max_entries,
        align: raw.align.unwrap_or(true),
        scan_interval_secs,
        local_entries,
    })
}

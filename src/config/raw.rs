//! The configuration document as serde reads it: every field optional where
//! the filter has a default, unknown fields refused. Nothing here validates;
//! the other files compile these structs into `Config` and `Origin`. Each
//! field is the JSON key of the same name (docs/configuration.md).

use serde::Deserialize;

use crate::config::choices::{Addressing, Delivery, OnError, OtherMethods};
use crate::config::credentials::RawCredentials;

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) credentials: Option<RawCredentials>,
    #[serde(default)]
    pub(super) cache: Option<RawCache>,
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    pub(super) origins: Vec<RawOrigin>,
}

/// The `metrics` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(default)]
    pub(super) latency_sample_every: Option<u32>,
}

/// The `cache` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) max_entries: Option<u32>,
    #[serde(default)]
    pub(super) align: Option<bool>,
    #[serde(default)]
    pub(super) scan_interval: Option<u64>,
    #[serde(default)]
    pub(super) local_entries: Option<u32>,
}

/// An origin's `match` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) prefix: String,
    #[serde(default)]
    pub(super) host: Option<String>,
}

/// One entry of `origins`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrigin {
    pub(super) name: String,
    #[serde(rename = "match")]
    pub(super) matcher: RawMatch,
    pub(super) endpoint: String,
    pub(super) bucket: String,
    #[serde(default)]
    pub(super) addressing: Option<Addressing>,
    pub(super) region: String,
    #[serde(default)]
    pub(super) service: Option<String>,
    #[serde(default)]
    pub(super) strip_prefix: Option<String>,
    #[serde(default)]
    pub(super) key_prefix: Option<String>,
    #[serde(default)]
    pub(super) expires_in: Option<u64>,
    #[serde(default)]
    pub(super) refresh_before: Option<u64>,
    #[serde(default)]
    pub(super) min_remaining: Option<u64>,
    #[serde(default)]
    pub(super) on_error: Option<OnError>,
    #[serde(default)]
    pub(super) other_methods: Option<OtherMethods>,
    #[serde(default)]
    pub(super) allow_query: Vec<String>,
    #[serde(default)]
    pub(super) delivery: Option<Delivery>,
    #[serde(default)]
    pub(super) public_endpoint: Option<String>,
    #[serde(default)]
    pub(super) public_addressing: Option<Addressing>,
    #[serde(default)]
    pub(super) cors_origins: Vec<String>,
    #[serde(default)]
    pub(super) proxied_suffixes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) response_content_types: Option<Vec<String>>,
}

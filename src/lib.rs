#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
//! envoy-presign: a proxy-wasm filter that rewrites matched origin requests into
//! AWS SigV4 presigned URLs.
//!
//! The pure core (`config`, `credentials`, `canonical`, `sign`, `request`) never
//! calls a proxy-wasm hostcall and is unit-tested on the host. The glue
//! (`filter`, `host`) exists only in the wasm build.

pub mod actions;
pub mod cache;
pub mod cache_scan;
pub mod canonical;
pub mod config;
pub mod cred_config;
pub mod cred_fetch;
pub mod cred_parse;
pub mod cred_refresh;
pub mod credentials;
pub mod headers;
pub mod local_cache;
pub mod log_limit;
pub mod metrics;
pub mod overrides;
pub mod redirect;
pub mod request;
pub mod sign;
pub mod startup;
pub mod url_source;

/// The host command `envoy-presign-config` (src/bin): a tool for operators,
/// not part of the filter, so the Wasm build leaves it out.
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
/// `check --envoy`: the Envoy half of a deployment cross-checked against the filter's
/// configuration (host command only).
#[cfg(not(target_arch = "wasm32"))]
pub mod envoy_check;

#[cfg(test)]
mod source_checks;
#[cfg(test)]
mod testing;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;

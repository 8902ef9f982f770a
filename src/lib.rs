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

pub mod cache;
pub mod clock;
pub mod config;
pub mod log_limit;
pub mod metrics;
pub mod request;
pub mod rotation;
pub mod sigv4;

/// The host command `envoy-presign-config` (src/bin): a tool for operators,
/// not part of the filter, so the Wasm build leaves it out.
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(test)]
mod source_checks;
#[cfg(test)]
mod testing;

/// The glue: the only code that talks to the proxy-wasm host, built for wasm32 only.
#[cfg(target_arch = "wasm32")]
mod wasm;

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
// Every public item says why it exists (the style guide's rule, kept by the compiler).
#![deny(missing_docs)]
//! envoy-presign: a proxy-wasm filter that rewrites matched origin requests into
//! AWS SigV4 presigned URLs.
//!
//! The modules are rooms, lowest first; each uses only the rooms before it
//! (`source_checks` fails otherwise): `clock`, `log_limit`, `sigv4` (SigV4
//! presigning), `cache` (the shared cache's codec, policy and flow), `config`
//! (parsing and validation), `rotation` (rotating credentials), `request` (one
//! request's pipeline), `metrics`, then the host command `cli` and the glue
//! `wasm`. Everything but `wasm` is pure: it never calls a proxy-wasm hostcall
//! and is unit-tested on the host; `wasm` exists only in the wasm build.

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

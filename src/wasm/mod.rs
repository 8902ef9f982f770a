//! The proxy-wasm glue: the ABI exports, the filter's contexts and the host
//! implementations of the core's traits. The only wasm32-only code.

mod abi;
mod filter;
mod host;

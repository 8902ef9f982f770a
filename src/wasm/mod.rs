//! The proxy-wasm glue: the ABI exports, the filter's contexts and the host
//! implementations of the core's traits. The only wasm32-only code.

/// The functions Envoy calls and the contexts they reach.
mod abi;
/// The log lines of failed requests.
mod failure_log;
/// The root and HTTP contexts of this filter.
mod filter;
/// The hostcalls: the only code that calls into Envoy.
mod host;
/// This worker's rotating credentials and how refresh events apply to them.
mod rotating;
/// The state a VM's requests share.
mod shared;

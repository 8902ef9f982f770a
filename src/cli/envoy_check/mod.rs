//! `envoy-presign-config check --envoy <envoy.yaml>`: reads an Envoy bootstrap (YAML or
//! JSON, and the LDS, CDS and RDS files it names) and cross-checks it against the
//! envoy-presign configuration embedded in it. Every deployment mistake found so far lived in
//! this Envoy half, which the filter cannot see: an origin without its marker route or
//! cluster, unmarked requests reaching the private origin, a whole-response timeout that
//! cuts long videos, plaintext or an unverified certificate to an https store, origin error
//! bodies (S3's 403 echoes the canonical request) shown to clients, an access log that
//! writes the presigned `:path`, a failure policy that was never chosen.
//!
//! Pure, like the rest of the host command: files come through `read`, the filter's
//! environment through `env`. Each finding names the place in Envoy's configuration
//! (`static_resources.clusters[media].transport_socket`) and what to change.

mod clusters;
mod findings;
mod listener;
mod load;
mod routes;

use serde_json::Value;

use crate::config::startup::configure;

use findings::error;
pub use findings::{Finding, Level};
use listener::{check_access_logs, check_failure_policy};
use load::{array, connection_managers, is_filter, route_config, Loaded};
use routes::check_routes;

/// The filter's name in a connection manager's `http_filters`.
const WASM: &str = "envoy.filters.http.wasm";

/// The embedded envoy-presign configuration of a Wasm filter entry, if it is one.
fn presign_configuration(filter: &Value) -> Option<&str> {
    let config = filter.pointer("/typed_config/config")?;
    let raw = config
        .pointer("/configuration/value")
        .and_then(Value::as_str)?;
    let looks_like_ours = serde_json::from_str::<Value>(raw)
        .ok()
        .is_some_and(|v| v.get("origins").is_some());
    looks_like_ours.then_some(raw)
}

/// The checks, in the order findings are printed. `env` is the filter's environment (the
/// configuration may read credentials or chain settings from it).
pub fn check_envoy(
    file: &str,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Finding>, Vec<String>), String> {
    let loaded = Loaded::load(file, read)?;
    let clusters = loaded.items("clusters");
    let mut findings = Vec::new();
    let mut origins_seen = Vec::new();
    let mut found_filter = false;
    for listener in loaded.items("listeners") {
        for hcm in connection_managers(&listener) {
            let filters = array(hcm.value, "http_filters");
            let Some((filter, raw)) = filters.iter().find_map(|f| {
                is_filter(f, WASM, ".Wasm")
                    .then(|| presign_configuration(f))
                    .flatten()
                    .map(|raw| (f, raw))
            }) else {
                continue;
            };
            found_filter = true;
            let at = format!("{}.http_filters[{WASM}]", hcm.at);
            let config = match configure(raw.as_bytes(), env) {
                Ok(configured) => configured.config,
                Err(refusal) => {
                    findings.push(error(
                        &at,
                        format!("the filter refuses its configuration: {}", refusal.message),
                    ));
                    continue;
                }
            };
            origins_seen.extend(config.origins.iter().map(|o| o.name.clone()));
            check_failure_policy(filter, &at, &mut findings);
            check_access_logs(
                listener.value,
                &listener.at,
                hcm.value,
                &hcm.at,
                &mut findings,
            );
            match route_config(hcm.value, &hcm.at, &loaded, read) {
                Ok(routes) => check_routes(
                    &config,
                    &routes,
                    hcm.value,
                    &hcm.at,
                    &clusters,
                    &mut findings,
                ),
                Err(problem) => findings.push(error(&hcm.at, problem)),
            }
        }
    }
    if !found_filter {
        findings.push(error(
            file,
            "no envoy-presign Wasm filter found in any HTTP connection manager (a `envoy.filters.http.wasm` \
             whose `configuration` has `origins`)"
                .to_string(),
        ));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.level));
    Ok((findings, origins_seen))
}

#[cfg(test)]
mod tests;

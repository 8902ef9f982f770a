//! The routes of a connection manager, per origin: the marker route, no unmarked route to the
//! origin's cluster, timeouts that let long videos stream, error bodies scrubbed by
//! custom_response, and a cluster named like the origin.

use serde_json::Value;

use super::clusters::check_cluster_tls;
use super::findings::{error, warning, Finding};
use super::load::{array, is_filter, label, Located, Routes};
use crate::config::{Config, Delivery, Origin};
use crate::request::headers::ORIGIN_MARKER_HEADER;

/// The filter that replaces the store's error bodies, and its per-route config key.
const CUSTOM_RESPONSE: &str = "envoy.filters.http.custom_response";

/// Every route of every virtual host, with its path.
fn all_routes(config: &Routes) -> Vec<Located<'_>> {
    let mut out = Vec::new();
    for host in array(&config.value, "virtual_hosts") {
        for (index, route) in array(host, "routes").iter().enumerate() {
            let name = route
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| index.to_string(), str::to_string);
            out.push(Located {
                value: route,
                at: format!(
                    "{}.virtual_hosts[{}].routes[{name}]",
                    config.at,
                    label(host)
                ),
            });
        }
    }
    out
}

/// The marker value a route requires, if it matches `x-envoy-presign-origin` exactly.
fn marker_of(route: &Value) -> Option<&str> {
    array(route.get("match")?, "headers").iter().find_map(|h| {
        (h.get("name").and_then(Value::as_str)? == ORIGIN_MARKER_HEADER)
            .then(|| {
                h.pointer("/string_match/exact")
                    .or_else(|| h.get("exact_match"))
                    .and_then(Value::as_str)
            })
            .flatten()
    })
}

/// Clusters a route forwards to (one, or weighted ones).
fn route_clusters(route: &Value) -> Vec<&str> {
    let Some(action) = route.get("route") else {
        return Vec::new();
    };
    let mut out: Vec<&str> = action
        .get("cluster")
        .and_then(Value::as_str)
        .into_iter()
        .collect();
    out.extend(
        action
            .pointer("/weighted_clusters/clusters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str)),
    );
    out
}

/// The origins that forward through Envoy (a redirect origin only through its proxied twin).
fn forwarding(config: &Config) -> Vec<&Origin> {
    config
        .origins
        .iter()
        .filter_map(|o| match o.delivery {
            Delivery::Proxy => Some(o),
            Delivery::Redirect => o.proxied.as_deref(),
        })
        .collect()
}

/// Each forwarding origin needs its marker route, and no unmarked route may reach its cluster.
pub(super) fn check_routes(
    config: &Config,
    routes_config: &Routes,
    hcm: &Value,
    hcm_at: &str,
    clusters: &[Located<'_>],
    findings: &mut Vec<Finding>,
) {
    let all = all_routes(routes_config);
    let has_scrub_filter = array(hcm, "http_filters")
        .iter()
        .any(|f| is_filter(f, CUSTOM_RESPONSE, ".CustomResponse"));
    let mut origin_clusters = Vec::new();
    for origin in forwarding(config) {
        let marked: Vec<&Located<'_>> = all
            .iter()
            .filter(|r| marker_of(r.value) == Some(origin.name.as_str()))
            .collect();
        if marked.is_empty() {
            findings.push(error(
                &routes_config.at,
                format!(
                    "origin {0} has no route matching {ORIGIN_MARKER_HEADER}: {0} exactly: the requests it signs \
                     match no route (add one, to a cluster named {0}, before the catch-all)",
                    origin.name
                ),
            ));
        }
        for route in marked {
            check_origin_route(origin, route, has_scrub_filter, hcm_at, clusters, findings);
            origin_clusters.extend(route_clusters(route.value).into_iter().map(str::to_string));
        }
    }
    for route in &all {
        let reaches: Vec<&str> = route_clusters(route.value)
            .into_iter()
            .filter(|c| origin_clusters.iter().any(|o| o == c))
            .collect();
        if !reaches.is_empty() && marker_of(route.value).is_none() {
            findings.push(error(
                &route.at,
                format!(
                    "forwards requests the filter did not mark to the origin's cluster {}: unsigned, with the \
                     client's own Authorization, to the private store; match {ORIGIN_MARKER_HEADER} here, and \
                     answer everything else locally (a direct_response 404)",
                    reaches.join(", ")
                ),
            ));
        }
    }
}

/// One origin's marker route: timeouts, the error-body scrub, and the cluster it forwards to.
fn check_origin_route(
    origin: &Origin,
    route: &Located<'_>,
    has_scrub_filter: bool,
    hcm_at: &str,
    clusters: &[Located<'_>],
    findings: &mut Vec<Finding>,
) {
    let action = route.value.get("route");
    match action.and_then(|a| a.get("timeout")).and_then(Value::as_str) {
        Some("0s" | "0") => {}
        Some(other) => findings.push(error(
            &format!("{}.route.timeout", route.at),
            format!("{other}: a whole-response timeout cuts every video that streams longer; set 0s and bound idleness with idle_timeout"),
        )),
        None => findings.push(error(
            &format!("{}.route.timeout", route.at),
            "not set: Envoy's default of 15 s for the whole response cuts every longer video; set 0s and an idle_timeout".to_string(),
        )),
    }
    if action.and_then(|a| a.get("idle_timeout")).is_none() {
        findings.push(warning(
            &format!("{}.route.idle_timeout", route.at),
            "not set: only the connection manager's stream_idle_timeout (5 min by default) ends a stalled stream".to_string(),
        ));
    }
    let scrubbed = route
        .value
        .pointer("/typed_per_filter_config")
        .and_then(|c| c.get(CUSTOM_RESPONSE))
        .is_some();
    if !has_scrub_filter {
        findings.push(error(
            &format!("{hcm_at}.http_filters"),
            format!("no {CUSTOM_RESPONSE}: the store's error bodies reach clients (S3's 403 repeats the canonical request, session token included); add it, enabled on the origin routes (envoy/envoy.yaml)"),
        ));
    } else if !scrubbed {
        findings.push(error(
            &format!("{}.typed_per_filter_config", route.at),
            format!("no {CUSTOM_RESPONSE} config: the store's error bodies reach clients; add envoy/envoy.yaml's origin_error matcher"),
        ));
    }
    for name in route_clusters(route.value) {
        if name != origin.name {
            findings.push(warning(
                &format!("{}.route.cluster", route.at),
                format!("{name}: not named like the origin {}: the origin-side metrics (presign_origin.*, by cluster) will not line up with the filter's", origin.name),
            ));
        }
        match clusters.iter().find(|c| label(c.value) == name) {
            Some(cluster) => check_cluster_tls(origin, cluster, findings),
            None => findings.push(error(
                &format!("{}.route.cluster", route.at),
                format!("{name}: no such cluster in the configuration (static or CDS file)"),
            )),
        }
    }
}

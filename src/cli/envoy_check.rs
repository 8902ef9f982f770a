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

use serde_json::Value;

use crate::config::startup::configure;
use crate::config::{Config, Delivery, Origin};
use crate::request::headers::ORIGIN_MARKER_HEADER;

const HCM: &str = "envoy.filters.network.http_connection_manager";
const WASM: &str = "envoy.filters.http.wasm";
const CUSTOM_RESPONSE: &str = "envoy.filters.http.custom_response";
const TLS_CONTEXT: &str = "UpstreamTlsContext";
/// Access-log commands that print the request path: after the filter ran, the presigned URL.
const PATH_COMMANDS: [&str; 3] = ["%req(:path", "%req(x-envoy-original-path?:path", "%path"];

/// How bad a finding is: an error makes the command exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works, but worth knowing.
    Warning,
    /// Leaks a credential, reaches the private origin unsigned, or breaks delivery.
    Error,
}

/// One thing the check found, at a place in Envoy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// Where, as a path into the configuration (lists indexed by `name` where items have one).
    pub at: String,
    /// What is wrong and what to change.
    pub message: String,
}

/// A configuration item and where it came from, for the findings' paths.
struct Located<'a> {
    value: &'a Value,
    at: String,
}

/// A route configuration (inline, or read from an RDS file) and where it came from.
struct Routes {
    value: Value,
    at: String,
}

/// Everything the check reads: the bootstrap and the files it references, parsed.
struct Loaded {
    documents: Vec<(String, Value)>,
}

/// Reads a YAML or JSON file (JSON is YAML) into a JSON value.
fn parse(name: &str, bytes: &[u8]) -> Result<Value, String> {
    serde_yaml::from_slice::<Value>(bytes).map_err(|e| format!("{name}: not YAML or JSON: {e}"))
}

/// The file a `config_source` names, if it is a file (`path_config_source.path` or `path`).
fn source_path(source: &Value) -> Option<&str> {
    source
        .pointer("/path_config_source/path")
        .or_else(|| source.get("path"))
        .and_then(Value::as_str)
}

impl Loaded {
    fn load(file: &str, read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>) -> Result<Self, String> {
        let bytes = read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let bootstrap = parse(file, &bytes)?;
        let mut documents = vec![(file.to_string(), bootstrap.clone())];
        let dir = std::path::Path::new(file).parent();
        for key in ["lds_config", "cds_config"] {
            let Some(name) = bootstrap
                .pointer(&format!("/dynamic_resources/{key}"))
                .and_then(source_path)
            else {
                continue;
            };
            documents.push(Self::referenced(name, dir, read)?);
        }
        Ok(Self { documents })
    }

    /// A file named in the configuration: as given, else beside the bootstrap.
    fn referenced(
        name: &str,
        dir: Option<&std::path::Path>,
        read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Result<(String, Value), String> {
        let beside = dir.map(|d| d.join(name).to_string_lossy().into_owned());
        let (path, bytes) = match read(name) {
            Ok(bytes) => (name.to_string(), bytes),
            Err(first) => match beside.as_deref().map(|p| (p, read(p))) {
                Some((p, Ok(bytes))) => (p.to_string(), bytes),
                _ => {
                    return Err(format!(
                        "cannot read {name} (named in the configuration): {first}"
                    ))
                }
            },
        };
        Ok((path.clone(), parse(&path, &bytes)?))
    }

    /// Static listeners or clusters of the bootstrap, then the resources of the LDS or CDS file.
    fn items(&self, kind: &str) -> Vec<Located<'_>> {
        let mut out = Vec::new();
        for (index, (file, doc)) in self.documents.iter().enumerate() {
            let (list, prefix) = if index == 0 {
                (
                    doc.pointer(&format!("/static_resources/{kind}")),
                    format!("static_resources.{kind}"),
                )
            } else {
                (doc.get("resources"), format!("{file}: resources"))
            };
            let Some(Value::Array(items)) = list else {
                continue;
            };
            let wanted = if kind == "listeners" {
                "Listener"
            } else {
                "Cluster"
            };
            for item in items {
                let typed = item.get("@type").and_then(Value::as_str);
                if typed.is_some_and(|t| !t.ends_with(wanted)) {
                    continue;
                }
                out.push(Located {
                    value: item,
                    at: format!("{prefix}[{}]", label(item)),
                });
            }
        }
        out
    }
}

/// `name` of a list item, for paths.
fn label(item: &Value) -> String {
    item.get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// Whether a filter entry (`name` + `typed_config`) is the one named `name` / of type `type_suffix`.
fn is_filter(entry: &Value, name: &str, type_suffix: &str) -> bool {
    entry.get("name").and_then(Value::as_str) == Some(name)
        || entry
            .pointer("/typed_config/@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(type_suffix))
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The HTTP connection managers of a listener, with their paths.
fn connection_managers<'a>(listener: &Located<'a>) -> Vec<Located<'a>> {
    let mut out = Vec::new();
    for chain in array(listener.value, "filter_chains") {
        for filter in array(chain, "filters") {
            if is_filter(filter, HCM, "HttpConnectionManager") {
                if let Some(config) = filter.get("typed_config") {
                    out.push(Located {
                        value: config,
                        at: format!("{}.filter_chains[].filters[{HCM}]", listener.at),
                    });
                }
            }
        }
    }
    out
}

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

fn error(at: &str, message: String) -> Finding {
    Finding {
        level: Level::Error,
        at: at.to_string(),
        message,
    }
}

fn warning(at: &str, message: String) -> Finding {
    Finding {
        level: Level::Warning,
        at: at.to_string(),
        message,
    }
}

fn check_failure_policy(filter: &Value, at: &str, findings: &mut Vec<Finding>) {
    let policy = filter
        .pointer("/typed_config/config/failure_policy")
        .and_then(Value::as_str);
    match policy {
        Some("FAIL_RELOAD" | "FAIL_CLOSED") => {}
        Some("FAIL_OPEN") => findings.push(warning(
            &format!("{at}.typed_config.config.failure_policy"),
            "FAIL_OPEN: requests skip a dead filter and go on unsigned (unmarked, they should get the 404); \
             set FAIL_RELOAD"
                .to_string(),
        )),
        _ => findings.push(warning(
            &format!("{at}.typed_config.config.failure_policy"),
            "not set: a VM that dies fails every request of its worker closed until Envoy restarts \
             (FAIL_CLOSED); set FAIL_RELOAD, or FAIL_CLOSED if that is your choice"
                .to_string(),
        )),
    }
}

/// Access logs of the listener and of the connection manager: none may print the path.
fn check_access_logs(
    listener: &Value,
    listener_at: &str,
    hcm: &Value,
    hcm_at: &str,
    findings: &mut Vec<Finding>,
) {
    let logs = array(listener, "access_log")
        .iter()
        .map(|l| (l, format!("{listener_at}.access_log")))
        .chain(
            array(hcm, "access_log")
                .iter()
                .map(|l| (l, format!("{hcm_at}.access_log"))),
        );
    for (log, at) in logs {
        let at = format!("{at}[{}]", label(log));
        let text = log.to_string().to_ascii_lowercase();
        if PATH_COMMANDS.iter().any(|c| text.contains(c)) {
            findings.push(error(
                &at,
                "its format prints the request path: once the filter ran that is the presigned URL, a bearer \
                 credential until it expires; log %REQ(X-ENVOY-ORIGINAL-PATH)% or nothing of the path"
                    .to_string(),
            ));
        } else if writes_default_format(log) {
            findings.push(error(
                &at,
                "no format: Envoy's default format prints the request path (the presigned URL); give it a \
                 format without the path (envoy/envoy.yaml's)"
                    .to_string(),
            ));
        }
    }
}

/// A file or stream logger without any format of its own uses Envoy's default, path included.
fn writes_default_format(log: &Value) -> bool {
    let Some(config) = log.get("typed_config") else {
        return false;
    };
    let kind = config.get("@type").and_then(Value::as_str).unwrap_or("");
    let writes_lines = ["FileAccessLog", "StdoutAccessLog", "StderrAccessLog"]
        .iter()
        .any(|k| kind.ends_with(k));
    let has_format = ["log_format", "format", "json_format", "typed_json_format"]
        .iter()
        .any(|k| config.get(k).is_some());
    writes_lines && !has_format
}

/// The connection manager's routes: inline, or from the RDS file it names.
fn route_config(
    hcm: &Value,
    hcm_at: &str,
    loaded: &Loaded,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<Routes, String> {
    if let Some(inline) = hcm.get("route_config") {
        return Ok(Routes {
            value: inline.clone(),
            at: format!("{hcm_at}.route_config"),
        });
    }
    let source = hcm
        .pointer("/rds/config_source")
        .and_then(source_path)
        .ok_or_else(|| {
            "neither route_config nor an RDS file: the check cannot see the routes (RDS over xDS)"
                .to_string()
        })?;
    let dir = loaded
        .documents
        .first()
        .and_then(|(f, _)| std::path::Path::new(f).parent().map(|p| p.to_path_buf()));
    let (file, doc) = Loaded::referenced(source, dir.as_deref(), read)?;
    let wanted = hcm
        .pointer("/rds/route_config_name")
        .and_then(Value::as_str);
    let found = array(&doc, "resources")
        .iter()
        .find(|r| wanted.is_none() || r.get("name").and_then(Value::as_str) == wanted);
    found
        .map(|r| Routes {
            value: r.clone(),
            at: format!("{file}: resources[{}]", label(r)),
        })
        .ok_or_else(|| format!("{file} has no route configuration {}", wanted.unwrap_or("")))
}

/// Every route of every virtual host, with its path.
fn routes(config: &Routes) -> Vec<Located<'_>> {
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

fn check_routes(
    config: &Config,
    routes_config: &Routes,
    hcm: &Value,
    hcm_at: &str,
    clusters: &[Located<'_>],
    findings: &mut Vec<Finding>,
) {
    let all = routes(routes_config);
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

/// An https store needs TLS that verifies the certificate for the name the filter signs for.
fn check_cluster_tls(origin: &Origin, cluster: &Located<'_>, findings: &mut Vec<Finding>) {
    let socket = cluster.value.get("transport_socket");
    let tls = socket
        .filter(|s| {
            s.get("name").and_then(Value::as_str) == Some("envoy.transport_sockets.tls")
                || s.pointer("/typed_config/@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(TLS_CONTEXT))
        })
        .and_then(|s| s.get("typed_config"));
    let at = format!("{}.transport_socket", cluster.at);
    let host = signed_host(&origin.authority);
    if origin.endpoint.scheme != "https" {
        if tls.is_some() {
            findings.push(warning(&at, format!("TLS to an origin whose endpoint is http ({}): the filter signs for http; say https in endpoint", origin.authority)));
        }
        return;
    }
    let Some(tls) = tls else {
        findings.push(error(&at, format!(
            "origin {} is https://{}, but this cluster speaks plaintext: every presigned URL crosses the network readable; add an UpstreamTlsContext (envoy/origin-https.yaml)",
            origin.name, origin.authority)));
        return;
    };
    match tls.get("sni").and_then(Value::as_str) {
        Some(sni) if sni.eq_ignore_ascii_case(host) => {}
        other => findings.push(error(&format!("{at}.typed_config.sni"), format!(
            "{}: the filter signs for {host}; set sni: {host} (a store serving several names picks its certificate by it)",
            other.unwrap_or("not set")))),
    }
    let context = tls
        .pointer("/common_tls_context/validation_context")
        .or_else(|| {
            tls.pointer(
                "/common_tls_context/combined_validation_context/default_validation_context",
            )
        });
    let has_ca = context.is_some_and(|c| c.get("trusted_ca").is_some())
        || tls
            .pointer("/common_tls_context/validation_context_sds_secret_config")
            .is_some();
    if !has_ca {
        findings.push(error(&format!("{at}.typed_config.common_tls_context"), format!(
            "no trusted_ca: Envoy accepts any certificate, so anyone on the path to {host} reads every presigned URL and answers with their own bytes; add validation_context.trusted_ca (the system bundle or your CA)")));
        return;
    }
    let names = context
        .map(|c| {
            [
                array(c, "match_typed_subject_alt_names"),
                array(c, "match_subject_alt_names"),
            ]
            .concat()
        })
        .unwrap_or_default();
    if !names.iter().any(|m| san_matches(m, host)) {
        findings.push(error(&format!("{at}.typed_config.common_tls_context.validation_context"), format!(
            "no subject alt name matcher for {host}: any certificate the CA signed, for any name, is accepted; add match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: {host}}}}}]")));
    }
}

/// The host part of an authority (`host[:port]`, IPv6 in brackets).
fn signed_host(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => authority,
    }
}

/// Whether a SAN matcher (typed or the deprecated string matcher) accepts `host`.
fn san_matches(matcher: &Value, host: &str) -> bool {
    let m = matcher.get("matcher").unwrap_or(matcher);
    let host = host.to_ascii_lowercase();
    let text = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    text("exact").is_some_and(|e| e == host)
        || text("suffix").is_some_and(|s| host.ends_with(&s))
        || text("prefix").is_some_and(|p| host.starts_with(&p))
}

#[cfg(test)]
#[path = "envoy_check_tests.rs"]
mod tests;

//! The cluster an origin route forwards to: TLS to an https store, with the SNI, trusted CA and
//! subject alt name of the host the filter signs for.

use serde_json::Value;

use super::findings::{error, warning, Finding};
use super::load::{array, Located};
use crate::config::Origin;

/// The `@type` suffix of an upstream TLS transport socket's config.
const TLS_CONTEXT: &str = "UpstreamTlsContext";

/// An https store needs TLS that verifies the certificate for the name the filter signs for.
pub(super) fn check_cluster_tls(
    origin: &Origin,
    cluster: &Located<'_>,
    findings: &mut Vec<Finding>,
) {
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
pub(super) fn signed_host(authority: &str) -> &str {
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

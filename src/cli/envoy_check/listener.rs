//! What the listener and the filter entry itself must get right: a chosen failure policy, and
//! access logs that never print the presigned path.

use serde_json::Value;

use super::findings::{error, warning, Finding};
use super::load::{array, label};

/// Access-log commands that print the request path: after the filter ran, the presigned URL.
const PATH_COMMANDS: [&str; 3] = ["%req(:path", "%req(x-envoy-original-path?:path", "%path"];

/// The Wasm filter entry's failure policy: what happens to requests when the VM dies.
pub(super) fn check_failure_policy(filter: &Value, at: &str, findings: &mut Vec<Finding>) {
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
pub(super) fn check_access_logs(
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

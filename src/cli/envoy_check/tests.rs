//! `check --envoy` on in-memory bootstraps: a good one is clean, and each rule fires on a copy
//! with one mistake, naming the place.

use serde_json::{json, Value};

use super::clusters::signed_host;
use super::*;

const CUSTOM_RESPONSE_CONFIG: &str =
    "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3.CustomResponse";

/// The filter's configuration: one proxy origin to an https store.
fn filter_config(endpoint: &str, extra: Value) -> Value {
    let mut origin = json!({"name": "media", "match": {"prefix": "/media/"}, "endpoint": endpoint,
                            "bucket": "my-media", "region": "eu-west-1"});
    if let (Some(o), Some(e)) = (origin.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json!({"credentials": {"source": "env"}, "origins": [origin]})
}

fn tls(sni: &str, san: Value) -> Value {
    json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": sni,
        "common_tls_context": {"validation_context": {
            "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": san}]}}}})
}

/// A bootstrap as envoy/envoy.yaml ships it, for an https store.
fn good() -> Value {
    good_for(
        &filter_config("https://s3.eu-west-1.amazonaws.com", json!({})),
        "s3.eu-west-1.amazonaws.com",
    )
}

fn good_for(config: &Value, host: &str) -> Value {
    json!({
        "static_resources": {
            "listeners": [{"name": "media", "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": "/dev/stdout",
                        "log_format": {"text_format_source": {"inline_string": "%REQ(:METHOD)% %RESPONSE_CODE%\n"}}}}],
                    "route_config": {"virtual_hosts": [{"name": "origin", "domains": ["*"], "routes": [
                        {"name": "media",
                         "match": {"prefix": "/", "headers": [{"name": "x-envoy-presign-origin",
                                                               "string_match": {"exact": "media"}}]},
                         "route": {"cluster": "media", "timeout": "0s", "idle_timeout": "30s"},
                         "typed_per_filter_config": {"envoy.filters.http.custom_response": {"@type": CUSTOM_RESPONSE_CONFIG}}},
                        {"name": "not_found", "match": {"prefix": "/"}, "direct_response": {"status": 404}}]}]},
                    "http_filters": [
                        {"name": "envoy.filters.http.custom_response", "typed_config": {"@type": CUSTOM_RESPONSE_CONFIG}},
                        {"name": "envoy.filters.http.wasm", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {"root_id": "envoy_presign", "failure_policy": "FAIL_RELOAD",
                                       "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                                         "value": config.to_string()}}}},
                        {"name": "envoy.filters.http.router"}]}}]}]}],
            "clusters": [{"name": "media", "transport_socket": tls(host, json!({"exact": host}))}]
        }
    })
}

/// Runs the check on `files` (the bootstrap is `envoy.yaml`), with AWS keys in the environment.
fn run_files(files: &[(&str, String)]) -> Result<(Vec<Finding>, Vec<String>), String> {
    let read = crate::testing::file_reader(files);
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
        _ => None,
    };
    check_envoy("conf/envoy.yaml", &read, &env)
}

fn run(bootstrap: &Value) -> Vec<Finding> {
    run_files(&[("conf/envoy.yaml", bootstrap.to_string())])
        .map_or_else(|e| vec![error("load", e)], |(f, _)| f)
}

fn hcm(b: &mut Value) -> &mut Value {
    b.pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .unwrap_or_else(|| unreachable!())
}

fn route(b: &mut Value, index: usize) -> &mut Value {
    hcm(b)
        .pointer_mut(&format!("/route_config/virtual_hosts/0/routes/{index}"))
        .unwrap_or_else(|| unreachable!())
}

fn cluster(b: &mut Value) -> &mut Value {
    b.pointer_mut("/static_resources/clusters/0")
        .unwrap_or_else(|| unreachable!())
}

/// The one finding, as (level, place, a part of its message).
fn only(findings: &[Finding]) -> (Level, &str, &str) {
    assert_eq!(findings.len(), 1, "{findings:#?}");
    (
        findings[0].level,
        findings[0].at.as_str(),
        findings[0].message.as_str(),
    )
}

const HCM_AT: &str = "static_resources.listeners[media].filter_chains[].filters[envoy.filters.network.http_connection_manager]";

fn media_route_at() -> String {
    format!("{HCM_AT}.route_config.virtual_hosts[origin].routes[media]")
}

#[test]
fn the_shipped_shape_is_clean_and_names_its_origins() {
    let found = run_files(&[("conf/envoy.yaml", good().to_string())]);
    assert_eq!(found, Ok((vec![], vec!["media".to_string()])));
}

#[test]
fn a_route_without_whole_response_timeout_zero_is_an_error() {
    let mut b = good();
    route(&mut b, 0)["route"]
        .as_object_mut()
        .map(|r| r.remove("timeout"));
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (
            Level::Error,
            format!("{}.route.timeout", media_route_at()).as_str()
        )
    );
    assert!(message.contains("default of 15 s"), "{message}");

    route(&mut b, 0)["route"]["timeout"] = json!("60s");
    let found = run(&b);
    assert!(only(&found).2.starts_with("60s: a whole-response timeout"));
    route(&mut b, 0)["route"]["timeout"] = json!("0");
    assert_eq!(run(&b), vec![]);
}

#[test]
fn a_route_without_idle_timeout_is_a_warning() {
    let mut b = good();
    route(&mut b, 0)["route"]
        .as_object_mut()
        .map(|r| r.remove("idle_timeout"));
    let found = run(&b);
    assert_eq!(only(&found).0, Level::Warning);
    assert_eq!(
        only(&found).1,
        format!("{}.route.idle_timeout", media_route_at())
    );
}

#[test]
fn an_origin_without_its_marker_route_is_an_error() {
    let mut b = good();
    route(&mut b, 0)["match"]["headers"][0]["string_match"]["exact"] = json!("other");
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (Level::Error, format!("{HCM_AT}.route_config").as_str())
    );
    assert!(
        message.starts_with("origin media has no route matching x-envoy-presign-origin: media"),
        "{message}"
    );
}

#[test]
fn the_deprecated_exact_match_form_counts_as_the_marker() {
    let mut b = good();
    route(&mut b, 0)["match"]["headers"][0] =
        json!({"name": "x-envoy-presign-origin", "exact_match": "media"});
    assert_eq!(run(&b), vec![]);
}

#[test]
fn unmarked_routes_to_the_origin_cluster_are_errors() {
    let mut b = good();
    route(&mut b, 1)
        .as_object_mut()
        .map(|r| r.remove("direct_response"));
    route(&mut b, 1)["route"] = json!({"cluster": "media"});
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(level, Level::Error);
    assert_eq!(
        at,
        format!("{HCM_AT}.route_config.virtual_hosts[origin].routes[not_found]")
    );
    assert!(
        message.contains("did not mark to the origin's cluster media"),
        "{message}"
    );

    route(&mut b, 1)["route"] =
        json!({"weighted_clusters": {"clusters": [{"name": "app"}, {"name": "media"}]}});
    assert!(only(&run(&b)).2.contains("cluster media"));
    route(&mut b, 1)["route"] = json!({"cluster": "app"});
    assert_eq!(
        run(&b),
        vec![],
        "another service behind the catch-all is the operator's choice"
    );
}

#[test]
fn a_cluster_not_named_like_its_origin_is_a_warning_and_a_missing_one_an_error() {
    let mut b = good();
    route(&mut b, 0)["route"]["cluster"] = json!("s3");
    let found = run(&b);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        (found[0].level, found[0].message.as_str()),
        (
            Level::Error,
            "s3: no such cluster in the configuration (static or CDS file)"
        )
    );
    assert_eq!(found[1].level, Level::Warning);
    assert!(found[1]
        .message
        .starts_with("s3: not named like the origin media"));
    cluster(&mut b)["name"] = json!("s3");
    assert_eq!(only(&run(&b)).0, Level::Warning);
}

#[test]
fn the_error_scrub_must_be_there_and_enabled_on_the_route() {
    let mut b = good();
    route(&mut b, 0)
        .as_object_mut()
        .map(|r| r.remove("typed_per_filter_config"));
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (
            Level::Error,
            format!("{}.typed_per_filter_config", media_route_at()).as_str()
        )
    );
    assert!(message.contains("error bodies reach clients"));

    let mut b = good();
    hcm(&mut b)["http_filters"]
        .as_array_mut()
        .map(|f| f.remove(0));
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (Level::Error, format!("{HCM_AT}.http_filters").as_str())
    );
    assert!(message.contains("session token included"), "{message}");
}

#[test]
fn plaintext_to_an_https_store_is_an_error() {
    let mut b = good();
    cluster(&mut b)
        .as_object_mut()
        .map(|c| c.remove("transport_socket"));
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (
            Level::Error,
            "static_resources.clusters[media].transport_socket"
        )
    );
    assert!(
        message.contains("speaks plaintext") && message.contains("envoy/origin-https.yaml"),
        "{message}"
    );
}

#[test]
fn tls_must_name_and_verify_the_signed_host() {
    let at = "static_resources.clusters[media].transport_socket.typed_config";
    let mut b = good();
    cluster(&mut b)["transport_socket"]["typed_config"]["sni"] = json!("s3.amazonaws.com");
    let found = run(&b);
    assert_eq!(only(&found).1, format!("{at}.sni"));
    assert!(only(&found)
        .2
        .starts_with("s3.amazonaws.com: the filter signs for s3.eu-west-1.amazonaws.com"));
    cluster(&mut b)["transport_socket"]["typed_config"]
        .as_object_mut()
        .map(|t| t.remove("sni"));
    assert!(only(&run(&b)).2.starts_with("not set:"));

    let mut b = good();
    cluster(&mut b)["transport_socket"]["typed_config"]["common_tls_context"] = json!({});
    let found = run(&b);
    assert_eq!(only(&found).1, format!("{at}.common_tls_context"));
    assert!(only(&found)
        .2
        .starts_with("no trusted_ca: Envoy accepts any certificate"));

    let mut b = good();
    cluster(&mut b)["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
        .as_object_mut()
        .map(|v| v.remove("match_typed_subject_alt_names"));
    let found = run(&b);
    assert_eq!(
        only(&found).1,
        format!("{at}.common_tls_context.validation_context")
    );
    assert!(only(&found)
        .2
        .starts_with("no subject alt name matcher for s3.eu-west-1.amazonaws.com"));
}

#[test]
fn subject_alt_name_matchers_are_read_as_envoy_applies_them() {
    for (matcher, clean) in [
        (json!({"exact": "S3.EU-WEST-1.amazonaws.com"}), true),
        (json!({"suffix": ".amazonaws.com"}), true),
        (json!({"prefix": "s3.eu-west-1."}), true),
        (json!({"exact": "s3.eu-west-2.amazonaws.com"}), false),
        (json!({"suffix": ".example.com"}), false),
        (json!({"prefix": "s4."}), false),
        (json!({"safe_regex": {"regex": ".*"}}), false),
    ] {
        let mut b = good();
        cluster(&mut b)["transport_socket"] = tls("s3.eu-west-1.amazonaws.com", matcher.clone());
        assert_eq!(run(&b).is_empty(), clean, "{matcher}");
    }
    // The deprecated untyped list, and a validation context inside a combined one.
    let mut b = good();
    let context = &mut cluster(&mut b)["transport_socket"]["typed_config"]["common_tls_context"];
    *context = json!({"combined_validation_context": {"default_validation_context": {
        "trusted_ca": {"filename": "/ca.pem"},
        "match_subject_alt_names": [{"exact": "s3.eu-west-1.amazonaws.com"}]}}});
    assert_eq!(run(&b), vec![]);
}

#[test]
fn a_virtual_hosted_origin_needs_the_bucket_host_in_sni_and_name() {
    let config = filter_config(
        "https://s3.eu-west-1.amazonaws.com",
        json!({"addressing": "virtual"}),
    );
    let b = good_for(&config, "my-media.s3.eu-west-1.amazonaws.com");
    assert_eq!(run(&b), vec![]);
    let b = good_for(&config, "s3.eu-west-1.amazonaws.com");
    let found = run(&b);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0]
        .message
        .contains("the filter signs for my-media.s3.eu-west-1.amazonaws.com"));
    assert!(found[1]
        .message
        .starts_with("no subject alt name matcher for my-media.s3.eu-west-1.amazonaws.com"));
}

#[test]
fn http_origins_need_no_tls_and_get_a_warning_with_it() {
    let config = filter_config("http://127.0.0.1:8333", json!({}));
    let mut b = good_for(&config, "127.0.0.1");
    let found = run(&b);
    assert_eq!(only(&found).0, Level::Warning);
    assert!(only(&found)
        .2
        .starts_with("TLS to an origin whose endpoint is http (127.0.0.1:8333)"));
    cluster(&mut b)
        .as_object_mut()
        .map(|c| c.remove("transport_socket"));
    assert_eq!(run(&b), vec![]);
}

#[test]
fn access_logs_must_not_print_the_path() {
    for format in [
        "%REQ(:PATH)%",
        "%req(:path)%",
        "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "%PATH%",
        "%PATH(WQ:ORIG)%",
    ] {
        let mut b = good();
        hcm(&mut b)["access_log"][0]["typed_config"]["log_format"]["text_format_source"]
            ["inline_string"] = json!(format!("%REQ(:METHOD)% {format}"));
        let found = run(&b);
        let (level, at, message) = only(&found);
        assert_eq!(
            (level, at),
            (
                Level::Error,
                format!("{HCM_AT}.access_log[envoy.access_loggers.file]").as_str()
            )
        );
        assert!(message.contains("prints the request path"), "{format}");
    }
    let mut b = good();
    hcm(&mut b)["access_log"][0]["typed_config"]
        .as_object_mut()
        .map(|c| c.remove("log_format"));
    assert!(only(&run(&b))
        .2
        .starts_with("no format: Envoy's default format prints the request path"));
    // A listener's own access log is read too; a stats logger without a format is not a line logger.
    let mut b = good();
    b["static_resources"]["listeners"][0]["access_log"] = json!([{"name": "l", "typed_config": {"@type": "x.v3.StdoutAccessLog", "log_format": {"json_format": {"p": "%REQ(:PATH)%"}}}}]);
    assert_eq!(
        only(&run(&b)).1,
        "static_resources.listeners[media].access_log[l]"
    );
    let mut b = good();
    hcm(&mut b)["access_log"] = json!([{"name": "s", "typed_config": {"@type": "envoy.extensions.access_loggers.stats.v3.Config"}}]);
    assert_eq!(run(&b), vec![]);
}

#[test]
fn the_failure_policy_is_read() {
    let policy = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/1/typed_config/config";
    for (value, warned) in [
        (json!("FAIL_CLOSED"), None),
        (
            json!("FAIL_OPEN"),
            Some("FAIL_OPEN: requests skip a dead filter"),
        ),
        (Value::Null, Some("not set: a VM that dies")),
    ] {
        let mut b = good();
        let config = b
            .pointer_mut(policy)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| unreachable!());
        if value.is_null() {
            config.remove("failure_policy");
        } else {
            config.insert("failure_policy".into(), value.clone());
        }
        let found = run(&b);
        assert_eq!(
            found.len(),
            usize::from(warned.is_some()),
            "{value}: {found:#?}"
        );
        if let Some(says) = warned {
            assert!(found[0].message.starts_with(says), "{found:#?}");
            assert_eq!(found[0].level, Level::Warning);
            assert!(found[0].at.ends_with(
                ".http_filters[envoy.filters.http.wasm].typed_config.config.failure_policy"
            ));
        }
    }
}

#[test]
fn a_configuration_the_filter_refuses_is_an_error() {
    let config = json!({"origins": [{"name": "media", "match": {"prefix": "/m/"}, "endpoint": "ftp://x", "bucket": "b", "region": "r"}]});
    let b = good_for(&config, "x");
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!(
        (level, at),
        (
            Level::Error,
            format!("{HCM_AT}.http_filters[envoy.filters.http.wasm]").as_str()
        )
    );
    assert!(message.starts_with("the filter refuses its configuration: envoy-presign: invalid configuration: origins[0].endpoint"), "{message}");
}

#[test]
fn without_the_filter_there_is_nothing_to_check() {
    let mut b = good();
    hcm(&mut b)["http_filters"] = json!([{"name": "envoy.filters.http.router"}]);
    let found = run(&b);
    let (level, at, message) = only(&found);
    assert_eq!((level, at), (Level::Error, "conf/envoy.yaml"));
    assert!(message.starts_with("no envoy-presign Wasm filter found"));
    // A Wasm filter that is someone else's (no `origins`) is not ours either.
    let mut b = good();
    hcm(&mut b)["http_filters"][1]["typed_config"]["config"]["configuration"]["value"] =
        json!("{\"other\": 1}");
    assert!(only(&run(&b)).2.starts_with("no envoy-presign Wasm filter"));
}

#[test]
fn redirect_origins_need_a_route_only_for_their_proxied_keys() {
    let redirect = json!({"delivery": "redirect", "public_endpoint": "https://media.example.com"});
    let config = filter_config("https://s3.eu-west-1.amazonaws.com", redirect.clone());
    let mut b = good_for(&config, "s3.eu-west-1.amazonaws.com");
    assert_eq!(
        run(&b),
        vec![],
        "the twin signs for the endpoint, through the marker route"
    );
    route(&mut b, 0)["match"]["headers"][0]["string_match"]["exact"] = json!("none");
    assert_eq!(only(&run(&b)).0, Level::Error);
    let mut no_twin = redirect;
    no_twin["proxied_suffixes"] = json!([]);
    let config = filter_config("https://s3.eu-west-1.amazonaws.com", no_twin);
    let mut b = good_for(&config, "s3.eu-west-1.amazonaws.com");
    route(&mut b, 0)["match"]["headers"][0]["string_match"]["exact"] = json!("none");
    assert_eq!(
        run(&b),
        vec![],
        "every request gets a 307: nothing is forwarded"
    );
}

#[test]
fn lds_cds_and_rds_files_are_followed_beside_the_bootstrap() {
    let b = good();
    let mut listener_rds = b
        .pointer("/static_resources/listeners/0")
        .cloned()
        .unwrap_or_default();
    let cluster_value = b
        .pointer("/static_resources/clusters/0")
        .cloned()
        .unwrap_or_default();
    let routes = listener_rds
        .pointer_mut("/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
        .and_then(|h| h.remove("route_config"))
        .unwrap_or_default();
    listener_rds["filter_chains"][0]["filters"][0]["typed_config"]["rds"] = json!({"route_config_name": "origin", "config_source": {"path_config_source": {"path": "rds.yaml"}}});
    let mut routes = routes;
    routes["name"] = json!("origin");
    let bootstrap = json!({"dynamic_resources": {
        "lds_config": {"path_config_source": {"path": "lds.yaml"}},
        "cds_config": {"path": "/abs/cds.json"}}});
    listener_rds["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    let other =
        json!({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "skipped"});
    let lds =
        serde_yaml::to_string(&json!({"resources": [other, listener_rds]})).unwrap_or_default();
    let files = [
        (
            "conf/envoy.yaml",
            serde_yaml::to_string(&bootstrap).unwrap_or_default(),
        ),
        ("conf/lds.yaml", lds),
        (
            "/abs/cds.json",
            json!({"resources": [cluster_value]}).to_string(),
        ),
        (
            "conf/rds.yaml",
            json!({"resources": [{"name": "other"}, routes]}).to_string(),
        ),
    ];
    let (found, origins) = run_files(&files).unwrap_or_default();
    assert_eq!((found, origins), (vec![], vec!["media".to_string()]));
    // The findings name the file they are in.
    let mut broken = files.clone();
    broken[2].1 = json!({"resources": [{"name": "media"}]}).to_string();
    let (found, _) = run_files(&broken).unwrap_or_default();
    assert_eq!(
        only(&found).1,
        "/abs/cds.json: resources[media].transport_socket"
    );
    let mut missing = files;
    missing[3].0 = "elsewhere.yaml";
    let (found, _) = run_files(&missing).unwrap_or_default();
    assert!(
        only(&found)
            .2
            .starts_with("cannot read rds.yaml (named in the configuration)"),
        "{found:#?}"
    );
}

#[test]
fn unreadable_or_unparsable_files_are_refusals_not_findings() {
    assert_eq!(
        run_files(&[]).map(|_| ()),
        Err("cannot read conf/envoy.yaml: entity not found".to_string())
    );
    let refused = run_files(&[("conf/envoy.yaml", "{: [".to_string())]);
    assert!(refused.is_err_and(|e| e.starts_with("conf/envoy.yaml: not YAML or JSON")));
    let bootstrap = json!({"dynamic_resources": {"lds_config": {"path": "missing.yaml"}}});
    let refused = run_files(&[("conf/envoy.yaml", bootstrap.to_string())]);
    assert!(refused.is_err_and(|e| e.starts_with("cannot read missing.yaml")));
}

#[test]
fn routes_served_over_rds_from_a_control_plane_cannot_be_checked() {
    let mut b = good();
    let h = hcm(&mut b)
        .as_object_mut()
        .unwrap_or_else(|| unreachable!());
    h.remove("route_config");
    h.insert(
        "rds".into(),
        json!({"route_config_name": "x", "config_source": {"ads": {}}}),
    );
    let found = run(&b);
    assert!(only(&found)
        .2
        .starts_with("neither route_config nor an RDS file"));
}

#[test]
fn errors_come_before_warnings() {
    let mut b = good();
    route(&mut b, 0)["route"] = json!({"cluster": "media"});
    let found = run(&b);
    let levels: Vec<Level> = found.iter().map(|f| f.level).collect();
    assert_eq!(levels, [Level::Error, Level::Warning]);
}

#[test]
fn signed_host_drops_only_a_port() {
    assert_eq!(signed_host("s3.amazonaws.com:9000"), "s3.amazonaws.com");
    assert_eq!(signed_host("s3.amazonaws.com"), "s3.amazonaws.com");
    assert_eq!(signed_host("[::1]:9000"), "[::1]");
    assert_eq!(signed_host("[::1]"), "[::1]");
    assert_eq!(signed_host("host:"), "host:");
}

#[test]
fn a_transport_socket_is_tls_by_its_name_or_its_type() {
    let mut b = good();
    cluster(&mut b)["transport_socket"]
        .as_object_mut()
        .map(|s| s.remove("name"));
    assert_eq!(run(&b), vec![], "the type alone says TLS");
    let mut b = good();
    cluster(&mut b)["transport_socket"]["typed_config"]["@type"] = json!("x.UpstreamTlsContextV9");
    assert_eq!(run(&b), vec![], "the name alone says TLS");
    let mut b = good();
    cluster(&mut b)["transport_socket"] = json!({"name": "envoy.transport_sockets.raw_buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}});
    assert!(only(&run(&b)).2.contains("speaks plaintext"));
}

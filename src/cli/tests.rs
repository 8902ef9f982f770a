use super::*;
use std::collections::HashMap;

const CONFIG: &str = r#"{
        "credentials": {"source": "env"},
        "origins": [{
            "name": "media", "match": {"prefix": "/media/"},
            "endpoint": "http://127.0.0.1:8333", "bucket": "media", "region": "us-east-1",
            "allow_query": ["versionId"]
        }, {
            "name": "cdn", "match": {"prefix": "/cdn/", "host": "cdn.example.com"},
            "endpoint": "https://s3.eu-west-1.amazonaws.com", "bucket": "my-cdn",
            "addressing": "virtual", "region": "eu-west-1", "key_prefix": "videos/",
            "strip_prefix": "/", "expires_in": 600, "on_error": "passthrough",
            "other_methods": "passthrough"
        }]
    }"#;
const AT: u64 = 1_700_000_000;
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "session-token/with+chars=";

/// Runs the command on in-memory files and environment, at `AT`.
fn run_with(files: &[(&str, &str)], env: &[(&str, &str)], args: &[&str]) -> Output {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    run_os_with(files, env, &args)
}

/// `run_with` for arguments that need not be UTF-8.
fn run_os_with(files: &[(&str, &str)], env: &[(&str, &str)], args: &[OsString]) -> Output {
    let files: Vec<(&str, String)> = files.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let read = crate::testing::file_reader(&files);
    let env = |k: &str| env.get(k).cloned();
    let io = Io {
        read: &read,
        env: &env,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(AT),
    };
    run(args, &io)
}

const CREDS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("AWS_SESSION_TOKEN", TOKEN),
];

fn sign_cmd(args: &[&str]) -> Output {
    let mut all = vec!["sign", "c.json"];
    all.extend_from_slice(args);
    run_with(&[("c.json", CONFIG)], &CREDS, &all)
}

fn no_secret(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[test]
fn check_prints_ok_origins_and_the_startup_lines() {
    let out = run_with(&[("c.json", CONFIG)], &CREDS, &["check", "c.json"]);
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert_eq!(out.stderr, "");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "OK c.json");
    assert_eq!(
            lines[1],
            "  origin media: /media/ (any host) -> http://127.0.0.1:8333/media/<key> (path addressing), \
             region us-east-1, service s3; expires_in 3600 s, refresh_before 720 s, min_remaining 144 s, \
             aligned to 2880 s windows; on_error deny, other_methods deny, allow_query [\"versionId\"]"
        );
    assert_eq!(
            lines[2],
            "  origin cdn: /cdn/ (strip /) (host cdn.example.com) -> https://my-cdn.s3.eu-west-1.amazonaws.com/videos/<key> \
             (virtual addressing), region eu-west-1, service s3; expires_in 600 s, refresh_before 120 s, \
             min_remaining 24 s, aligned to 480 s windows; on_error passthrough, other_methods passthrough, allow_query []"
        );
    assert_eq!(
        &lines[3..],
        [
            "the filter logs at startup:",
            "  [info] envoy-presign: signing with access key AKIDEXAMPLE from the VM environment",
            "  [info] envoy-presign: configured 2 origin(s), cache on (10000 slots)",
        ]
    );
    no_secret(&out);
    assert!(!out.stdout.contains(TOKEN));
}

#[test]
fn check_without_env_credentials_is_valid_with_the_filters_warning() {
    let out = run_with(&[("c.json", CONFIG)], &[], &["check", "c.json"]);
    assert_eq!(out.code, EXIT_OK);
    assert!(out.stdout.contains(
            "  [warn] envoy-presign: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set in the Wasm VM environment)"
        ), "{}", out.stdout);
}

#[test]
fn check_summary_shows_host_port_unaligned_and_millisecond_timings() {
    let doc = r#"{"cache": {"align": false}, "origins": [{"name": "m",
            "match": {"prefix": "/m/", "host": "Cdn.Example.com:8443"},
            "endpoint": "http://s3.local:9000", "bucket": "media", "region": "us-east-1",
            "expires_in": 5}]}"#;
    let out = run_with(&[("c.json", doc)], &[], &["check", "c.json"]);
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout.contains(
            "(host cdn.example.com:8443) -> http://s3.local:9000/media/<key> (path addressing)"
        ) && out
            .stdout
            .contains("expires_in 5 s, refresh_before 1 s, min_remaining 0.200 s, not aligned;"),
        "{}",
        out.stdout
    );
}

/// An Envoy bootstrap embedding CONFIG's first origin (plain http), as YAML.
fn envoy_yaml(route_extra: &str, access_log: &str) -> String {
    let config = serde_json::json!({"credentials": {"source": "env"}, "origins": [{
            "name": "media", "match": {"prefix": "/media/"}, "endpoint": "http://127.0.0.1:8333",
            "bucket": "media", "region": "us-east-1"}]});
    format!(
            "static_resources:\n  listeners:\n  - name: l\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n        typed_config:\n          access_log: {access_log}\n          route_config:\n            virtual_hosts:\n            - name: v\n              routes:\n              - name: media\n                match: {{prefix: /, headers: [{{name: x-envoy-presign-origin, string_match: {{exact: media}}}}]}}\n                route: {{cluster: media, idle_timeout: 30s{route_extra}}}\n                typed_per_filter_config: {{envoy.filters.http.custom_response: {{}}}}\n          http_filters:\n          - name: envoy.filters.http.custom_response\n          - name: envoy.filters.http.wasm\n            typed_config:\n              config:\n                failure_policy: FAIL_RELOAD\n                configuration: {{value: {}}}\n  clusters:\n  - name: media\n",
            serde_json::to_string(&config.to_string()).unwrap_or_default()
        )
}

#[test]
fn check_envoy_exits_by_the_worst_finding() {
    let check = |yaml: &str| run_with(&[("e.yaml", yaml)], &CREDS, &["check", "--envoy", "e.yaml"]);
    let good = envoy_yaml(", timeout: 0s", "[]");
    let out = check(&good);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            EXIT_OK,
            "e.yaml: envoy-presign origins media\nOK: 0 error(s), 0 warning(s)\n",
            ""
        )
    );
    // (file, exit status, the finding line's start, the verdict line)
    let cases = [
        (
            good.replace("FAIL_RELOAD", "FAIL_OPEN"),
            EXIT_OK,
            "warning static_resources.listeners[l]",
            "OK: 0 error(s), 1 warning(s)",
        ),
        (
            envoy_yaml(
                "",
                "[{name: f, typed_config: {log_format: '%REQ(:PATH)%'}}]",
            ),
            EXIT_REFUSED,
            "error   static_resources.listeners[l]",
            "FAILED: 2 error(s), 0 warning(s)",
        ),
    ];
    for (yaml, code, finding, verdict) in cases {
        let out = check(&yaml);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(out.code, code, "{}", out.stdout);
        assert!(
            lines.iter().any(|l| l.starts_with(finding)),
            "{}",
            out.stdout
        );
        assert_eq!(lines.last(), Some(&verdict));
    }
    let out = run_with(&[], &CREDS, &["check", "--envoy", "e.yaml"]);
    assert_eq!(out.code, EXIT_USAGE);
    assert!(out
        .stderr
        .starts_with("envoy-presign-config: cannot read e.yaml"));
}

#[test]
fn check_refuses_with_the_filters_error_line() {
    let bad = CONFIG.replace("\"expires_in\": 600", "\"expires_in\": 1");
    let out = run_with(&[("c.json", &bad)], &CREDS, &["check", "c.json"]);
    assert_eq!(out.code, EXIT_REFUSED);
    assert_eq!(out.stdout, "");
    assert_eq!(
            out.stderr,
            "envoy-presign: invalid configuration: origins[1].expires_in: must be between 2 and 604800 seconds (SigV4 limit), got 1\n"
        );
    let out = run_with(
        &[("c.json", "{\"origins\": []}")],
        &[],
        &["check", "c.json"],
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            EXIT_REFUSED,
            "envoy-presign: invalid configuration: origins: at least one origin is required\n"
        )
    );
}

#[test]
fn usage_errors_exit_2_with_the_usage() {
    for args in [
        &[][..],
        &["check"],
        &["check", "a", "b"],
        &["frobnicate"],
        &["sign", "c.json", "GET"],
        &["sign", "c.json", "GET", "/media/a", "--at"],
        &["sign", "c.json", "GET", "/media/a", "--at", "soon"],
        &["sign", "c.json", "GET", "/media/a", "--host"],
        &["sign", "c.json", "GET", "/media/a", "--verbose"],
        &["check", "missing.json"],
    ] {
        let out = run_with(&[("c.json", CONFIG)], &[], args);
        assert_eq!(out.code, EXIT_USAGE, "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(out.stderr.starts_with("envoy-presign-config: "), "{args:?}");
        assert!(out.stderr.ends_with(USAGE), "{args:?}");
    }
    // Each names its problem on the first line.
    for (args, problem) in [
        (&[][..], "no command"),
        (&["check", "a", "b"], "wrong arguments for check"),
        (&["sign"], "sign takes <config.json> <METHOD> <path>"),
        (&["frobnicate", "x"], "unknown command \"frobnicate\""),
        (
            &["sign", "c.json", "GET", "/a", "--verbose"],
            "unknown option --verbose",
        ),
        (
            &["sign", "c.json", "GET", "/a", "--at", "1.5"],
            "--at: not a whole number of Unix seconds: \"1.5\"",
        ),
    ] {
        let out = run_with(&[], &[], args);
        assert_eq!(
            out.stderr.lines().next(),
            Some(format!("envoy-presign-config: {problem}").as_str()),
            "{args:?}"
        );
    }
    let out = run_with(&[], &[], &["check", "missing.json"]);
    assert!(out
        .stderr
        .starts_with("envoy-presign-config: cannot read missing.json: "));
    let out = run_with(&[], &[], &["--help"]);
    assert_eq!((out.code, out.stdout.as_str()), (EXIT_OK, USAGE));
}

/// An argument that is not UTF-8 (`std::env::args` would panic on it) is
/// a usage error naming its position (from 1, after the program name) and
/// showing it lossily, escaped; nothing is read or signed, and the
/// configuration's path is no exception.
#[cfg(unix)]
#[test]
fn a_non_utf8_argument_is_a_usage_error_naming_it() {
    use std::os::unix::ffi::OsStringExt as _;
    let bad = |b: &[u8]| OsString::from_vec(b.to_vec());
    let ok = |s: &str| OsString::from(s);
    for (args, problem) in [
        (vec![bad(b"\xff")], "argument 1 is not UTF-8: \"\u{fffd}\""),
        (
            vec![ok("check"), bad(b"conf\xe9.json")],
            "argument 2 is not UTF-8: \"conf\u{fffd}.json\"",
        ),
        (
            vec![ok("sign"), ok("c.json"), ok("GET"), bad(b"/media/\x80a")],
            "argument 4 is not UTF-8: \"/media/\u{fffd}a\"",
        ),
        (
            vec![
                ok("sign"),
                ok("c.json"),
                ok("GET"),
                ok("/media/a"),
                ok("--host"),
                bad(b"\x1b[31mh\xc3"),
            ],
            "argument 6 is not UTF-8: \"\\u{1b}[31mh\u{fffd}\"",
        ),
        // The first bad one is named; --help does not get past it.
        (
            vec![ok("--help"), bad(b"\xfe"), bad(b"\xff")],
            "argument 2 is not UTF-8: \"\u{fffd}\"",
        ),
    ] {
        let out = run_os_with(&[("c.json", CONFIG)], &CREDS, &args);
        assert_eq!(out.code, EXIT_USAGE, "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        let first = out.stderr.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!(
                "envoy-presign-config: {problem} (every argument must be UTF-8, \
                     the configuration's path included)"
            ),
            "{args:?}"
        );
        assert!(out.stderr.ends_with(USAGE), "{args:?}");
    }
    // The usage text says so.
    assert!(USAGE.contains("must be UTF-8"), "{USAGE}");
}

#[test]
fn sign_prints_the_presigned_url_of_the_window() {
    let out = sign_cmd(&[
        "GET",
        "/media/my%20file(1).mp4?versionId=v1&junk=1&X-Amz-Signature=x",
    ]);
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    // Aligned: X-Amz-Date is the start of the 2880 s window holding AT.
    let start = AT - AT % 2880;
    assert_eq!(start, 1_699_997_760);
    let url = out.stdout.trim_end();
    assert!(
            url.starts_with("http://127.0.0.1:8333/media/my%20file%281%29.mp4?versionId=v1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20231114T213600Z&X-Amz-Expires=3600&"),
            "{url}"
        );
    assert!(url.contains("&X-Amz-Security-Token=session-token%2Fwith%2Bchars%3D&"));
    assert!(out.stderr.contains("bearer credential"));
    no_secret(&out);
    // The same request anywhere in the window gives the same URL.
    let again = sign_cmd(&[
        "GET",
        "/media/my file%281%29.mp4?versionId=v1",
        "--at",
        &(start + 2879).to_string(),
    ]);
    assert_eq!(again.stdout, out.stdout);
    let next = sign_cmd(&[
        "GET",
        "/media/my file(1).mp4?versionId=v1",
        "--at",
        &(start + 2880).to_string(),
    ]);
    assert_ne!(next.stdout, out.stdout);
    assert!(
        next.stdout.contains("X-Amz-Date=20231114T222400Z"),
        "{}",
        next.stdout
    );
}

/// A redirect origin prints the `Location` its 307 would carry: the URL on
/// the public endpoint, signed for it.
#[test]
fn sign_prints_the_location_of_a_redirect_origin() {
    let config = r#"{
            "credentials": {"source": "env"},
            "origins": [{
                "name": "dl", "match": {"prefix": "/dl/"},
                "endpoint": "http://seaweedfs:8333", "bucket": "media", "region": "us-east-1",
                "delivery": "redirect", "public_endpoint": "https://media.example.com"
            }]
        }"#;
    let out = run_with(
        &[("c.json", config)],
        &CREDS,
        &["sign", "c.json", "GET", "/dl/a b.mp4"],
    );
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout
            .starts_with("https://media.example.com/media/a%20b.mp4?X-Amz-Algorithm="),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("307") && out.stderr.contains("bearer credential"));
    no_secret(&out);
    // `check` describes the URL as signed: the public endpoint's scheme and host.
    let out = run_with(&[("c.json", config)], &CREDS, &["check", "c.json"]);
    assert!(
        out.stdout
            .contains("307 to https://media.example.com/media/<key> (path addressing)")
            && out.stdout.contains(
                "delivery redirect, cors_origins [], proxied_suffixes [\".m3u8\", \".mpd\"]"
            ),
        "{}",
        out.stdout
    );
    // A manifest of the redirect origin is forwarded, signed for the endpoint.
    let out = run_with(
        &[("c.json", config)],
        &CREDS,
        &["sign", "c.json", "GET", "/dl/v/index.m3u8"],
    );
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout
            .starts_with("http://seaweedfs:8333/media/v/index.m3u8?X-Amz-Algorithm="),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("presigned") && !out.stderr.contains("307"));
}

/// `sign` refuses a response override as the filter does (400 and its
/// category); `check` lists the content types an origin signs.
#[test]
fn sign_and_check_follow_the_override_rules() {
    let config = r#"{
            "credentials": {"source": "env"},
            "origins": [{
                "name": "media", "match": {"prefix": "/media/"},
                "endpoint": "http://seaweedfs:8333", "bucket": "media", "region": "us-east-1",
                "allow_query": ["response-content-type", "response-content-disposition"],
                "response_content_types": ["video/mp4"]
            }]
        }"#;
    let sign = |path: &str| {
        run_with(
            &[("c.json", config)],
            &CREDS,
            &["sign", "c.json", "GET", path],
        )
    };
    for (path, reply) in [
            (
                "/media/a?response-content-type=text%2Fhtml",
                "400 invalid_content_type (origin media, category invalid_content_type)\n",
            ),
            (
                "/media/a?response-content-disposition=x",
                "400 invalid_content_disposition (origin media, category invalid_content_disposition)\n",
            ),
            (
                "/media/a?response-expires=1",
                "400 override_not_allowed (origin media, category override_not_allowed)\n",
            ),
        ] {
            let out = sign(path);
            assert_eq!((out.code, out.stdout.as_str()), (EXIT_REFUSED, reply), "{path}");
        }
    let out = sign("/media/a?response-content-type=VIDEO%2Fmp4");
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout.contains("response-content-type=VIDEO%2Fmp4"),
        "{}",
        out.stdout
    );
    let out = run_with(&[("c.json", config)], &CREDS, &["check", "c.json"]);
    assert!(
        out.stdout
            .contains("response_content_types [\"video/mp4\"]"),
        "{}",
        out.stdout
    );
}

#[test]
fn sign_uses_host_strip_and_key_prefix_and_virtual_addressing() {
    let out = sign_cmd(&["HEAD", "/cdn/a/b.txt", "--host", "CDN.example.com."]);
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout.starts_with(
            "https://my-cdn.s3.eu-west-1.amazonaws.com/videos/cdn/a/b.txt?X-Amz-Algorithm="
        ),
        "{}",
        out.stdout
    );
    // Without the host, the origin with match.host does not match.
    let out = sign_cmd(&["HEAD", "/cdn/a/b.txt"]);
    assert_eq!(out.code, EXIT_REFUSED);
    assert_eq!(
            out.stdout,
            "no origin matches: the filter leaves the request alone (the shipped routes answer 404 not_found) (origins with match.host need --host)\n"
        );
    let out = sign_cmd(&["GET", "/other/x", "--host", "cdn.example.com"]);
    assert_eq!(
            out.stdout,
            "no origin matches: the filter leaves the request alone (the shipped routes answer 404 not_found)\n"
        );
}

#[test]
fn sign_prints_the_local_reply_with_its_category() {
    for (method, path, reply) in [
        (
            "GET",
            "/media/a/../b",
            "400 invalid_object_key (origin media, category invalid_object_key)\n",
        ),
        (
            "GET",
            "/media/bad%zz",
            "400 invalid_path_encoding (origin media, category invalid_path_encoding)\n",
        ),
        (
            "PUT",
            "/media/a",
            "405 method_not_allowed (origin media, category method_not_allowed)\n",
        ),
    ] {
        let out = sign_cmd(&[method, path]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (EXIT_REFUSED, reply),
            "{path}"
        );
    }
    // No credentials, on_error deny: the filter's 503 and its log category.
    let out = run_with(
        &[("c.json", CONFIG)],
        &[],
        &["sign", "c.json", "GET", "/media/a"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            EXIT_REFUSED,
            "503 signing_unavailable (origin media, category no_credentials)\n"
        )
    );
}

/// With a rotating source, `sign` signs with the process's AWS_* variables
/// as if the filter had just fetched them; without them it prints the
/// filter's reply before its first fetch.
#[test]
fn sign_with_rotating_credentials_uses_the_environment_or_prints_the_503() {
    let rotating = CONFIG.replacen(
        r#""credentials": {"source": "env"}"#,
        r#""credentials": {"source": "imds"}"#,
        1,
    );
    assert_ne!(rotating, CONFIG, "the test's configuration changed");
    let args = ["sign", "c.json", "GET", "/media/a", "--at", "1700000000"];
    let out = run_with(&[("c.json", &rotating)], &[], &args);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            EXIT_REFUSED,
            "503 credentials_unavailable (origin media, category no_credentials)\n"
        )
    );
    let out = run_with(&[("c.json", &rotating)], &CREDS, &args);
    assert_eq!(out.code, EXIT_OK, "{out:?}");
    assert!(
        out.stdout.contains("X-Amz-Credential=AKIDEXAMPLE"),
        "{out:?}"
    );
    no_secret(&out);
}

#[test]
fn sign_shows_unsigned_forwards() {
    // on_error passthrough without credentials: the unsigned object URL.
    let out = run_with(
        &[("c.json", CONFIG)],
        &[],
        &[
            "sign",
            "c.json",
            "GET",
            "/cdn/x y",
            "--host",
            "cdn.example.com",
        ],
    );
    assert_eq!(out.code, EXIT_REFUSED);
    assert_eq!(
        out.stdout,
        "https://my-cdn.s3.eu-west-1.amazonaws.com/videos/cdn/x%20y\n"
    );
    assert_eq!(
        out.stderr,
        "origin cdn: forwarded UNSIGNED (on_error: passthrough), category no_credentials\n"
    );
    // other_methods passthrough: the client's path without its X-Amz-* query.
    let out = sign_cmd(&[
        "PUT",
        "/cdn/up?X-Amz-Signature=abc&part=1",
        "--host",
        "cdn.example.com",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            EXIT_REFUSED,
            "forwarded unsigned to origin cdn (other_methods: passthrough): PUT /cdn/up?part=1\n"
        )
    );
    let out = sign_cmd(&["DELETE", "/cdn/up", "--host", "cdn.example.com"]);
    assert!(out.stdout.ends_with(": DELETE /cdn/up\n"), "{}", out.stdout);
}

#[test]
fn the_empty_store_forgets_every_write() {
    assert_eq!(EmptyStore.set("k", b"v", None), Ok(()));
    assert_eq!(EmptyStore.get("k"), Ok((None, None)));
}

/// Percent-encodes every byte but unreserved ones and `/` (what the filter
/// decodes back into the key exactly once).
fn encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `sign`, given each boto3 vector as a configuration file, a request path
/// and an environment, prints the vector's URL: the command and the
/// filter's request path agree with boto3. A vector whose lifetime a
/// configuration refuses (1 s) is checked to be refused instead.
#[test]
fn sign_prints_boto3s_urls() {
    let vectors = crate::testing::boto3_vectors();
    let mut compared = 0;
    for v in &vectors {
        let config = serde_json::json!({
            "credentials": {"source": "env"},
            "cache": {"align": false},
            "origins": [{
                "name": "vector", "match": {"prefix": "/"}, "endpoint": v.endpoint,
                "bucket": v.bucket, "addressing": v.addressing, "region": v.region,
                "service": v.service, "expires_in": v.expires_in,
                "allow_query": v.query.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            }],
        })
        .to_string();
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", v.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", v.secret_access_key.as_str()),
        ];
        if let Some(t) = &v.session_token {
            env.push(("AWS_SESSION_TOKEN", t));
        }
        let query: Vec<String> = v
            .query
            .iter()
            .map(|(k, val)| format!("{}={}", encode(k, false), encode(val, false)))
            .collect();
        let mut path = format!("/{}", encode(&v.key, true));
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let at = v.time.to_string();
        let out = run_with(
            &[("v.json", &config)],
            &env,
            &["sign", "v.json", &v.method, &path, "--at", &at],
        );
        if v.expires_in < 5 {
            // Below the smallest lifetime a configuration accepts (5 s with
            // the default refresh_before): refused naming the field.
            assert_eq!(out.code, EXIT_REFUSED, "vector {}", v.name);
            assert!(
                out.stderr.contains("origins[0].expires_in"),
                "{}",
                out.stderr
            );
            continue;
        }
        assert_eq!(out.code, EXIT_OK, "vector {}: {out:?}", v.name);
        assert_eq!(out.stdout, format!("{}\n", v.url), "vector {}", v.name);
        compared += 1;
    }
    assert!(
        compared >= 40,
        "only {compared} of {} vectors compared",
        vectors.len()
    );
}

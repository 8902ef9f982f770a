use super::*;
use crate::config::credentials::ContainerSource;
use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

/// 2023-11-14T22:13:20Z.
const NOW_SECS: u64 = 1_700_000_000;
/// 2023-11-15T00:00:00Z, when the credentials handed out expire.
const EXPIRES_SECS: u64 = 1_700_006_400;
const ROLE: &str = "arn:aws:iam::123456789012:role/presign";

fn now() -> Now {
    Now::at(UNIX_EPOCH + Duration::from_secs(NOW_SECS))
}

fn endpoint(cluster: &str, authority: &str, timeout_ms: u64) -> Endpoint {
    Endpoint {
        cluster: cluster.into(),
        authority: authority.into(),
        timeout_ms,
    }
}

fn imds() -> Source {
    Source::Imds(ImdsSource {
        endpoint: endpoint("presign_imds", "169.254.169.254", 1500),
        token_ttl_secs: 21_600,
    })
}

fn container(authorization: Option<&str>) -> Source {
    Source::Container(ContainerSource {
        endpoint: endpoint("presign_container", "169.254.170.23", 700),
        path: "/v1/credentials".into(),
        authorization: authorization.map(str::to_string),
    })
}

fn sts(external_id: Option<&str>) -> StsSource {
    StsSource {
        endpoint: endpoint("presign_sts", "sts.eu-west-1.amazonaws.com", 900),
        region: "eu-west-1".into(),
        role_arn: ROLE.into(),
        session_name: "envoy-presign".into(),
        external_id: external_id.map(str::to_string),
        duration_secs: 3600,
    }
}

fn assume_role(base: BaseCredentials) -> Source {
    Source::AssumeRole(sts(Some("ext/42 x")), base)
}

fn ok(body: &str) -> Reply<'_> {
    Reply {
        status: 200,
        body: body.as_bytes(),
    }
}

fn call(step: Step) -> Call {
    match step {
        Step::Call(c) => c,
        other => panic!("expected a call, got {other:?}"),
    }
}

fn done(step: Step) -> Credentials {
    match step {
        Step::Done(c) => c,
        other => panic!("expected credentials, got {other:?}"),
    }
}

fn failed(step: Step) -> Failure {
    match step {
        Step::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn headers(c: &Call) -> Vec<(&str, &str)> {
    c.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn imds_json(id: &str, secret: &str, token: &str) -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{id}","SecretAccessKey":"{secret}","Token":"{token}","Expiration":"2023-11-15T00:00:00Z"}}"#
    )
}

fn sts_json(action: &str) -> String {
    format!(
        r#"{{"{action}Response":{{"{action}Result":{{"Credentials":{{"AccessKeyId":"ASIAROLE","SecretAccessKey":"role-secret","SessionToken":"role-token","Expiration":{EXPIRES_SECS}}}}}}}}}"#
    )
}

/// Drives IMDS through its token and role name to the credentials call.
fn imds_to_credentials_call(f: &mut Fetch) -> Call {
    f.begin(now());
    f.on_reply(ok("tok-1\n"), now());
    call(f.on_reply(ok("presign-role\n"), now()))
}

/// The design note's IMDSv2 protocol (docs/design/rotating-credentials.md
/// §2): PUT /latest/api/token with the TTL header, then the role name and
/// its credentials, both carrying the token; IMDSv2 only.
#[test]
fn imds_is_three_calls_carrying_the_token() {
    let mut f = Fetch::new(&imds());
    assert_eq!(f.label(), "imds");
    let put = call(f.begin(now()));
    assert_eq!(
        (put.cluster.as_str(), put.timeout_ms),
        ("presign_imds", 1500)
    );
    assert_eq!(
        headers(&put),
        [
            (":method", "PUT"),
            (":path", "/latest/api/token"),
            (":authority", "169.254.169.254"),
            ("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
        ]
    );
    let role = call(f.on_reply(ok(" tok-1\n"), now()));
    assert_eq!(
        headers(&role),
        [
            (":method", "GET"),
            (":path", "/latest/meta-data/iam/security-credentials/"),
            (":authority", "169.254.169.254"),
            ("x-aws-ec2-metadata-token", "tok-1"),
        ]
    );
    assert_eq!(
        (role.cluster.as_str(), role.timeout_ms),
        ("presign_imds", 1500)
    );
    let creds = call(f.on_reply(ok("presign-role\nother\n"), now()));
    assert_eq!(
        headers(&creds),
        [
            (":method", "GET"),
            (
                ":path",
                "/latest/meta-data/iam/security-credentials/presign-role"
            ),
            (":authority", "169.254.169.254"),
            ("x-aws-ec2-metadata-token", "tok-1"),
        ]
    );
    let c = done(f.on_reply(
        ok(&imds_json("ASIAIMDS", "imds-secret", "imds-token")),
        now(),
    ));
    assert_eq!(c.access_key_id(), "ASIAIMDS");
    assert_eq!(c.secret_access_key(), "imds-secret");
    assert_eq!(c.session_token(), Some("imds-token"));
    assert_eq!(c.expires_at_ms(), Some(EXPIRES_SECS * 1000));
    // Nothing is outstanding any more.
    assert_eq!(failed(f.on_reply(ok("x"), now())), Failure::Abandoned);
}

/// The IMDSv2 token goes into a header: it must be 1 to 4096 visible
/// ASCII characters, else the answer is malformed.
#[test]
fn an_unusable_imds_token_is_a_parse_failure() {
    let long = "t".repeat(4096);
    let mut f = Fetch::new(&imds());
    f.begin(now());
    let c = call(f.on_reply(ok(&long), now()));
    assert_eq!(c.get(IMDS_TOKEN_HEADER), Some(long.as_str()));
    for bad in [
        String::new(),
        " \n".into(),
        "t".repeat(4097),
        "a b".into(),
        "tok\u{e9}".into(),
    ] {
        let mut f = Fetch::new(&imds());
        f.begin(now());
        assert_eq!(
            failed(f.on_reply(ok(&bad), now())),
            Failure::Parse(ParseError::Malformed),
            "{bad:?}"
        );
    }
    let mut f = Fetch::new(&imds());
    f.begin(now());
    let r = Reply {
        status: 200,
        body: &[0xff, 0xfe],
    };
    assert_eq!(
        failed(f.on_reply(r, now())),
        Failure::Parse(ParseError::Malformed)
    );
    // A role name that cannot go into the path.
    let mut f = Fetch::new(&imds());
    f.begin(now());
    f.on_reply(ok("tok"), now());
    assert_eq!(
        failed(f.on_reply(ok("../admin"), now())),
        Failure::Parse(ParseError::BadRoleName)
    );
}

/// docs/credentials.md, container source: one GET of the URI's path, with
/// `Authorization` from AWS_CONTAINER_AUTHORIZATION_TOKEN when set (else
/// the cluster adds it).
#[test]
fn container_is_one_get_with_the_token() {
    let mut f = Fetch::new(&container(Some("Bearer pod")));
    assert_eq!(f.label(), "container");
    let c = call(f.begin(now()));
    assert_eq!(
        (c.cluster.as_str(), c.timeout_ms),
        ("presign_container", 700)
    );
    assert_eq!(
        headers(&c),
        [
            (":method", "GET"),
            (":path", "/v1/credentials"),
            (":authority", "169.254.170.23"),
            ("accept", "application/json"),
            ("authorization", "Bearer pod"),
        ]
    );
    let body = r#"{"AccessKeyId":"ASIACONT","SecretAccessKey":"cs","Token":"ct","Expiration":"2023-11-15T00:00:00Z"}"#;
    let creds = done(f.on_reply(ok(body), now()));
    assert_eq!(
        (creds.access_key_id(), creds.expires_at_ms()),
        ("ASIACONT", Some(EXPIRES_SECS * 1000))
    );
    let c = call(Fetch::new(&container(None)).begin(now()));
    assert_eq!(c.get("authorization"), None);
    assert_eq!(c.headers.len(), 4);
}

/// Percent-encodes as SigV4's canonical query does (unreserved kept).
fn sigv4_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Authorization header SigV4 prescribes for `call` (a GET of `/`
/// with its query, signing host, x-amz-date and the session token if
/// any, over an empty payload), computed here from the specification
/// with only aws-sigv4's key derivation and HMAC.
fn expected_authorization(call: &Call, id: &str, secret: &str, token: Option<&str>) -> String {
    let amz_date = call.get("x-amz-date").unwrap();
    let query = call.get(":path").unwrap().strip_prefix("/?").unwrap();
    let host = call.get(":authority").unwrap();
    let mut canonical_headers = format!("host:{host}\nx-amz-date:{amz_date}\n");
    let mut signed = String::from("host;x-amz-date");
    if let Some(t) = token {
        canonical_headers.push_str(&format!("x-amz-security-token:{t}\n"));
        signed.push_str(";x-amz-security-token");
    }
    let empty_payload = hex_sha256(b"");
    let canonical_request =
        format!("GET\n/\n{query}\n{canonical_headers}\n{signed}\n{empty_payload}");
    let scope = format!("{}/eu-west-1/sts/aws4_request", &amz_date[..8]);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let key = generate_signing_key(secret, now().time, "eu-west-1", "sts");
    let signature = calculate_signature(key, string_to_sign.as_bytes());
    format!(
        "AWS4-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

/// The STS query for `action`, built by hand in canonical (sorted) order.
fn sts_query(action: &str, external_id: Option<&str>) -> String {
    let mut q = format!("/?Action={action}&DurationSeconds=3600");
    if let Some(x) = external_id {
        q.push_str(&format!("&ExternalId={}", sigv4_encode(x)));
    }
    q.push_str(&format!(
        "&RoleArn={}&RoleSessionName=envoy-presign&Version=2011-06-15",
        sigv4_encode(ROLE)
    ));
    q
}

/// docs/credentials.md, assume_role: a GET of `/` with the parameters in the query
/// (canonical order, ExternalId included), `accept: application/json`,
/// signed with SigV4 (service sts, the endpoint's region) by static base
/// keys; the signature is the one the specification gives.
#[test]
fn assume_role_is_signed_by_static_keys() {
    let base = Credentials::new("AKIDBASE".into(), "base-secret".into(), None);
    let mut f = Fetch::new(&assume_role(BaseCredentials::Static(base)));
    assert_eq!(f.label(), "assume_role");
    let c = call(f.begin(now()));
    let path = sts_query("AssumeRole", Some("ext/42 x"));
    assert!(path.contains("&ExternalId=ext%2F42%20x&"), "{path}");
    assert_eq!((c.cluster.as_str(), c.timeout_ms), ("presign_sts", 900));
    assert_eq!(
        headers(&c)[..4],
        [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "sts.eu-west-1.amazonaws.com"),
            ("accept", "application/json"),
        ]
    );
    assert_eq!(c.get("x-amz-date"), Some("20231114T221320Z"));
    assert_eq!(c.get("x-amz-security-token"), None);
    assert_eq!(
        c.get("authorization"),
        Some(expected_authorization(&c, "AKIDBASE", "base-secret", None).as_str())
    );
    let creds = done(f.on_reply(ok(&sts_json("AssumeRole")), now()));
    assert_eq!(
        (
            creds.access_key_id(),
            creds.session_token(),
            creds.expires_at_ms()
        ),
        ("ASIAROLE", Some("role-token"), Some(EXPIRES_SECS * 1000))
    );
}

/// Temporary base keys sign with their session token: the
/// `x-amz-security-token` header is sent and signed.
#[test]
fn assume_role_with_a_temporary_base_signs_the_token() {
    let base = Credentials::temporary(
        "ASIABASE".into(),
        "tmp-secret".into(),
        Some("tmp/token+=".into()),
        EXPIRES_SECS * 1000,
    );
    let mut f = Fetch::new(&assume_role(BaseCredentials::Static(base)));
    let c = call(f.begin(now()));
    assert_eq!(c.get("x-amz-security-token"), Some("tmp/token+="));
    assert_eq!(
        c.get("authorization"),
        Some(expected_authorization(&c, "ASIABASE", "tmp-secret", Some("tmp/token+=")).as_str())
    );
    // Another secret gives another signature: the check is not vacuous.
    assert_ne!(
        c.get("authorization"),
        Some(expected_authorization(&c, "ASIABASE", "other", Some("tmp/token+=")).as_str())
    );
}

/// docs/credentials.md, assume_role with `base: imds`: the IMDS credentials are
/// fetched first (its three calls), then the STS call is signed with
/// them; a failing base fails the refresh.
#[test]
fn assume_role_with_a_fetched_base() {
    let source = assume_role(BaseCredentials::Fetched(Box::new(imds())));
    let mut f = Fetch::new(&source);
    assert_eq!(f.label(), "assume_role");
    let put = call(f.begin(now()));
    assert_eq!(put.get(":path"), Some("/latest/api/token"));
    let role = call(f.on_reply(ok("tok-1"), now()));
    assert_eq!(role.get(IMDS_TOKEN_HEADER), Some("tok-1"));
    call(f.on_reply(ok("presign-role"), now()));
    let c = call(f.on_reply(
        ok(&imds_json("ASIAIMDS", "imds-secret", "imds-token")),
        now(),
    ));
    assert_eq!(c.cluster, "presign_sts");
    assert_eq!(
        c.get(":path"),
        Some(sts_query("AssumeRole", Some("ext/42 x")).as_str())
    );
    assert_eq!(c.get("x-amz-security-token"), Some("imds-token"));
    assert_eq!(
        c.get("authorization"),
        Some(expected_authorization(&c, "ASIAIMDS", "imds-secret", Some("imds-token")).as_str())
    );
    let creds = done(f.on_reply(ok(&sts_json("AssumeRole")), now()));
    assert_eq!(creds.access_key_id(), "ASIAROLE");
    // The base failing is the refresh failing.
    let mut f = Fetch::new(&source);
    f.begin(now());
    let r = Reply {
        status: 401,
        body: b"",
    };
    assert_eq!(failed(f.on_reply(r, now())), Failure::Status4xx);
    let mut f = Fetch::new(&source);
    imds_to_credentials_call(&mut f);
    assert_eq!(failed(f.on_reply(ok("{}"), now())).category(), "parse");
}

/// docs/credentials.md, web_identity: an unsigned GET with the parameters in
/// canonical order, never an ExternalId; the cluster's internal listener
/// appends the token.
#[test]
fn web_identity_is_an_unsigned_get() {
    let mut f = Fetch::new(&Source::WebIdentity(sts(Some("ignored"))));
    assert_eq!(f.label(), "web_identity");
    let c = call(f.begin(now()));
    let path = sts_query("AssumeRoleWithWebIdentity", None);
    assert_eq!(
        headers(&c),
        [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "sts.eu-west-1.amazonaws.com"),
            ("accept", "application/json"),
        ]
    );
    let creds = done(f.on_reply(ok(&sts_json("AssumeRoleWithWebIdentity")), now()));
    assert_eq!(creds.access_key_id(), "ASIAROLE");
    // The other action's document is not this one's answer.
    let mut f = Fetch::new(&Source::WebIdentity(sts(None)));
    f.begin(now());
    assert!(matches!(
        failed(f.on_reply(ok(&sts_json("AssumeRole")), now())),
        Failure::Parse(_)
    ));
}

/// docs/credentials.md, refresh metrics: a failure's category comes from the
/// status (no answer: transport; 504: timeout; 4xx; any other non-2xx:
/// http_5xx), at any step of any source.
#[test]
fn failures_are_classified_by_status() {
    let cases = [
        (0, Failure::Transport),
        (504, Failure::Timeout),
        (400, Failure::Status4xx),
        (403, Failure::Status4xx),
        (499, Failure::Status4xx),
        (500, Failure::Status5xx),
        (503, Failure::Status5xx),
        (300, Failure::Status5xx),
        (199, Failure::Status5xx),
    ];
    let sources = [
        imds(),
        container(None),
        Source::WebIdentity(sts(None)),
        assume_role(BaseCredentials::Static(Credentials::new(
            "A".into(),
            "s".into(),
            None,
        ))),
    ];
    for (status, want) in cases {
        for source in &sources {
            let mut f = Fetch::new(source);
            f.begin(now());
            let r = Reply {
                status,
                body: b"{}",
            };
            assert_eq!(failed(f.on_reply(r, now())), want, "{status} {source:?}");
        }
        // The IMDS's later steps too.
        let mut f = Fetch::new(&imds());
        imds_to_credentials_call(&mut f);
        let r = Reply { status, body: b"" };
        assert_eq!(failed(f.on_reply(r, now())), want, "{status}, third call");
    }
    // Any 2xx is an answer.
    let mut f = Fetch::new(&container(None));
    f.begin(now());
    let body = r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2023-11-15T00:00:00Z"}"#;
    let r = Reply {
        status: 299,
        body: body.as_bytes(),
    };
    done(f.on_reply(r, now()));
}

/// A 2xx the parser refuses is a parse failure, never credentials.
#[test]
fn unusable_answers_are_parse_failures() {
    for source in [imds(), container(None), Source::WebIdentity(sts(None))] {
        let mut f = Fetch::new(&source);
        if matches!(source, Source::Imds(_)) {
            imds_to_credentials_call(&mut f);
        } else {
            f.begin(now());
        }
        let got = failed(f.on_reply(ok("<html>not it</html>"), now()));
        assert!(matches!(got, Failure::Parse(_)), "{source:?}: {got:?}");
        assert_eq!(got.category(), "parse");
    }
}

/// docs/credentials.md, refresh: credentials that have already expired are never
/// stored (an `Expiration` at or before now).
#[test]
fn expired_credentials_are_a_failure() {
    let body = r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2023-11-15T00:00:00Z"}"#;
    let at = |ms: u64| Now::at(UNIX_EPOCH + Duration::from_millis(ms));
    let expiry_ms = EXPIRES_SECS * 1000;
    for (now_ms, expired) in [
        (expiry_ms - 1, false),
        (expiry_ms, true),
        (expiry_ms + 1, true),
    ] {
        let mut f = Fetch::new(&container(None));
        f.begin(at(now_ms));
        let step = f.on_reply(ok(body), at(now_ms));
        if expired {
            assert_eq!(failed(step), Failure::Expired, "{now_ms}");
        } else {
            assert_eq!(done(step).expires_at_ms(), Some(expiry_ms));
        }
    }
    let mut f = Fetch::new(&imds());
    imds_to_credentials_call(&mut f);
    let late = at((EXPIRES_SECS + 60) * 1000);
    assert_eq!(
        failed(f.on_reply(ok(&imds_json("A", "s", "t")), late)),
        Failure::Expired
    );
}

/// An answer with no call outstanding (never begun) means nothing.
#[test]
fn an_answer_without_a_call_is_ignored() {
    let mut f = Fetch::new(&container(None));
    assert_eq!(failed(f.on_reply(ok("{}"), now())), Failure::Abandoned);
}

/// docs/operations.md, what is never exposed: a call's Debug (logged on a failed
/// dispatch) shows where it goes, never the signature, session token,
/// IMDS token or container authorization.
#[test]
fn debug_of_a_call_redacts_secrets() {
    let base = Credentials::temporary(
        "ASIABASE".into(),
        "tmp-secret".into(),
        Some("SESSION-TOKEN-1".into()),
        EXPIRES_SECS * 1000,
    );
    let signed = call(Fetch::new(&assume_role(BaseCredentials::Static(base))).begin(now()));
    let sig = signed.get("authorization").unwrap().to_string();
    let mut f = Fetch::new(&imds());
    f.begin(now());
    let role = call(f.on_reply(ok("IMDS-TOKEN-1"), now()));
    let cont = call(Fetch::new(&container(Some("Bearer POD-TOKEN-1"))).begin(now()));
    let shown = format!("{signed:?} {role:?} {cont:?}");
    for secret in [
        sig.as_str(),
        "SESSION-TOKEN-1",
        "IMDS-TOKEN-1",
        "POD-TOKEN-1",
        "tmp-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    for shown_part in [
        "presign_sts",
        "sts.eu-west-1.amazonaws.com",
        "/latest/meta-data/iam/security-credentials/",
        "x-amz-date",
        "20231114T221320Z",
        "<redacted>",
        "timeout_ms: 900",
    ] {
        assert!(shown.contains(shown_part), "{shown_part} not in {shown}");
    }
}

/// docs/credentials.md, refresh metrics: Envoy's own 503 for an endpoint it could
/// not reach (connection refused or reset, no healthy host) is a
/// transport failure; the endpoint's own 503 stays http_5xx.
#[test]
fn envoys_own_503_for_an_unreachable_endpoint_is_transport() {
    for (body, want) in [
            (
                &b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"[..],
                Failure::Transport,
            ),
            (b"no healthy upstream", Failure::Transport),
            (b"Service Unavailable", Failure::Status5xx),
            (b"", Failure::Status5xx),
        ] {
            let mut f = Fetch::new(&imds());
            f.begin(now());
            let r = Reply { status: 503, body };
            assert_eq!(failed(f.on_reply(r, now())), want, "{body:?}");
        }
    // Only on a 503: the same text in a 500 is the endpoint's answer.
    let mut f = Fetch::new(&imds());
    f.begin(now());
    let r = Reply {
        status: 500,
        body: b"no healthy upstream",
    };
    assert_eq!(failed(f.on_reply(r, now())), Failure::Status5xx);
}

/// Debug output never shows a provider's answer or the IMDSv2 token.
#[test]
fn debug_shows_neither_the_answer_nor_the_imds_token() {
    let body = br#"{"SecretAccessKey":"wJalr-SECRET"}"#;
    let r = Reply { status: 200, body };
    assert_eq!(
        format!("{r:?}"),
        format!("Reply(200, {} bytes)", body.len())
    );
    let mut f = Fetch::new(&imds());
    f.begin(now());
    f.on_reply(ok("imds-token-SECRET"), now());
    let shown = format!("{f:?}");
    assert!(shown.contains("ImdsRole { token: <redacted> }"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

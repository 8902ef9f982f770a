use super::*;
use crate::testing::env_of;
use serde_json::{json, Value};

const SECRET: &str = "wJalrXUtnFEMI-secret-3f9a";
const TOKEN: &str = "FwoGZXIvYXdz-token-81c2";
const AUTH: &str = "Bearer pod-identity-77d1";

fn compile_with(doc: Value, env: &[(&str, &str)]) -> Result<CompiledCredentials, ConfigError> {
    let raw: RawCredentials = serde_json::from_value(doc).unwrap();
    compile(Some(raw), &env_of(env))
}

/// The refusal of `doc`: its field and reason.
fn refusal(doc: Value, env: &[(&str, &str)]) -> ConfigError {
    match compile_with(doc.clone(), env) {
        Ok(c) => panic!("{doc} was accepted: {c:?}"),
        Err(e) => e,
    }
}

fn field_of(doc: Value, env: &[(&str, &str)]) -> String {
    refusal(doc, env).field
}

fn setup(doc: Value, env: &[(&str, &str)]) -> Rotating {
    match compile_with(doc.clone(), env) {
        Ok(CompiledCredentials {
            rotating: Some(r), ..
        }) => r,
        Ok(c) => panic!("{doc}: not rotating: {c:?}"),
        Err(e) => panic!("{doc}: {e}"),
    }
}

/// The source of a rotating setup.
fn only(doc: Value, env: &[(&str, &str)]) -> Source {
    setup(doc, env).source
}

fn sts_of(s: Source) -> StsSource {
    match s {
        Source::AssumeRole(s, _) | Source::WebIdentity(s) => s,
        other => panic!("not STS: {other:?}"),
    }
}

fn container_of(doc: Value, env: &[(&str, &str)]) -> ContainerSource {
    match only(doc, env) {
        Source::Container(c) => c,
        other => panic!("not container: {other:?}"),
    }
}

const ROLE: &str = "arn:aws:iam::123456789012:role/presign";
const STATIC_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIDENV"),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("AWS_SESSION_TOKEN", TOKEN),
];

fn assume_role(extra: Value) -> Value {
    let mut a = json!({"region": "eu-west-1", "role_arn": ROLE});
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({"source": "assume_role", "assume_role": a})
}

fn web_identity(extra: Value) -> Value {
    let mut w = json!({"region": "eu-west-1", "role_arn": ROLE});
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    json!({"source": "web_identity", "web_identity": w})
}

/// docs/credentials.md, credentials: with no `credentials` block the keys come
/// from the VM environment, as before rotating sources existed.
#[test]
fn no_block_reads_the_environment() {
    let c = compile(None, &env_of(&STATIC_ENV)).unwrap();
    assert_eq!(c.source, CredentialsSource::Env);
    let k = c.fixed.unwrap();
    assert_eq!(
        (k.access_key_id(), k.session_token()),
        ("AKIDENV", Some(TOKEN))
    );
    assert!(c.rotating.is_none() && c.skipped.is_empty());
}

/// Static sources: `env` reads the variables, `inline` the block's keys
/// (an empty session token is none); inline keys with any other source are
/// refused (one of the three is enough), naming `credentials`.
#[test]
fn static_sources() {
    let c = compile_with(json!({"source": "env"}), &STATIC_ENV).unwrap();
    assert_eq!(c.source, CredentialsSource::Env);
    assert_eq!(c.fixed.unwrap().access_key_id(), "AKIDENV");
    let c = compile_with(
        json!({"source": "inline", "access_key_id": "AKIDIN", "secret_access_key": SECRET,
                   "session_token": ""}),
        &STATIC_ENV,
    )
    .unwrap();
    assert_eq!(c.source, CredentialsSource::Inline);
    let k = c.fixed.unwrap();
    assert_eq!((k.access_key_id(), k.session_token()), ("AKIDIN", None));
    assert!(c.rotating.is_none());
    let c = compile_with(
        json!({"source": "inline", "access_key_id": "AKIDIN", "secret_access_key": SECRET,
                   "session_token": TOKEN}),
        &[],
    )
    .unwrap();
    assert_eq!(c.fixed.unwrap().session_token(), Some(TOKEN));
    for source in [
        "env",
        "imds",
        "container",
        "assume_role",
        "web_identity",
        "chain",
    ] {
        for key in ["access_key_id", "secret_access_key", "session_token"] {
            let mut doc = assume_role(json!({}));
            doc["source"] = json!(source);
            if source != "assume_role" {
                doc.as_object_mut().unwrap().remove("assume_role");
            }
            doc[key] = json!("x");
            let e = refusal(doc, &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c")]);
            assert_eq!(e.field, "credentials", "{source} {key}");
            assert!(e.reason.contains("only read with"), "{e}");
        }
    }
    assert_eq!(
        field_of(json!({"source": "inline", "secret_access_key": "s"}), &[]),
        "credentials.access_key_id"
    );
    assert_eq!(
        field_of(json!({"source": "inline", "access_key_id": "A"}), &[]),
        "credentials.secret_access_key"
    );
    let e = refusal(json!({"source": "vault"}), &[]);
    assert_eq!(e.field, "credentials.source");
    assert!(e.reason.contains("\"vault\""), "{e}");
}

/// docs/credentials.md, credentials: `chain` is only read with `"source": "chain"`.
#[test]
fn chain_is_only_read_with_source_chain() {
    let e = refusal(json!({"source": "imds", "chain": ["imds"]}), &[]);
    assert_eq!(e.field, "credentials.chain");
    let r = setup(json!({"source": "chain", "chain": ["imds"]}), &[]);
    assert_eq!(r.source.label(), "imds");
}

/// docs/credentials.md, credentials: each rotating source alone compiles to a
/// one-source chain, with its defaults: the clusters of
/// `envoy/credentials.yaml` (presign_imds, presign_container, presign_sts,
/// presign_web_identity), 2000 ms per call, IMDS at 169.254.169.254 with a
/// 21600 s token, STS at sts.<region>.amazonaws.com for 3600 s as session
/// `envoy-presign`.
#[test]
fn each_source_and_its_defaults() {
    let s = only(json!({"source": "imds"}), &[]);
    assert_eq!(s.label(), "imds");
    assert_eq!(
        s,
        Source::Imds(ImdsSource {
            endpoint: Endpoint {
                cluster: "presign_imds".into(),
                authority: "169.254.169.254".into(),
                timeout_ms: 2000,
            },
            token_ttl_secs: 21_600,
        })
    );
    let c = container_of(
        json!({"source": "container"}),
        &[(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        )],
    );
    assert_eq!(
        (
            c.endpoint.cluster.as_str(),
            c.endpoint.authority.as_str(),
            c.endpoint.timeout_ms,
            c.path.as_str(),
            c.authorization.as_deref()
        ),
        (
            "presign_container",
            "169.254.170.2",
            2000,
            "/v2/credentials/abc",
            None
        )
    );
    let s = only(assume_role(json!({})), &STATIC_ENV);
    assert_eq!(s.label(), "assume_role");
    let Source::AssumeRole(sts, BaseCredentials::Static(base)) = s else {
        panic!("{s:?}")
    };
    assert_eq!(base.access_key_id(), "AKIDENV", "base env by default");
    assert_eq!(
        sts,
        StsSource {
            endpoint: Endpoint {
                cluster: "presign_sts".into(),
                authority: "sts.eu-west-1.amazonaws.com".into(),
                timeout_ms: 2000,
            },
            region: "eu-west-1".into(),
            role_arn: ROLE.into(),
            session_name: "envoy-presign".into(),
            external_id: None,
            duration_secs: 3600,
        }
    );
    let s = only(web_identity(json!({})), &[]);
    assert_eq!(s.label(), "web_identity");
    let w = sts_of(s);
    assert_eq!(w.endpoint.cluster, "presign_web_identity");
    assert_eq!(w.endpoint.authority, "sts.eu-west-1.amazonaws.com");
    assert_eq!(
        (w.duration_secs, w.session_name.as_str()),
        (3600, "envoy-presign")
    );
    // China's partition has its own domain.
    let w = sts_of(only(web_identity(json!({"region": "cn-north-1"})), &[]));
    assert_eq!(w.endpoint.authority, "sts.cn-north-1.amazonaws.com.cn");
    assert_eq!(
        SOURCE_LABELS,
        ["imds", "container", "assume_role", "web_identity"]
    );
}

/// Every setting of a source is read: clusters, authorities (Istio-style
/// names too), timeouts, token TTL, role, session, external id, duration.
#[test]
fn settings_are_read() {
    let s = only(
        json!({"source": "imds", "imds": {"cluster": "outbound|80||169.254.169.254",
                   "authority": "metadata", "token_ttl": 60, "timeout_ms": 700}}),
        &[],
    );
    let Source::Imds(i) = s else { panic!() };
    assert_eq!(i.endpoint.cluster, "outbound|80||169.254.169.254");
    assert_eq!(i.endpoint.authority, "metadata");
    assert_eq!((i.endpoint.timeout_ms, i.token_ttl_secs), (700, 60));
    let a = sts_of(only(
        assume_role(
            json!({"cluster": "sts", "authority": "sts.example", "session_name": "s-1",
                               "external_id": "ext-42", "duration": 900, "timeout_ms": 30000}),
        ),
        &STATIC_ENV,
    ));
    assert_eq!(
        (
            a.endpoint.cluster.as_str(),
            a.endpoint.authority.as_str(),
            a.endpoint.timeout_ms
        ),
        ("sts", "sts.example", 30_000)
    );
    assert_eq!(
        (
            a.session_name.as_str(),
            a.external_id.as_deref(),
            a.duration_secs
        ),
        ("s-1", Some("ext-42"), 900)
    );
}

/// The environment the AWS SDKs read: AWS_REGION (then
/// AWS_DEFAULT_REGION), AWS_ROLE_ARN (web identity only),
/// AWS_ROLE_SESSION_NAME; the block's own setting wins, and an empty
/// variable counts as unset.
#[test]
fn sts_settings_from_the_environment() {
    let doc = json!({"source": "web_identity"});
    let w = sts_of(only(
        doc.clone(),
        &[
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ROLE_ARN", ROLE),
            ("AWS_ROLE_SESSION_NAME", "pod-7"),
        ],
    ));
    assert_eq!(
        (
            w.region.as_str(),
            w.role_arn.as_str(),
            w.session_name.as_str()
        ),
        ("us-west-2", ROLE, "pod-7")
    );
    let w = sts_of(only(
        doc.clone(),
        &[
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("AWS_ROLE_ARN", ROLE),
        ],
    ));
    assert_eq!(w.region, "eu-central-1");
    assert_eq!(
        field_of(doc.clone(), &[("AWS_REGION", ""), ("AWS_ROLE_ARN", ROLE)]),
        "credentials.web_identity.region"
    );
    assert_eq!(
        field_of(
            doc.clone(),
            &[("AWS_REGION", "eu-west-1"), ("AWS_ROLE_ARN", "")]
        ),
        "credentials.web_identity.role_arn"
    );
    let w = sts_of(only(
        web_identity(json!({"session_name": "mine"})),
        &[
            ("AWS_REGION", "us-west-2"),
            ("AWS_ROLE_ARN", "arn:other"),
            ("AWS_ROLE_SESSION_NAME", "env"),
        ],
    ));
    assert_eq!(
        (
            w.region.as_str(),
            w.role_arn.as_str(),
            w.session_name.as_str()
        ),
        ("eu-west-1", ROLE, "mine")
    );
    // AssumeRole never takes AWS_ROLE_ARN (that is the web identity's role).
    let e = refusal(
        json!({"source": "assume_role", "assume_role": {"region": "eu-west-1"}}),
        &[("AWS_ROLE_ARN", ROLE), STATIC_ENV[0], STATIC_ENV[1]],
    );
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("credentials.assume_role.role_arn", "required")
    );
}

/// docs/credentials.md, credentials: every refusal names its field, under the block
/// it belongs to; limits are inclusive (the last valid value passes).
#[test]
fn every_refusal_names_its_field() {
    let imds = |v: Value| json!({"source": "imds", "imds": v});
    let refused: Vec<(Value, &str)> = vec![
        (imds(json!({"token_ttl": 0})), "credentials.imds.token_ttl"),
        (
            imds(json!({"token_ttl": 21_601})),
            "credentials.imds.token_ttl",
        ),
        (
            imds(json!({"timeout_ms": 0})),
            "credentials.imds.timeout_ms",
        ),
        (
            imds(json!({"timeout_ms": 30_001})),
            "credentials.imds.timeout_ms",
        ),
        (imds(json!({"cluster": ""})), "credentials.imds.cluster"),
        (imds(json!({"cluster": "a b"})), "credentials.imds.cluster"),
        (imds(json!({"cluster": "a\tb"})), "credentials.imds.cluster"),
        (
            imds(json!({"cluster": "c".repeat(256)})),
            "credentials.imds.cluster",
        ),
        (
            imds(json!({"cluster": "c".repeat(300)})),
            "credentials.imds.cluster",
        ),
        (
            imds(json!({"authority": "x\u{7f}"})),
            "credentials.imds.authority",
        ),
        (
            json!({"source": "container", "container": {"relative_uri": "/a", "timeout_ms": 0}}),
            "credentials.container.timeout_ms",
        ),
        (
            json!({"source": "container", "container": {"relative_uri": "/a", "cluster": " "}}),
            "credentials.container.cluster",
        ),
        (
            assume_role(json!({"role_arn": null})),
            "credentials.assume_role.role_arn",
        ),
        (
            assume_role(json!({"role_arn": "role/presign"})),
            "credentials.assume_role.role_arn",
        ),
        (
            assume_role(json!({"role_arn": "arn:aws:iam::1:role/a b"})),
            "credentials.assume_role.role_arn",
        ),
        (
            assume_role(json!({"role_arn": format!("arn:{}", "r".repeat(2045))})),
            "credentials.assume_role.role_arn",
        ),
        (
            assume_role(json!({"region": "EU-WEST-1"})),
            "credentials.assume_role.region",
        ),
        (
            assume_role(json!({"region": "eu west"})),
            "credentials.assume_role.region",
        ),
        (
            assume_role(json!({"region": ""})),
            "credentials.assume_role.region",
        ),
        (
            assume_role(json!({"region": "a".repeat(33)})),
            "credentials.assume_role.region",
        ),
        (
            assume_role(json!({"session_name": "a"})),
            "credentials.assume_role.session_name",
        ),
        (
            assume_role(json!({"session_name": "a".repeat(65)})),
            "credentials.assume_role.session_name",
        ),
        (
            assume_role(json!({"session_name": "a b"})),
            "credentials.assume_role.session_name",
        ),
        (
            assume_role(json!({"session_name": "a/b"})),
            "credentials.assume_role.session_name",
        ),
        (
            assume_role(json!({"external_id": "x"})),
            "credentials.assume_role.external_id",
        ),
        (
            assume_role(json!({"external_id": "x".repeat(1225)})),
            "credentials.assume_role.external_id",
        ),
        (
            assume_role(json!({"external_id": "x y"})),
            "credentials.assume_role.external_id",
        ),
        (
            assume_role(json!({"duration": 899})),
            "credentials.assume_role.duration",
        ),
        (
            assume_role(json!({"duration": 43_201})),
            "credentials.assume_role.duration",
        ),
        (
            assume_role(json!({"timeout_ms": 0})),
            "credentials.assume_role.timeout_ms",
        ),
        (
            assume_role(json!({"cluster": ""})),
            "credentials.assume_role.cluster",
        ),
        (
            assume_role(json!({"authority": "a b"})),
            "credentials.assume_role.authority",
        ),
        (
            assume_role(json!({"base": "vault"})),
            "credentials.assume_role.base",
        ),
        (
            web_identity(json!({"region": "Eu"})),
            "credentials.web_identity.region",
        ),
        (
            web_identity(json!({"duration": 100})),
            "credentials.web_identity.duration",
        ),
        (
            web_identity(json!({"base": "imds"})),
            "credentials.web_identity.base",
        ),
        (
            web_identity(json!({"external_id": "ext-1"})),
            "credentials.web_identity.external_id",
        ),
        (
            web_identity(json!({"cluster": ""})),
            "credentials.web_identity.cluster",
        ),
        (json!({"source": "assume_role"}), "credentials.source"),
    ];
    for (doc, field) in refused {
        let e = refusal(doc.clone(), &STATIC_ENV);
        assert_eq!(e.field, field, "{doc}: {e}");
        assert!(!e.reason.is_empty(), "{doc}");
    }
    let accepted = vec![
        imds(json!({"token_ttl": 1, "timeout_ms": 1})),
        imds(json!({"token_ttl": 21_600, "timeout_ms": 30_000, "cluster": "c".repeat(255)})),
        assume_role(json!({"duration": 900, "session_name": "ab", "external_id": "xy"})),
        assume_role(json!({"duration": 43_200, "session_name": "=,.@_-aZ09",
                               "external_id": "x".repeat(1224)})),
        assume_role(json!({"session_name": "a".repeat(64)})),
        assume_role(json!({"region": "a".repeat(32)})),
        assume_role(json!({"role_arn": format!("arn:{}", "r".repeat(2044))})),
    ];
    for doc in accepted {
        if let Err(e) = compile_with(doc.clone(), &STATIC_ENV) {
            panic!("{doc}: {e}");
        }
    }
    let long = only(
        assume_role(json!({"session_name": "a".repeat(64)})),
        &STATIC_ENV,
    );
    assert_eq!(sts_of(long).session_name.len(), 64);
}

/// docs/credentials.md, container source: the relative URI goes to 169.254.170.2
/// and comes before the full URI, as in the AWS SDKs; a configured
/// `relative_uri`/`full_uri` wins over the environment; both configured
/// is refused; the token comes from AWS_CONTAINER_AUTHORIZATION_TOKEN.
#[test]
fn container_uri_precedence_and_token() {
    let env_rel = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/env-rel");
    let env_full = (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.23/v1/credentials",
    );
    let doc = json!({"source": "container"});
    let c = container_of(doc.clone(), &[env_rel, env_full]);
    assert_eq!(
        (c.endpoint.authority.as_str(), c.path.as_str()),
        ("169.254.170.2", "/env-rel")
    );
    let c = container_of(
        doc.clone(),
        &[env_full, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)],
    );
    assert_eq!(
        (
            c.endpoint.authority.as_str(),
            c.path.as_str(),
            c.authorization.as_deref()
        ),
        ("169.254.170.23", "/v1/credentials", Some(AUTH))
    );
    let c = container_of(
        json!({"source": "container", "container": {"full_uri": "https://creds.example/x", "cluster": "creds_tls"}}),
        &[env_rel],
    );
    assert_eq!(
        (
            c.endpoint.cluster.as_str(),
            c.endpoint.authority.as_str(),
            c.path.as_str()
        ),
        ("creds_tls", "creds.example", "/x")
    );
    let c = container_of(
        json!({"source": "container", "container": {"relative_uri": "/mine"}}),
        &[env_rel, env_full],
    );
    assert_eq!(c.path, "/mine");
    let e = refusal(
        json!({"source": "container", "container": {"relative_uri": "/a", "full_uri": "https://h/b"}}),
        &[],
    );
    assert_eq!(e.field, "credentials.container.full_uri");
    assert_eq!(field_of(doc.clone(), &[]), "credentials.container");
    for bad in ["rel", "/a b", "/\u{e9}"] {
        assert_eq!(
            field_of(
                json!({"source": "container", "container": {"relative_uri": bad}}),
                &[]
            ),
            "credentials.container.relative_uri",
            "{bad}"
        );
    }
    assert_eq!(
        field_of(
            doc.clone(),
            &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "nope")]
        ),
        "credentials (VM environment AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
    );
    assert_eq!(
        field_of(
            doc.clone(),
            &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.0.0.1/c")]
        ),
        "credentials (VM environment AWS_CONTAINER_CREDENTIALS_FULL_URI)"
    );
    assert_eq!(
        field_of(
            json!({"source": "container", "container": {"full_uri": "ftp://h/c"}}),
            &[]
        ),
        "credentials.container.full_uri"
    );
    let long = format!("/{}", "p".repeat(2047));
    assert_eq!(
        container_of(
            json!({"source": "container", "container": {"relative_uri": long}}),
            &[]
        )
        .path
        .len(),
        2048
    );
    let too_long = format!("/{}", "p".repeat(2048));
    assert_eq!(
        field_of(
            json!({"source": "container", "container": {"relative_uri": too_long}}),
            &[]
        ),
        "credentials.container.relative_uri"
    );
}

/// docs/credentials.md, container source: the endpoint decides the cluster. ECS's
/// relative URI (or a full URI to 169.254.170.2) goes to
/// `presign_container`; EKS Pod Identity's full URI (169.254.170.23 or
/// fd00:ec2::23, as the default chain finds it on EKS) to
/// `presign_pod_identity`, whose listener adds the pod's token; any
/// other endpoint (https, loopback) needs `container.cluster`, refused
/// without it: the review found Pod Identity's calls sent to ECS's
/// address, and an https URI's token sent to whatever the cluster was.
#[test]
fn the_endpoint_decides_the_container_cluster() {
    let cluster_of = |env: &[(&str, &str)]| {
        container_of(json!({"source": "chain"}), env)
            .endpoint
            .cluster
    };
    let full = |uri: &'static str| ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri);
    for (env, want) in [
        (
            vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")],
            "presign_container",
        ),
        (vec![full("http://169.254.170.2/v2/c")], "presign_container"),
        (
            vec![full("http://169.254.170.2:80/v2/c")],
            "presign_container",
        ),
        (
            vec![full("http://169.254.170.23/v1/credentials")],
            "presign_pod_identity",
        ),
        (
            vec![full("http://[fd00:ec2::23]/v1/credentials")],
            "presign_pod_identity",
        ),
        (
            vec![full("http://[FD00:EC2::23]:80/v1/credentials")],
            "presign_pod_identity",
        ),
    ] {
        assert_eq!(cluster_of(&env), want, "{env:?}");
    }
    for uri in [
        "https://169.254.170.23/v1/credentials",
        "https://creds.example/c",
        "http://127.0.0.1:9000/c",
        "http://localhost/c",
        "http://169.254.170.23:8080/v1/credentials",
    ] {
        let e = refusal(json!({"source": "container"}), &[full(uri)]);
        assert_eq!(e.field, "credentials.container.cluster", "{uri}");
        assert_eq!(
            e.reason.contains("TLS"),
            uri.starts_with("https"),
            "{uri}: {e}"
        );
    }
    // A named cluster is used as it is.
    let c = container_of(
        json!({"source": "container", "container": {"cluster": "mine"}}),
        &[full("http://169.254.170.23/v1/credentials")],
    );
    assert_eq!(c.endpoint.cluster, "mine");
}

/// docs/credentials.md, container source: a full URI is allowed as the AWS SDKs
/// allow it: `https` to any host; `http` only to a loopback address,
/// 169.254.170.2, 169.254.170.23 (EKS Pod Identity), fd00:ec2::23, or
/// `localhost` (names cannot be resolved in the VM). The authority is
/// lower-cased, a missing path is `/`.
#[test]
fn full_uri_hosts() {
    let ok = [
        (
            "https://Creds.Example.com/v1?x=1",
            "creds.example.com",
            "/v1?x=1",
        ),
        ("https://10.0.0.1:8443", "10.0.0.1:8443", "/"),
        ("http://127.0.0.1/c", "127.0.0.1", "/c"),
        ("http://127.9.8.7:51679/c", "127.9.8.7:51679", "/c"),
        ("http://169.254.170.2/v2/x", "169.254.170.2", "/v2/x"),
        (
            "http://169.254.170.23/v1/credentials",
            "169.254.170.23",
            "/v1/credentials",
        ),
        (
            "http://[fd00:ec2::23]/v1/credentials",
            "[fd00:ec2::23]",
            "/v1/credentials",
        ),
        ("http://[::1]:8080/c", "[::1]:8080", "/c"),
        ("http://localhost:9000/c", "localhost:9000", "/c"),
        ("http://LocalHost/c", "localhost", "/c"),
    ];
    for (uri, authority, path) in ok {
        assert_eq!(
            full_uri(uri),
            Ok((authority.to_string(), path.to_string())),
            "{uri}"
        );
    }
    let refused = [
        "http://169.254.171.23/c",
        "http://169.254.170.3/c",
        "http://169.254.170.22/c",
        "http://10.0.0.1/c",
        "http://[fd00:ec2::2]/c",
        "http://[fe80::1]/c",
        "http://creds.example/c",
        "http://localhost.example/c",
        "http://[::1/c",
        "https:///c",
        "https://user@h/c",
        "https://h/a b",
        "ftp://h/c",
        "h/c",
    ];
    for uri in refused {
        assert!(full_uri(uri).is_err(), "{uri} was allowed");
    }
    assert!(full_uri("http://10.0.0.1/c")
        .unwrap_err()
        .contains("use https"));
}

/// docs/credentials.md, assume_role: the call is signed by the base credentials:
/// `env` (the default), `inline` (the top-level keys, read only then), or
/// temporary ones fetched first from imds, container or web_identity.
#[test]
fn assume_role_base() {
    let base_of = |doc: Value, env: &[(&str, &str)]| match only(doc, env) {
        Source::AssumeRole(_, b) => b,
        other => panic!("{other:?}"),
    };
    match base_of(assume_role(json!({"base": "env"})), &STATIC_ENV) {
        BaseCredentials::Static(c) => assert_eq!(c.access_key_id(), "AKIDENV"),
        other => panic!("{other:?}"),
    }
    let e = refusal(assume_role(json!({})), &[]);
    assert_eq!(e.field, "credentials.assume_role.base");
    assert!(e.reason.contains("AWS_ACCESS_KEY_ID"), "{e}");
    let mut inline = assume_role(json!({"base": "inline"}));
    inline["access_key_id"] = json!("AKIDBASE");
    inline["secret_access_key"] = json!(SECRET);
    match base_of(inline.clone(), &STATIC_ENV) {
        BaseCredentials::Static(c) => {
            assert_eq!(
                (c.access_key_id(), c.secret_access_key()),
                ("AKIDBASE", SECRET)
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        field_of(assume_role(json!({"base": "inline"})), &STATIC_ENV),
        "credentials.access_key_id"
    );
    // Inline keys are read with base inline in a chain too.
    let mut chained = inline.clone();
    chained["source"] = json!("chain");
    chained["chain"] = json!(["assume_role"]);
    assert_eq!(setup(chained, &[]).source.label(), "assume_role");
    for (name, want) in [
        ("imds", "imds"),
        ("container", "container"),
        ("web_identity", "web_identity"),
    ] {
        let mut doc = assume_role(json!({"base": name}));
        if name == "web_identity" {
            doc["web_identity"] =
                json!({"role_arn": "arn:aws:iam::1:role/web", "region": "us-east-1"});
        }
        if name == "container" {
            doc["container"] = json!({"relative_uri": "/c"});
        }
        match base_of(doc, &[]) {
            BaseCredentials::Fetched(b) => assert_eq!(b.label(), want),
            other => panic!("{other:?}"),
        }
    }
    // A fetched base is checked like the source itself.
    assert_eq!(
        field_of(assume_role(json!({"base": "container"})), &[]),
        "credentials.container"
    );
}

/// docs/credentials.md, chain: the first configured entry is the source, as the
/// AWS SDKs resolve their chain (env keys included, wherever `env` stands);
/// every other entry is named with why it is not used; configured entries
/// shadowed by an earlier one (but the ambient `imds`) are `dropped`; a
/// name twice, an unknown name, an empty chain or nothing configured is
/// refused, naming the entry.
#[test]
fn chain_semantics() {
    let c = compile_with(json!({"source": "chain"}), &STATIC_ENV).unwrap();
    assert_eq!(c.source, CredentialsSource::Env);
    assert_eq!(c.fixed.unwrap().access_key_id(), "AKIDENV");
    assert!(c.rotating.is_none() && c.dropped.is_empty());
    assert_eq!(
        c.skipped,
        [
            "web_identity (no web_identity block and no AWS_ROLE_ARN)",
            "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)",
            "imds (configured, but env comes first)"
        ]
    );
    // Default order, nothing but IMDS configured.
    let c = compile_with(json!({"source": "chain"}), &[]).unwrap();
    assert_eq!(c.source, CredentialsSource::Rotating);
    assert!(c.fixed.is_err());
    assert_eq!(
        c.skipped,
        [
            "env (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set)",
            "web_identity (no web_identity block and no AWS_ROLE_ARN)",
            "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)"
        ]
    );
    let label = |c: &CompiledCredentials| c.rotating.as_ref().unwrap().source.label();
    assert_eq!(label(&c), "imds");
    // `env` after IMDS: IMDS is the source, env keys are shadowed (the
    // review's finding: env used to win from anywhere, silently).
    let c = compile_with(
        json!({"source": "chain", "chain": ["imds", "env"]}),
        &STATIC_ENV,
    )
    .unwrap();
    assert_eq!((c.source, label(&c)), (CredentialsSource::Rotating, "imds"));
    assert_eq!(c.skipped, ["env (configured, but imds comes first)"]);
    assert_eq!(c.dropped, ["env"]);
    // Each source applies through its block or its variables; the first
    // that applies is the source, a later IMDS is not "dropped".
    let all =
        json!({"source": "chain", "chain": ["assume_role", "web_identity", "container", "imds"]});
    for (env, want, skipped) in [
        (
            vec![("AWS_ROLE_ARN", ROLE), ("AWS_REGION", "eu-west-1")],
            "web_identity",
            vec![
                "assume_role (no assume_role block)",
                "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)",
                "imds (configured, but web_identity comes first)",
            ],
        ),
        (
            vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c")],
            "container",
            vec![
                "assume_role (no assume_role block)",
                "web_identity (no web_identity block and no AWS_ROLE_ARN)",
                "imds (configured, but container comes first)",
            ],
        ),
    ] {
        let c = compile_with(all.clone(), &env).unwrap();
        assert_eq!(label(&c), want, "{env:?}");
        assert_eq!(c.skipped, skipped, "{env:?}");
        assert!(c.dropped.is_empty(), "{env:?}");
    }
    // Every entry configured: the first is used, the others shadowed.
    let mut blocks = assume_role(json!({"base": "imds"}));
    blocks["source"] = json!("chain");
    blocks["chain"] = all["chain"].clone();
    blocks["web_identity"] = json!({"role_arn": ROLE, "region": "eu-west-1"});
    blocks["container"] = json!({"relative_uri": "/c"});
    let c = compile_with(blocks.clone(), &[]).unwrap();
    assert_eq!(label(&c), "assume_role");
    assert_eq!(c.dropped, ["web_identity", "container"]);
    assert_eq!(c.skipped.len(), 3, "{:?}", c.skipped);
    // A shadowed entry is still checked: a broken block is refused.
    blocks["container"] = json!({"relative_uri": "no-slash"});
    assert_eq!(field_of(blocks, &[]), "credentials.container.relative_uri");
    // An empty variable counts as unset.
    let c = compile_with(
        json!({"source": "chain", "chain": ["container", "imds"]}),
        &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")],
    )
    .unwrap();
    assert_eq!(label(&c), "imds");
    // Refusals.
    let e = refusal(
        json!({"source": "chain", "chain": ["imds", "container", "imds"]}),
        &[],
    );
    assert_eq!(e.field, "credentials.chain[2]");
    assert!(e.reason.contains("twice"), "{e}");
    assert_eq!(
        field_of(json!({"source": "chain", "chain": ["imds", "inline"]}), &[]),
        "credentials.chain[1]"
    );
    assert_eq!(
        field_of(json!({"source": "chain", "chain": []}), &[]),
        "credentials.chain"
    );
    let e = refusal(
        json!({"source": "chain", "chain": ["env", "container"]}),
        &[],
    );
    assert_eq!(e.field, "credentials.chain");
    assert!(
        e.reason.contains("no source is configured") && e.reason.contains("env ("),
        "{e}"
    );
    // A configured entry is validated with its chain position's block.
    assert_eq!(
        field_of(
            json!({"source": "chain", "chain": ["imds"], "imds": {"token_ttl": 0}}),
            &[]
        ),
        "credentials.imds.token_ttl"
    );
}

/// docs/credentials.md, refresh settings: defaults (900 s before expiry, 60 s URL
/// margin, retries from 1 s to 30 s), limits inclusive, each refusal
/// naming its field.
#[test]
fn refresh_settings_and_limits() {
    let with = |refresh: Value| json!({"source": "imds", "refresh": refresh});
    let r = setup(with(json!({})), &[]).refresh;
    assert_eq!(
        (
            r.before_ms,
            r.expiry_margin_ms,
            r.retry_min_ms,
            r.retry_max_ms
        ),
        (900_000, 60_000, 1_000, 30_000)
    );
    let r = setup(
        with(json!({"before": 7, "expiry_margin": 3, "retry_min_ms": 250, "retry_max_ms": 250})),
        &[],
    )
    .refresh;
    assert_eq!(
        (
            r.before_ms,
            r.expiry_margin_ms,
            r.retry_min_ms,
            r.retry_max_ms
        ),
        (7_000, 3_000, 250, 250)
    );
    // retry_max defaults to at least retry_min.
    let r = setup(with(json!({"retry_min_ms": 60_000})), &[]).refresh;
    assert_eq!((r.retry_min_ms, r.retry_max_ms), (60_000, 60_000));
    for ok in [
        json!({"before": 1, "expiry_margin": 0, "retry_min_ms": 100}),
        json!({"before": 43_200, "expiry_margin": 3600, "retry_min_ms": 600_000, "retry_max_ms": 3_600_000}),
    ] {
        if let Err(e) = compile_with(with(ok.clone()), &[]) {
            panic!("{ok}: {e}");
        }
    }
    for (bad, field) in [
        (json!({"before": 0}), "credentials.refresh.before"),
        (json!({"before": 43_201}), "credentials.refresh.before"),
        (
            json!({"expiry_margin": 3601}),
            "credentials.refresh.expiry_margin",
        ),
        (
            json!({"retry_min_ms": 99}),
            "credentials.refresh.retry_min_ms",
        ),
        (
            json!({"retry_min_ms": 600_001}),
            "credentials.refresh.retry_min_ms",
        ),
        (
            json!({"retry_min_ms": 500, "retry_max_ms": 499}),
            "credentials.refresh.retry_max_ms",
        ),
        (
            json!({"retry_max_ms": 3_600_001}),
            "credentials.refresh.retry_max_ms",
        ),
    ] {
        assert_eq!(field_of(with(bad.clone()), &[]), field, "{bad}");
    }
}

/// docs/credentials.md, refresh: one worker's claim to refresh lasts longer than
/// the slowest refresh the chain can make (every call timing out: three
/// for IMDS, one per STS or container call, the fetched base's first),
/// plus 2 s.
#[test]
fn the_lease_covers_the_slowest_chain() {
    let lease = |doc: Value, env: &[(&str, &str)]| setup(doc, env).refresh.lease_ms;
    assert_eq!(
        lease(json!({"source": "imds", "imds": {"timeout_ms": 1000}}), &[]),
        5_000
    );
    assert_eq!(
        lease(
            json!({"source": "container", "container": {"relative_uri": "/c", "timeout_ms": 700}}),
            &[]
        ),
        2_700
    );
    assert_eq!(lease(web_identity(json!({"timeout_ms": 900})), &[]), 2_900);
    assert_eq!(
        lease(assume_role(json!({"timeout_ms": 800})), &STATIC_ENV),
        2_800
    );
    let mut doc = assume_role(json!({"timeout_ms": 800, "base": "imds"}));
    doc["imds"] = json!({"timeout_ms": 500});
    assert_eq!(lease(doc, &[]), 800 + 1_500 + 2_000);
    // A chain's lease is its chosen source's: only that one is asked.
    let doc = json!({"source": "chain", "chain": ["container", "imds"],
                         "container": {"relative_uri": "/c", "timeout_ms": 300},
                         "imds": {"timeout_ms": 100}});
    assert_eq!(lease(doc, &[]), 300 + 2_000);
}

/// docs/credentials.md, refresh: credentials are shared under a fingerprint of the
/// setup, so a changed setting never adopts the old setup's credentials;
/// the fingerprint is a hash (16 hex digits) and carries no secret.
#[test]
fn the_fingerprint_changes_with_any_setting_and_hides_secrets() {
    let fp = |doc: Value, env: &[(&str, &str)]| setup(doc, env).fingerprint;
    let base = assume_role(json!({}));
    let set = |k: &str, v: Value| {
        let mut d = base.clone();
        d["assume_role"][k] = v;
        d
    };
    let mut inline = set("base", json!("inline"));
    inline["access_key_id"] = json!("AKIDBASE");
    inline["secret_access_key"] = json!(SECRET);
    let mut inline_secret = inline.clone();
    inline_secret["secret_access_key"] = json!("another-secret");
    let mut inline_id = inline.clone();
    inline_id["access_key_id"] = json!("AKIDBASE2");
    let container = |extra: Value| {
        let mut c = json!({"relative_uri": "/c"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"source": "container", "container": c})
    };
    let env_auth = [("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)];
    let prints = vec![
        ("base", fp(base.clone(), &STATIC_ENV)),
        ("region", fp(set("region", json!("eu-west-2")), &STATIC_ENV)),
        (
            "role",
            fp(set("role_arn", json!("arn:aws:iam::1:role/b")), &STATIC_ENV),
        ),
        (
            "session",
            fp(set("session_name", json!("other")), &STATIC_ENV),
        ),
        (
            "external id",
            fp(set("external_id", json!("ext-1")), &STATIC_ENV),
        ),
        ("duration", fp(set("duration", json!(7200)), &STATIC_ENV)),
        ("cluster", fp(set("cluster", json!("sts2")), &STATIC_ENV)),
        (
            "authority",
            fp(set("authority", json!("sts.example")), &STATIC_ENV),
        ),
        ("timeout", fp(set("timeout_ms", json!(2001)), &STATIC_ENV)),
        (
            "env base key",
            fp(
                base.clone(),
                &[("AWS_ACCESS_KEY_ID", "AKID2"), STATIC_ENV[1]],
            ),
        ),
        (
            "env base secret",
            fp(
                base.clone(),
                &[STATIC_ENV[0], ("AWS_SECRET_ACCESS_KEY", "s2")],
            ),
        ),
        ("inline base", fp(inline.clone(), &[])),
        ("inline secret", fp(inline_secret, &[])),
        ("inline id", fp(inline_id, &[])),
        ("imds base", fp(set("base", json!("imds")), &[])),
        ("imds", fp(json!({"source": "imds"}), &[])),
        (
            "imds ttl",
            fp(json!({"source": "imds", "imds": {"token_ttl": 60}}), &[]),
        ),
        ("container", fp(container(json!({})), &[])),
        (
            "container path",
            fp(container(json!({"relative_uri": "/d"})), &[]),
        ),
        ("container token", fp(container(json!({})), &env_auth)),
        (
            "container other token",
            fp(
                container(json!({})),
                &[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "other")],
            ),
        ),
        ("web identity", fp(web_identity(json!({})), &[])),
    ];
    for (i, (a, pa)) in prints.iter().enumerate() {
        assert_eq!(pa.len(), 16, "{a}: {pa}");
        assert!(pa.bytes().all(|b| b.is_ascii_hexdigit()), "{a}: {pa}");
        for (b, pb) in prints.iter().skip(i + 1) {
            assert_ne!(pa, pb, "{a} and {b} share a fingerprint");
        }
    }
    // The same setup, the same fingerprint (every worker, every restart);
    // a chain is the source it resolves to (the same credentials).
    assert_eq!(fp(base.clone(), &STATIC_ENV), prints[0].1);
    assert_eq!(
        fp(
            json!({"source": "chain", "chain": ["imds", "container"]}),
            &[]
        ),
        fp(json!({"source": "imds"}), &[])
    );
    assert_eq!(fp(inline, &[]), prints[11].1);
}

/// docs/operations.md, what is never exposed: no secret key, session token or
/// container authorization token appears in the compiled setup's Debug
/// (logged at startup), nor in any refusal.
#[test]
fn no_secret_in_debug_or_errors() {
    let mut doc = assume_role(json!({"base": "inline"}));
    doc["access_key_id"] = json!("AKIDBASE");
    doc["secret_access_key"] = json!(SECRET);
    doc["session_token"] = json!(TOKEN);
    let c = compile_with(doc, &[]).unwrap();
    let c2 = compile_with(
        json!({"source": "chain", "chain": ["container", "assume_role"],
                   "assume_role": {"region": "eu-west-1", "role_arn": ROLE}}),
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
            STATIC_ENV[0],
            STATIC_ENV[1],
            STATIC_ENV[2],
        ],
    )
    .unwrap();
    let shown = format!("{c:?} {c2:?}");
    for secret in [SECRET, TOKEN, AUTH] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("AKIDBASE") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(
        shown.contains("169.254.170.23@presign_pod_identity (2000 ms)"),
        "endpoints show where calls go: {shown}"
    );
    let errors = [
        refusal(
            json!({"source": "env", "secret_access_key": SECRET, "session_token": TOKEN}),
            &STATIC_ENV,
        ),
        refusal(
            json!({"source": "inline", "secret_access_key": SECRET}),
            &[],
        ),
        refusal(
            json!({"source": "imds", "session_token": TOKEN}),
            &STATIC_ENV,
        ),
        refusal(
            json!({"source": "container"}),
            &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.1.1/c"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
            ],
        ),
        refusal(assume_role(json!({"duration": 1})), &STATIC_ENV),
    ];
    for e in errors {
        let shown = format!("{e} {e:?}");
        for secret in [SECRET, TOKEN, AUTH] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}

/// docs/credentials.md, Rotating credentials: timing under which credentials stop
/// signing before they are refreshed is refused, naming the field;
/// `Config::parse` checks it against the largest origin `min_remaining`.
#[test]
fn timing_that_lapses_before_the_refresh_is_refused() {
    let mut r = setup(
        json!({"source": "imds", "refresh": {"before": 100, "expiry_margin": 60}}),
        &[],
    );
    assert_eq!(check_timing(&mut r, 38_000), Ok(()));
    let e = check_timing(&mut r, 39_000).unwrap_err();
    assert_eq!(e.field, "credentials.refresh.before");
    assert!(
        e.reason.contains("(100 s)") && e.reason.contains("(100 s)"),
        "{e}"
    );
    let sts = json!({"source": "web_identity",
                         "web_identity": {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r", "duration": 900},
                         "refresh": {"before": 3000, "expiry_margin": 300}});
    let mut r = setup(sts, &[]);
    assert_eq!(check_timing(&mut r, 148_000), Ok(()));
    let e = check_timing(&mut r, 149_000).unwrap_err();
    assert_eq!(e.field, "credentials.web_identity.duration");
    let sts = json!({"source": "assume_role",
                         "assume_role": {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r", "duration": 900},
                         "refresh": {"before": 3000, "expiry_margin": 300}});
    let mut r = setup(
        sts,
        &[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "s")],
    );
    assert_eq!(check_timing(&mut r, 148_000), Ok(()));
    let e = check_timing(&mut r, 149_000).unwrap_err();
    assert_eq!(e.field, "credentials.assume_role.duration");
    // Static keys are never checked; through Config::parse the origins count.
    let doc = |min_remaining: u64| {
        json!({"credentials": {"source": "imds", "refresh": {"before": 100, "expiry_margin": 60}},
                   "origins": [{"name": "m", "match": {"prefix": "/m/"}, "endpoint": "http://127.0.0.1:1",
                                "bucket": "bucket", "region": "us-east-1", "expires_in": 3600,
                                "refresh_before": 600, "min_remaining": min_remaining}]})
    };
    let parse = |d: Value| crate::config::Config::parse(d.to_string().as_bytes(), &|_| None);
    assert!(parse(doc(38)).is_ok());
    assert_eq!(
        parse(doc(39)).unwrap_err().field,
        "credentials.refresh.before"
    );
}

/// A block no source of the document reads is refused, naming it, rather
/// than silently ignored (a typo, a source left out of the chain); so are
/// inline keys beside an `assume_role` the document never uses.
#[test]
fn blocks_no_source_reads_are_refused() {
    let imds = json!({"timeout_ms": 500});
    for (doc, field) in [
        (json!({"source": "env", "imds": imds}), "credentials.imds"),
        (
            json!({"source": "container", "container": {"relative_uri": "/c"}, "imds": imds}),
            "credentials.imds",
        ),
        (
            json!({"source": "chain", "chain": ["imds"], "imds": imds,
                    "container": {"relative_uri": "/c"}}),
            "credentials.container",
        ),
        (
            json!({"source": "inline", "access_key_id": "A", "secret_access_key": "s",
                    "refresh": {"before": 600}}),
            "credentials.refresh",
        ),
        (
            json!({"source": "imds", "access_key_id": "A", "secret_access_key": "s",
                    "assume_role": {"base": "inline", "role_arn": "arn:aws:iam::1:role/r", "region": "eu-west-1"}}),
            "credentials.assume_role",
        ),
    ] {
        let e = refusal(doc.clone(), &[]);
        assert_eq!(e.field, field, "{doc}");
    }
    // The default chain reads every block but assume_role's.
    let doc = json!({"source": "chain", "imds": imds, "container": {"relative_uri": "/c"}});
    assert_eq!(setup(doc, &[]).source.label(), "container");
    // A chain's assume_role reads its base's block.
    let doc = json!({"source": "chain", "chain": ["assume_role"], "imds": imds,
                         "assume_role": {"base": "imds", "role_arn": "arn:aws:iam::1:role/r", "region": "eu-west-1"}});
    assert_eq!(setup(doc, &[]).source.label(), "assume_role");
}

use super::*;
use log::Level;

const ORIGIN: &str = r#"{"name":"media","match":{"prefix":"/media/"},
        "endpoint":"http://127.0.0.1:8333","bucket":"media","region":"us-east-1"}"#;

fn doc(credentials: &str, cache: &str) -> String {
    format!(r#"{{"credentials":{credentials},"cache":{cache},"origins":[{ORIGIN}]}}"#)
}

fn lines(c: &Configured) -> Vec<(Level, &str)> {
    c.notices
        .iter()
        .map(|n| (n.level, n.message.as_str()))
        .collect()
}

#[test]
fn env_credentials_are_named_by_access_key_only() {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDSTARTUP".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("very-secret".to_string()),
        "AWS_SESSION_TOKEN" => Some("the-token".to_string()),
        _ => None,
    };
    let c = configure(doc(r#"{"source":"env"}"#, "{}").as_bytes(), &env).unwrap();
    assert_eq!(
        lines(&c),
        [
            (
                Level::Info,
                "envoy-presign: signing with access key AKIDSTARTUP from the VM environment"
            ),
            (
                Level::Info,
                "envoy-presign: configured 1 origin(s), cache on (10000 slots)"
            ),
        ]
    );
    let all = format!("{:?}", c.notices);
    assert!(!all.contains("very-secret") && !all.contains("the-token"));
}

#[test]
fn missing_env_credentials_warn_and_still_configure() {
    let c = configure(doc(r#"{"source":"env"}"#, "{}").as_bytes(), &|_| None).unwrap();
    assert_eq!(
            lines(&c)[0],
            (
                Level::Warn,
                "envoy-presign: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set in the Wasm VM environment); matched requests follow on_error"
            )
        );
    assert!(c.config.signer.is_err());
}

#[test]
fn inline_credentials_warn_about_config_dump() {
    let creds =
        r#"{"source":"inline","access_key_id":"AKIDINLINE","secret_access_key":"sk-inline"}"#;
    let c = configure(
        doc(creds, r#"{"enabled":false,"max_entries":7}"#).as_bytes(),
        &|_| None,
    )
    .unwrap();
    assert_eq!(
            lines(&c),
            [
                (
                    Level::Warn,
                    "envoy-presign: using inline credentials for access key AKIDINLINE; they are visible in /config_dump"
                ),
                (
                    Level::Info,
                    "envoy-presign: configured 1 origin(s), cache off (7 slots)"
                ),
            ]
        );
    assert!(!format!("{:?}", c.notices).contains("sk-inline"));
}

/// A document type an operator lists in `response_content_types` is
/// allowed, with a startup warning naming the origin and the types.
#[test]
fn document_content_types_are_warned_about() {
    let doc = |types: &str| {
        format!(
            r#"{{"origins":[{{"name":"media","match":{{"prefix":"/m/"}},"endpoint":"http://s3:9000",
                "bucket":"media","region":"us-east-1","allow_query":["response-content-type"],
                "response_content_types":{types}}}]}}"#
        )
    };
    let c = configure(
        doc(r#"["video/mp4","text/html","image/svg+xml"]"#).as_bytes(),
        &|_| None,
    )
    .unwrap();
    let warning = lines(&c)
        .into_iter()
        .find(|(_, l)| l.contains("response-content-type"));
    assert_eq!(
            warning,
            Some((
                Level::Warn,
                "envoy-presign: origin media signs response-content-type [\"text/html\", \"image/svg+xml\"] (response_content_types): a client can make the store serve any object of the bucket as a document a browser renders"
            ))
        );
    let c = configure(doc(r#"["video/mp4"]"#).as_bytes(), &|_| None).unwrap();
    assert!(!lines(&c)
        .iter()
        .any(|(_, l)| l.contains("response-content-type")));
}

#[test]
fn a_refused_document_is_one_error_line_naming_the_field() {
    let bad = doc(r#"{"source":"env"}"#, r#"{"max_entries":0}"#);
    let e = configure(bad.as_bytes(), &|_| None).unwrap_err();
    assert_eq!(e.level, Level::Error);
    assert!(
        e.message
            .starts_with("envoy-presign: invalid configuration: cache.max_entries: "),
        "{}",
        e.message
    );
}

/// docs/configuration.md, startup log: a rotating setup is announced with its
/// source (cluster, role, and what signs an AssumeRole: an access key id
/// or the fetched source, never a secret), the 503 until the first
/// fetch, every other chain entry with why it is not used, and a warning
/// naming the configured entries the chosen one shadows.
#[test]
fn rotating_credentials_are_described() {
    let creds = r#"{"source":"chain","chain":["assume_role","web_identity","container","imds"],
            "web_identity":{"region":"eu-west-1","role_arn":"arn:aws:iam::1:role/web"},
            "assume_role":{"region":"eu-west-1","role_arn":"arn:aws:iam::1:role/ar","base":"imds"}}"#;
    let c = configure(doc(creds, "{}").as_bytes(), &|_| None).unwrap();
    assert_eq!(
            lines(&c),
            [
                (
                    Level::Info,
                    "envoy-presign: rotating credentials from assume_role (cluster presign_sts, role arn:aws:iam::1:role/ar, signed with imds (cluster presign_imds)); matched requests get 503 credentials_unavailable until the first fetch succeeds"
                ),
                (
                    Level::Info,
                    "envoy-presign: credential chain, not used: web_identity (configured, but assume_role comes first), container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI), imds (configured, but assume_role comes first)"
                ),
                (
                    Level::Warn,
                    "envoy-presign: credential chain shadows configured sources web_identity: only the first configured entry is used (as the AWS SDKs do), and a failing one is retried, never replaced by the next; reorder or remove them"
                ),
                (
                    Level::Info,
                    "envoy-presign: configured 1 origin(s), cache on (10000 slots)"
                ),
            ]
        );
    let creds = r#"{"source":"assume_role","access_key_id":"AKIDBASE","secret_access_key":"sk-base",
            "assume_role":{"region":"eu-west-1","role_arn":"arn:aws:iam::1:role/ar","base":"inline"}}"#;
    let env =
        |k: &str| (k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").then(|| "/v2/creds".to_string());
    let c = configure(doc(creds, "{}").as_bytes(), &env).unwrap();
    assert_eq!(c.notices.len(), 2, "nothing skipped, no skip line");
    assert!(
            c.notices[0]
                .message
                .contains("from assume_role (cluster presign_sts, role arn:aws:iam::1:role/ar, signed with access key AKIDBASE);"),
            "{}",
            c.notices[0].message
        );
    assert!(!format!("{:?}", c.notices).contains("sk-base"));
    let container = configure(doc(r#"{"source":"container"}"#, "{}").as_bytes(), &env).unwrap();
    assert!(
        container.notices[0]
            .message
            .contains("from container (cluster presign_container, 169.254.170.2/v2/creds);"),
        "{}",
        container.notices[0].message
    );
}

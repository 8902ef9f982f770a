//! What `on_configure` makes of a configuration document, as a pure function:
//! the compiled configuration and the lines to log, or the one line that
//! refuses it. The filter logs these lines; `envoy-presign-config check`
//! prints them. Keeping them here is what makes the host command say exactly
//! what the filter would, from the same code.

use crate::config::Config;
use crate::cred_config::{BaseCredentials, Source};
use crate::credentials::CredentialsSource;
use crate::overrides::renders_as_document;

/// One line the filter logs at startup, with its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Log level (the filter logs it at this level; the host command prints it).
    pub level: log::Level,
    /// The line, never holding a secret key or session token.
    pub message: String,
}

impl Notice {
    fn new(level: log::Level, message: String) -> Self {
        Self { level, message }
    }
}

/// An accepted configuration and what the filter logs about it.
#[derive(Debug)]
pub struct Configured {
    /// The compiled configuration.
    pub config: Config,
    /// The startup lines, in the order the filter logs them.
    pub notices: Vec<Notice>,
}

/// Parses and compiles a configuration document as `on_configure` does;
/// `env` reads the Wasm VM's environment (the filter) or the process's (the
/// host command). A refused document gives the error line the filter logs
/// before failing the plugin, naming the field.
pub fn configure(raw: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Configured, Notice> {
    let config = Config::parse(raw, env).map_err(|e| {
        Notice::new(
            log::Level::Error,
            format!("envoy-presign: invalid configuration: {e}"),
        )
    })?;
    let credentials = match (&config.signer, config.credentials_source, &config.rotating) {
        (_, _, Some(r)) => Notice::new(
            log::Level::Info,
            format!(
                "envoy-presign: rotating credentials from {}; matched requests get 503 credentials_unavailable until the first fetch succeeds",
                describe_source(&r.source)
            ),
        ),
        (Err(reason), _, None) => Notice::new(
            log::Level::Warn,
            format!("envoy-presign: no credentials ({reason}); matched requests follow on_error"),
        ),
        (Ok(s), CredentialsSource::Inline, None) => Notice::new(
            log::Level::Warn,
            format!(
                "envoy-presign: using inline credentials for access key {}; they are visible in /config_dump",
                s.access_key_id()
            ),
        ),
        (Ok(s), CredentialsSource::Env | CredentialsSource::Rotating, None) => Notice::new(
            log::Level::Info,
            format!(
                "envoy-presign: signing with access key {} from the VM environment",
                s.access_key_id()
            ),
        ),
    };
    let summary = Notice::new(
        log::Level::Info,
        format!(
            "envoy-presign: configured {} origin(s), cache {} ({} slots)",
            config.origins.len(),
            if config.cache.enabled { "on" } else { "off" },
            config.cache.max_entries
        ),
    );
    let mut notices = vec![credentials];
    if !config.credentials_skipped.is_empty() {
        notices.push(Notice::new(
            log::Level::Info,
            format!(
                "envoy-presign: credential chain, not used: {}",
                config.credentials_skipped.join(", ")
            ),
        ));
    }
    if !config.credentials_dropped.is_empty() {
        notices.push(Notice::new(
            log::Level::Warn,
            format!(
                "envoy-presign: credential chain shadows configured sources {}: only the first configured entry is used (as the AWS SDKs do), and a failing one is retried, never replaced by the next; reorder or remove them",
                config.credentials_dropped.join(", ")
            ),
        ));
    }
    notices.push(summary);
    for o in &config.origins {
        let documents: Vec<&str> = o
            .response_content_types
            .iter()
            .map(String::as_str)
            .filter(|t| renders_as_document(t))
            .collect();
        // Listed only beside allow_query's response-content-type (config.rs).
        if !documents.is_empty() {
            notices.push(Notice::new(
                log::Level::Warn,
                format!(
                    "envoy-presign: origin {} signs response-content-type {documents:?} (response_content_types): a client can make the store serve any object of the bucket as a document a browser renders",
                    o.name
                ),
            ));
        }
    }
    Ok(Configured { config, notices })
}

/// `imds (cluster presign_imds)`: the source with the cluster it calls (and,
/// for `assume_role`, what signs it); never a secret (the role ARN is not one).
pub fn describe_source(source: &Source) -> String {
    match source {
        Source::Imds(i) => format!("imds (cluster {})", i.endpoint.cluster),
        Source::Container(c) => format!(
            "container (cluster {}, {}{})",
            c.endpoint.cluster, c.endpoint.authority, c.path
        ),
        Source::WebIdentity(w) => format!(
            "web_identity (cluster {}, role {})",
            w.endpoint.cluster, w.role_arn
        ),
        Source::AssumeRole(a, base) => {
            let base = match base {
                BaseCredentials::Static(c) => format!("access key {}", c.access_key_id()),
                BaseCredentials::Fetched(b) => describe_source(b),
            };
            format!(
                "assume_role (cluster {}, role {}, signed with {base})",
                a.endpoint.cluster, a.role_arn
            )
        }
    }
}

#[cfg(test)]
mod tests {
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
        let env = |k: &str| {
            (k == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").then(|| "/v2/creds".to_string())
        };
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
}

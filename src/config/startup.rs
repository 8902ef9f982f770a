//! What `on_configure` makes of a configuration document, as a pure function:
//! the compiled configuration and the lines to log, or the one line that
//! refuses it. The filter logs these lines; `envoy-presign-config check`
//! prints them. Keeping them here is what makes the host command say exactly
//! what the filter would, from the same code.

use crate::config::credentials::{BaseCredentials, Source};
use crate::config::overrides::renders_as_document;
use crate::config::Config;
use crate::sigv4::credentials::CredentialsSource;

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
#[path = "startup_tests.rs"]
mod tests;

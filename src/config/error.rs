//! The one error type of the configuration, shared by every file that
//! validates a part of it (origins, cache, credentials), so none of them
//! depends on another just to report a refusal.

use std::fmt;

/// A configuration error, always naming the field (JSON path) it is about, so an
/// operator can fix the config from the log line alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the field, e.g. `origins[0].region`; empty for the document itself.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
}

impl ConfigError {
    /// An error naming `field`.
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns a serde error into a field-named error: the path comes from
/// `serde_path_to_error` (`.` for the document itself, e.g. a missing field).
///
/// Under `credentials`, serde's own message is left out: it quotes the value
/// it refused (`invalid type: string "<the secret>"`), and a config error is
/// logged. The kind of error and its place in the document stay.
pub(super) fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let path = e.path().to_string();
    let field = if path == "." { String::new() } else { path };
    if field == "credentials" || field.starts_with("credentials.") {
        let inner = e.inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON"
            }
            serde_json::error::Category::Data => "a value of the wrong type or an unknown field",
        };
        return ConfigError::new(
            field,
            format!(
                "invalid JSON configuration: {kind} at line {} column {} (the value is not shown: it may be a secret)",
                inner.line(),
                inner.column()
            ),
        );
    }
    ConfigError::new(field, format!("invalid JSON configuration: {}", e.inner()))
}

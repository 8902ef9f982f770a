//! What the check reports: a finding at a place in Envoy's configuration, and how bad it is.

/// How bad a finding is: an error makes the command exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works, but worth knowing.
    Warning,
    /// Leaks a credential, reaches the private origin unsigned, or breaks delivery.
    Error,
}

/// One thing the check found, at a place in Envoy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub level: Level,
    /// Where, as a path into the configuration (lists indexed by `name` where items have one).
    pub at: String,
    /// What is wrong and what to change.
    pub message: String,
}

/// A finding that makes the command exit 1.
pub(super) fn error(at: &str, message: String) -> Finding {
    Finding {
        level: Level::Error,
        at: at.to_string(),
        message,
    }
}

/// A finding worth knowing that still lets the command pass.
pub(super) fn warning(at: &str, message: String) -> Finding {
    Finding {
        level: Level::Warning,
        at: at.to_string(),
        message,
    }
}

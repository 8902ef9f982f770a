//! Why a credential refresh failed: a stable category for metrics and logs,
//! never a value from the answer. The names of a refresh's results live here,
//! with the failures they name; the metrics import them.

use crate::rotation::parse::ParseError;

/// The `result` label of the credential refresh counter: a success, or the
/// failure's category.
pub const REFRESH_RESULTS: [&str; 9] = [
    "success",
    "dispatch_error",
    "transport",
    "timeout",
    "http_4xx",
    "http_5xx",
    "parse",
    "expired",
    "abandoned",
];

/// Why a refresh through one source failed: a stable category for metrics
/// and logs, never a value from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Envoy refused the call (unknown cluster, bad arguments).
    Dispatch,
    /// No response: reset or connection failure.
    Transport,
    /// 504: the call's timeout (or the cluster's) ran out.
    Timeout,
    /// A 4xx answer (IMDS token refused, STS access denied, bad signature).
    Status4xx,
    /// A 5xx answer other than 504 (503: no healthy upstream).
    Status5xx,
    /// A 2xx answer the parser refused.
    Parse(ParseError),
    /// Credentials that have already expired.
    Expired,
    /// The refreshing worker stopped hearing back (its VM went away).
    Abandoned,
}

impl Failure {
    /// Stable category (the `result` label of the refresh counter).
    pub fn category(self) -> &'static str {
        REFRESH_RESULTS
            .get(usize::from(self.code()))
            .copied()
            .unwrap_or("unknown")
    }

    /// The `last_failure` gauge's value: its index in `REFRESH_RESULTS`.
    pub fn code(self) -> u8 {
        match self {
            Failure::Dispatch => 1,
            Failure::Transport => 2,
            Failure::Timeout => 3,
            Failure::Status4xx => 4,
            Failure::Status5xx => 5,
            Failure::Parse(_) => 6,
            Failure::Expired => 7,
            Failure::Abandoned => 8,
        }
    }

    /// What the log line says: the category, and for a refused answer what
    /// the parser refused (a field's name or the reason, never a value from
    /// the answer: `ParseError` carries none).
    pub fn describe(self) -> String {
        match self {
            Failure::Parse(e) => format!("{} ({e})", self.category()),
            other => other.category().to_string(),
        }
    }

    /// The category of a non-2xx answer (`status`, `body`). Envoy answers a
    /// call it could not deliver itself, with a 503 whose body says so
    /// (connection refused or reset, no healthy host): that is the endpoint
    /// being unreachable, not an answer from it.
    pub(super) fn of_answer(status: u16, body: &[u8]) -> Self {
        const ENVOY_UNREACHABLE: [&[u8]; 2] = [b"upstream connect error", b"no healthy upstream"];
        match status {
            0 => Failure::Transport,
            503 if ENVOY_UNREACHABLE.iter().any(|p| body.starts_with(p)) => Failure::Transport,
            504 => Failure::Timeout,
            400..=499 => Failure::Status4xx,
            _ => Failure::Status5xx,
        }
    }
}

#[cfg(test)]
#[path = "failure_tests.rs"]
mod tests;

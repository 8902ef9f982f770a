use super::*;

/// The log line of a failed refresh: the category, and for a refused
/// answer what was refused, never a value of the answer.
#[test]
fn failures_describe_themselves_without_values() {
    assert_eq!(Failure::Timeout.describe(), "timeout");
    let far = Failure::Parse(ParseError::ExpirationTooFar).describe();
    assert!(far.starts_with("parse (") && far.contains("36 h"), "{far}");
    assert_eq!(
        Failure::Parse(ParseError::Malformed).describe(),
        format!("parse ({})", ParseError::Malformed)
    );
}

/// docs/credentials.md, refresh metrics: the `result` label and the
/// `last_failure` gauge's code of each failure (0 is success).
#[test]
fn failure_categories_and_codes() {
    let all = [
        (Failure::Dispatch, "dispatch_error", 1),
        (Failure::Transport, "transport", 2),
        (Failure::Timeout, "timeout", 3),
        (Failure::Status4xx, "http_4xx", 4),
        (Failure::Status5xx, "http_5xx", 5),
        (Failure::Parse(ParseError::Malformed), "parse", 6),
        (Failure::Expired, "expired", 7),
        (Failure::Abandoned, "abandoned", 8),
    ];
    for (f, category, code) in all {
        assert_eq!((f.category(), f.code()), (category, code), "{f:?}");
        assert_eq!(REFRESH_RESULTS[usize::from(code)], category);
    }
    assert_eq!(REFRESH_RESULTS[0], "success");
}

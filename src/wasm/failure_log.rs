//! The log lines of failed requests: one JSON line per failure, repeated
//! warnings held back (`log_limit`) and summed up on the next tick.

use std::cell::RefCell;

use crate::log_limit::{Kind, LogLimiter, Verdict};
use crate::request::headers::HeaderView;
use crate::request::pipeline::FailureNote;

/// One JSON line per failure: the event, a stable category, the status sent
/// (0 when forwarded), the origin, the method and the request id as correlation
/// id; never a key, signature or URL. Signing failures are warnings, held back
/// to one line per kind and interval (`log_limit`: an outage under load would
/// otherwise write a line per request), the next one saying how many were
/// held back; client mistakes (400, 405) are only logged at debug level.
pub fn log_failure(
    limit: &RefCell<LogLimiter>,
    f: FailureNote<'_>,
    now_ms: u64,
    head: &HeaderView<'_>,
) {
    let level = if f.warn {
        log::Level::Warn
    } else {
        log::Level::Debug
    };
    if !log::log_enabled!(level) {
        return;
    }
    let held_back = if level == log::Level::Debug {
        0
    } else {
        let kind = Kind {
            event: f.event,
            category: f.category,
            origin: f.origin,
        };
        match limit.borrow_mut().check(kind, now_ms) {
            Verdict::Write { held_back } => held_back,
            Verdict::HoldBack => return,
        }
    };
    let mut line = serde_json::json!({
        "event": f.event,
        "category": f.category,
        "status": f.status,
        "origin": f.origin,
        "method": head.method,
        "request_id": head.request_id(),
    });
    if held_back > 0 {
        if let Some(fields) = line.as_object_mut() {
            fields.insert("held_back".into(), held_back.into());
        }
    }
    log::log!(level, "{line}");
}

/// On a tick: one warning per kind whose interval ended with lines held
/// back, saying how many (reported even if no further failure comes).
pub fn log_held_back(limit: &RefCell<LogLimiter>, now_ms: u64) {
    for s in limit.borrow_mut().due(now_ms) {
        let line = serde_json::json!({
            "event": s.event,
            "category": s.category,
            "origin": s.origin,
            "held_back": s.held_back,
        });
        log::warn!("{line}");
    }
}

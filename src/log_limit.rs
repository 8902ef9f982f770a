//! Aggregates repeated failure log lines, so an outage cannot turn the log
//! into a disk-filling flood: every request refused for want of credentials
//! used to write its own warning (173 MB in 40 s under test load). Per kind
//! of line (event, category, origin) the first one of an interval is written
//! with how many like it were held back in the interval before; the rest are
//! counted only (the metrics still count every request). A summary of what
//! was held back is due once the interval ends, so a flood that stops is
//! still reported. Pure: time is an argument.

/// How long the lines of one kind are held back after one is written.
pub const LOG_INTERVAL_MS: u64 = 10_000;

/// Most kinds of line tracked per worker. Kinds are the failure events ×
/// their stable categories × configured origins, so a handful; past this
/// bound a new kind is written every time (never lost, never stored).
pub const MAX_KINDS: usize = 64;

/// One kind of failure line: the event, its category and the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind<'a> {
    /// `presign_rejected` or `presign_fallback`.
    pub event: &'static str,
    /// The stable category.
    pub category: &'static str,
    /// The origin's name.
    pub origin: &'a str,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, saying how many lines like it were held back before it.
    Write {
        /// Lines of this kind held back since the last one written.
        held_back: u64,
    },
    /// Count it only.
    HoldBack,
}

/// A summary of held-back lines whose interval ended with no new line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `presign_rejected` or `presign_fallback`.
    pub event: &'static str,
    /// The stable category.
    pub category: &'static str,
    /// The origin's name.
    pub origin: String,
    /// How many lines were held back.
    pub held_back: u64,
}

#[derive(Debug)]
struct Tracked {
    event: &'static str,
    category: &'static str,
    origin: String,
    /// When the last line of this kind was written (Unix ms).
    written_ms: u64,
    held_back: u64,
}

/// One worker's limiter.
#[derive(Debug, Default)]
pub struct LogLimiter {
    kinds: Vec<Tracked>,
}

impl LogLimiter {
    /// Decides about one line of `kind` at `now_ms`.
    pub fn check(&mut self, kind: Kind<'_>, now_ms: u64) -> Verdict {
        let found = self.kinds.iter_mut().find(|t| {
            t.event == kind.event && t.category == kind.category && t.origin == kind.origin
        });
        match found {
            Some(t) if now_ms < t.written_ms.saturating_add(LOG_INTERVAL_MS) => {
                t.held_back = t.held_back.saturating_add(1);
                Verdict::HoldBack
            }
            Some(t) => {
                t.written_ms = now_ms;
                Verdict::Write {
                    held_back: std::mem::take(&mut t.held_back),
                }
            }
            None => {
                if self.kinds.len() < MAX_KINDS {
                    self.kinds.push(Tracked {
                        event: kind.event,
                        category: kind.category,
                        origin: kind.origin.to_string(),
                        written_ms: now_ms,
                        held_back: 0,
                    });
                }
                Verdict::Write { held_back: 0 }
            }
        }
    }

    /// The kinds whose interval has ended with lines held back: each is
    /// reported once, then starts over (the next line is written at once).
    pub fn due(&mut self, now_ms: u64) -> Vec<Summary> {
        let mut out = Vec::new();
        self.kinds.retain_mut(|t| {
            let ended = now_ms >= t.written_ms.saturating_add(LOG_INTERVAL_MS);
            if ended && t.held_back > 0 {
                out.push(Summary {
                    event: t.event,
                    category: t.category,
                    origin: t.origin.clone(),
                    held_back: t.held_back,
                });
            }
            !ended
        });
        out
    }
}

#[cfg(test)]
#[path = "log_limit_tests.rs"]
mod tests;

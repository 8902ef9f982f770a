use super::*;

const NO_CREDS: Kind<'static> = Kind {
    event: "presign_rejected",
    category: "no_credentials",
    origin: "media",
};

/// One line per kind and interval, the next one saying how many were
/// held back; other kinds (category, origin, event) are independent.
#[test]
fn one_line_per_kind_and_interval() {
    let mut l = LogLimiter::default();
    assert_eq!(l.check(NO_CREDS, 1_000), Verdict::Write { held_back: 0 });
    for ms in [1_001, 5_000, 10_999] {
        assert_eq!(l.check(NO_CREDS, ms), Verdict::HoldBack, "{ms}");
    }
    let other_origin = Kind {
        origin: "uploads",
        ..NO_CREDS
    };
    let other_category = Kind {
        category: "signer",
        ..NO_CREDS
    };
    let other_event = Kind {
        event: "presign_fallback",
        ..NO_CREDS
    };
    for k in [other_origin, other_category, other_event] {
        assert_eq!(l.check(k, 2_000), Verdict::Write { held_back: 0 }, "{k:?}");
    }
    assert_eq!(l.check(NO_CREDS, 11_000), Verdict::Write { held_back: 3 });
    assert_eq!(l.check(NO_CREDS, 11_001), Verdict::HoldBack);
}

/// A flood that stops is still reported: once its interval ends, the
/// held-back count is due once, and the kind starts over.
#[test]
fn held_back_lines_are_summarised_when_the_interval_ends() {
    let mut l = LogLimiter::default();
    l.check(NO_CREDS, 1_000);
    l.check(NO_CREDS, 2_000);
    l.check(NO_CREDS, 3_000);
    let quiet = Kind {
        category: "signer",
        ..NO_CREDS
    };
    l.check(quiet, 1_000);
    assert_eq!(l.due(10_999), []);
    assert_eq!(
        l.due(11_000),
        [Summary {
            event: "presign_rejected",
            category: "no_credentials",
            origin: "media".into(),
            held_back: 2
        }]
    );
    assert_eq!(l.due(20_000), []);
    assert_eq!(l.check(NO_CREDS, 20_001), Verdict::Write { held_back: 0 });
}

/// The tracked kinds are bounded; a kind past the bound is written
/// every time rather than stored.
#[test]
fn tracked_kinds_are_bounded() {
    let mut l = LogLimiter::default();
    let names: Vec<String> = (0..=MAX_KINDS).map(|i| format!("o{i}")).collect();
    for n in &names {
        let k = Kind {
            origin: n,
            ..NO_CREDS
        };
        assert_eq!(l.check(k, 0), Verdict::Write { held_back: 0 });
    }
    assert_eq!(l.kinds.len(), MAX_KINDS);
    let last = Kind {
        origin: &names[MAX_KINDS],
        ..NO_CREDS
    };
    assert_eq!(l.check(last, 1), Verdict::Write { held_back: 0 });
    let first = Kind {
        origin: &names[0],
        ..NO_CREDS
    };
    assert_eq!(l.check(first, 1), Verdict::HoldBack);
}

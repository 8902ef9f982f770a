use super::*;
use crate::config::credentials::{compile, RawCredentials};
use crate::testing::FakeStore;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::time::{Duration, UNIX_EPOCH};

use super::records::Lease;

/// Records the calls dispatched; answers each with the next token, or
/// refuses them all (`None`, as Envoy does for an unknown cluster).
#[derive(Default)]
struct FakeDispatcher {
    calls: RefCell<Vec<Call>>,
    last_token: Cell<u32>,
    refuse: Cell<bool>,
}

impl Dispatcher for FakeDispatcher {
    fn dispatch(&self, call: &Call) -> Option<u32> {
        if self.refuse.get() {
            return None;
        }
        self.calls.borrow_mut().push(call.clone());
        self.last_token.set(self.last_token.get() + 100);
        Some(self.last_token.get())
    }
}

impl FakeDispatcher {
    fn paths(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .map(|c| format!("{} {}", c.cluster, c.get(":path").unwrap_or("")))
            .collect()
    }
}

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A setup from the `credentials` JSON block.
fn setup_of(doc: serde_json::Value) -> Rotating {
    let raw: RawCredentials = serde_json::from_value(doc).unwrap();
    compile(Some(raw), &|_| None).unwrap().rotating.unwrap()
}

/// The container source alone: one 700 ms call, so a 2.7 s lease.
fn container_setup() -> Rotating {
    setup_of(json!({"source": "container",
                        "container": {"relative_uri": "/creds", "timeout_ms": 700}}))
}

/// Container, then IMDS.
fn chain_setup() -> Rotating {
    setup_of(json!({"source": "chain", "chain": ["container", "imds"],
                        "container": {"relative_uri": "/creds", "timeout_ms": 700},
                        "imds": {"timeout_ms": 500}}))
}

/// A container answer: credentials `id` expiring at `expires_ms`.
fn answer(id: &str, expires_ms: u64) -> String {
    format!(
        r#"{{"AccessKeyId":"{id}","SecretAccessKey":"secret-{id}","Token":"token-{id}","Expiration":{}}}"#,
        expires_ms / 1000
    )
}

fn reply(body: &str) -> Reply<'_> {
    Reply {
        status: 200,
        body: body.as_bytes(),
    }
}

const FAILED_500: Reply<'static> = Reply {
    status: 500,
    body: b"",
};

fn key(r: &Refresher, what: &str) -> String {
    format!("{KEY_PREFIX}{}.{what}", r.setup.fingerprint)
}

fn stored_lease(store: &FakeStore, r: &Refresher) -> Option<Lease> {
    let data = store.data.borrow();
    data.get(&key(r, "lease"))
        .and_then(|(b, _)| Lease::decode(b))
}

fn stored_record(store: &FakeStore, r: &Refresher) -> Option<Record> {
    let data = store.data.borrow();
    data.get(&key(r, "current"))
        .and_then(|(b, _)| Record::decode(b))
}

fn stored_status(store: &FakeStore, r: &Refresher) -> Option<Status> {
    let data = store.data.borrow();
    data.get(&key(r, "status"))
        .and_then(|(b, _)| Status::decode(b))
}

/// Worker `r` refreshes at `now_ms` through the container source and
/// gets credentials `id` for an hour.
fn refresh_once(
    r: &mut Refresher,
    store: &FakeStore,
    host: &FakeDispatcher,
    now_ms: u64,
    id: &str,
) {
    let events = r.tick(store, host, at(now_ms));
    assert!(events.iter().all(|e| *e == Event::Adopted), "{events:?}");
    let body = answer(id, now_ms + 3_600_000);
    let events = r.on_reply(host.last_token.get(), reply(&body), store, host, at(now_ms));
    assert_eq!(
        events,
        [
            Event::Refreshed {
                source: "container"
            },
            Event::Adopted
        ]
    );
}

fn record(id: &str, token: Option<&str>, obtained_ms: u64, expires_ms: u64) -> Record {
    Record {
        credentials: Credentials::temporary(
            id.into(),
            format!("secret-{id}"),
            token.map(str::to_string),
            expires_ms,
        ),
        obtained_ms,
        source: "imds".into(),
    }
}

/// Shared data holds exactly what `encode` wrote: a record reads back
/// equal (with or without a session token), and anything else (another
/// magic, cut short, trailing bytes, no key id, no secret, no expiry) is
/// no record at all.
#[test]
fn record_codec_round_trips_and_rejects_garbage() {
    for r in [
        record("ASIA1", Some("tok"), T0, T0 + 3_600_000),
        record("ASIA2", None, 0, 1),
    ] {
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r.clone()));
        assert_eq!(&bytes[..4], b"EPK1");
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Record::decode(&long), None, "trailing byte");
        let mut magic = bytes.clone();
        magic[3] = b'2';
        assert_eq!(Record::decode(&magic), None, "other magic");
    }
    let no_token = Record::decode(&record("A", None, 1, 2).encode()).unwrap();
    assert_eq!(no_token.credentials.session_token(), None);
    for bad in [
        record("", Some("t"), 1, 2),
        Record {
            credentials: Credentials::temporary("A".into(), String::new(), None, 2),
            obtained_ms: 1,
            source: "imds".into(),
        },
        record("A", Some("t"), 1, 0),
    ] {
        assert_eq!(Record::decode(&bad.encode()), None, "{bad:?}");
    }
    assert_eq!(Record::decode(b""), None);
}

/// The shared status and lease read back what was written; anything
/// else is ignored.
#[test]
fn status_and_lease_codecs() {
    let s = Status {
        failures: 3,
        next_attempt_ms: T0 + 4000,
        last_failure: 5,
        last_owner: 7,
    };
    let bytes = s.encode();
    assert_eq!(Status::decode(&bytes), Some(s));
    assert_eq!(&bytes[..4], b"EPS1");
    let l = Lease {
        owner: 7,
        until_ms: T0,
    };
    let lb = l.encode();
    assert_eq!(Lease::decode(&lb), Some(l));
    assert_eq!(&lb[..4], b"EPL1");
    for (good, decode) in [
        (
            bytes,
            (|b: &[u8]| Status::decode(b).is_some()) as fn(&[u8]) -> bool,
        ),
        (lb, |b: &[u8]| Lease::decode(b).is_some()),
    ] {
        for cut in 0..good.len() {
            assert!(!decode(&good[..cut]), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(1);
        assert!(!decode(&long), "trailing byte");
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(!decode(&magic), "other magic");
    }
    // A status under a lease's magic and the reverse.
    assert_eq!(Status::decode(&l.encode()), None);
    assert_eq!(Lease::decode(&s.encode()), None);
}

/// docs/credentials.md, refresh: due `before` ahead of expiry, but never before
/// half-way through the credentials' life, and in any case a tick
/// before they stop signing.
#[test]
fn refresh_is_due_before_expiry_or_at_half_life() {
    let hour = record("A", None, T0, T0 + 3_600_000);
    assert_eq!(hour.refresh_at_ms(900_000, 61_000), T0 + 2_700_000);
    let minute = record("A", None, T0, T0 + 60_000);
    assert_eq!(minute.refresh_at_ms(900_000, 1_000), T0 + 30_000);
    let short = record("A", None, T0, T0 + 10_001);
    assert_eq!(short.refresh_at_ms(900_000, 0), T0 + 5_001);
    // Credentials that stop signing 40 s before their expiry, half-way
    // through a minute: refreshed a tick before they stop, at 19 s.
    assert_eq!(minute.stops_at_ms(40_000), T0 + 20_000);
    assert_eq!(minute.refresh_at_ms(900_000, 40_000), T0 + 19_000);
    assert_eq!(hour.refresh_at_ms(900_000, 1_000_000), T0 + 2_599_000);
}

/// docs/credentials.md, refresh back-off: doubling from retry_min_ms to
/// retry_max_ms, spread by up to a quarter either way.
#[test]
fn backoff_doubles_is_capped_and_spread() {
    // A seed of a quarter lands in the middle: the unspread delay.
    assert_eq!(backoff_ms(0, 1000, 30_000, 250), 1000);
    assert_eq!(backoff_ms(1, 1000, 30_000, 250), 1000);
    assert_eq!(backoff_ms(2, 1000, 30_000, 500), 2000);
    assert_eq!(backoff_ms(3, 1000, 30_000, 1000), 4000);
    assert_eq!(backoff_ms(5, 1000, 30_000, 4000), 16_000);
    assert_eq!(backoff_ms(6, 1000, 30_000, 7500), 30_000);
    assert_eq!(backoff_ms(u32::MAX, 1000, 30_000, 7500), 30_000);
    assert_eq!(
        backoff_ms(40, u64::MAX / 2, u64::MAX, 0),
        u64::MAX - u64::MAX / 4
    );
    // The spread's bounds: base - quarter ..= base + quarter.
    assert_eq!(backoff_ms(3, 1000, 30_000, 0), 3000);
    assert_eq!(backoff_ms(3, 1000, 30_000, 2000), 5000);
    assert_eq!(backoff_ms(3, 1000, 30_000, 2001), 3000);
    for seed in 0..5000 {
        let d = backoff_ms(3, 1000, 30_000, seed);
        assert!((3000..=5000).contains(&d), "{seed}: {d}");
    }
    // Too small to spread; never 0.
    assert_eq!(backoff_ms(1, 3, 30_000, 12_345), 3);
    assert_eq!(backoff_ms(1, 0, 0, 9), 1);
}

/// docs/credentials.md, refresh: with no credentials a worker refreshes at once,
/// stores the result for every worker, resets the status and frees the
/// lease; the shared keys are named by the setup's fingerprint.
#[test]
fn a_refresh_stores_the_credentials_and_frees_the_lease() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    assert!(r.current().is_none());
    assert_eq!(r.tick(&store, &host, at(T0)), []);
    assert_eq!(host.paths(), ["presign_container /creds"]);
    assert_eq!(
        stored_lease(&store, &r),
        Some(Lease {
            owner: 1,
            until_ms: T0 + 2_700
        })
    );
    let body = answer("ASIA1", T0 + 3_600_000);
    let events = r.on_reply(100, reply(&body), &store, &host, at(T0 + 5));
    assert_eq!(
        events,
        [
            Event::Refreshed {
                source: "container"
            },
            Event::Adopted
        ]
    );
    let want = Record {
        credentials: Credentials::temporary(
            "ASIA1".into(),
            "secret-ASIA1".into(),
            Some("token-ASIA1".into()),
            T0 + 3_600_000,
        ),
        obtained_ms: T0 + 5,
        source: "container".into(),
    };
    assert_eq!(r.current(), Some(&want));
    assert_eq!(stored_record(&store, &r), Some(want));
    assert_eq!(
        stored_status(&store, &r),
        Some(Status {
            last_owner: 1,
            ..Status::default()
        })
    );
    assert_eq!(
        stored_lease(&store, &r),
        Some(Lease {
            owner: 0,
            until_ms: 0
        })
    );
    let mut keys: Vec<String> = store.data.borrow().keys().cloned().collect();
    keys.sort();
    let fp = &r.setup.fingerprint;
    assert_eq!(
        keys,
        [
            format!("envoy_presign.cred.{fp}.current"),
            format!("envoy_presign.cred.{fp}.lease"),
            format!("envoy_presign.cred.{fp}.status"),
        ]
    );
    // Not due again until 900 s before expiry: ticks do nothing.
    assert_eq!(r.tick(&store, &host, at(T0 + 2_699_999)), []);
    assert_eq!(host.calls.borrow().len(), 1);
    assert_eq!(r.tick(&store, &host, at(T0 + 2_700_000)), []);
    assert_eq!(host.calls.borrow().len(), 2, "due at refresh_at_ms");
}

/// docs/credentials.md, refresh: only one worker refreshes at a time (the lease);
/// every other worker adopts the result from shared data on its next
/// tick, and does not refresh again.
#[test]
fn two_workers_one_refresh() {
    let store = FakeStore::default();
    let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let mut b = Refresher::new(container_setup(), 2).prepared(&store);
    assert_eq!(a.tick(&store, &ha, at(T0)), []);
    assert_eq!(b.tick(&store, &hb, at(T0)), []);
    assert_eq!(b.tick(&store, &hb, at(T0 + 1000)), []);
    assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
    let body = answer("ASIA1", T0 + 3_600_000);
    a.on_reply(100, reply(&body), &store, &ha, at(T0 + 1000));
    assert!(b.current().is_none());
    assert_eq!(b.tick(&store, &hb, at(T0 + 2000)), [Event::Adopted]);
    assert_eq!(b.current(), a.current());
    assert_eq!(b.tick(&store, &hb, at(T0 + 3000)), [], "adopted once");
    assert_eq!(a.tick(&store, &ha, at(T0 + 3000)), [], "its own is no news");
    assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
    // The same credentials written again (another CAS) are not news
    // either; new ones are.
    let bytes = stored_record(&store, &a).unwrap().encode();
    store.put(&key(&a, "current"), &bytes);
    assert_eq!(b.tick(&store, &hb, at(T0 + 4000)), []);
    let newer = record("ASIA2", Some("t2"), T0 + 4000, T0 + 7_200_000);
    store.put(&key(&a, "current"), &newer.encode());
    assert_eq!(b.tick(&store, &hb, at(T0 + 5000)), [Event::Adopted]);
    assert_eq!(b.current(), Some(&newer));
    // Garbage under the key is ignored: the worker keeps what it has.
    store.put(&key(&a, "current"), b"EPK1garbage");
    assert_eq!(b.tick(&store, &hb, at(T0 + 6000)), []);
    assert_eq!(b.current(), Some(&newer));
}

/// docs/credentials.md, refresh: a failed refresh never replaces the stored
/// credentials; the failure and the retry delay are shared, so no other
/// worker retries before `next_attempt`, and then one does.
#[test]
fn failures_keep_the_credentials_and_share_the_back_off() {
    let store = FakeStore::default();
    let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let mut b = Refresher::new(container_setup(), 2).prepared(&store);
    refresh_once(&mut a, &store, &ha, T0, "ASIA1");
    b.tick(&store, &hb, at(T0));
    let good = a.current().cloned().unwrap();
    // Due 900 s before expiry; worker A's call fails with a 500.
    let due = T0 + 2_700_000;
    assert_eq!(a.tick(&store, &ha, at(due)), []);
    let events = a.on_reply(200, FAILED_500, &store, &ha, at(due));
    let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ due);
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Status5xx
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert!((750..=1250).contains(&retry_in_ms));
    let shared = Status {
        failures: 1,
        next_attempt_ms: due + retry_in_ms,
        last_failure: 5,
        last_owner: 1,
    };
    assert_eq!(a.status(), shared);
    assert_eq!(stored_status(&store, &a), Some(shared));
    assert_eq!(a.current(), Some(&good));
    assert_eq!(stored_record(&store, &a), Some(good.clone()));
    assert_eq!(stored_lease(&store, &a).map(|l| l.owner), Some(0), "freed");
    // Worker B reads the shared status and waits for next_attempt.
    assert_eq!(b.tick(&store, &hb, at(due + 1)), []);
    assert_eq!(b.status(), shared);
    assert_eq!(b.tick(&store, &hb, at(shared.next_attempt_ms - 1)), []);
    assert!(hb.calls.borrow().is_empty());
    assert_eq!(b.current(), Some(&good));
    // At next_attempt it retries, and a second failure doubles the delay.
    let t = shared.next_attempt_ms;
    assert_eq!(b.tick(&store, &hb, at(t)), []);
    assert_eq!(hb.calls.borrow().len(), 1);
    let events = b.on_reply(
        100,
        Reply {
            status: 0,
            body: b"",
        },
        &store,
        &hb,
        at(t),
    );
    let retry_in_ms = backoff_ms(2, 1000, 30_000, 2 ^ t);
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Transport
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert!((1500..=2500).contains(&retry_in_ms));
    assert_eq!(
        stored_status(&store, &b),
        Some(Status {
            failures: 2,
            next_attempt_ms: t + retry_in_ms,
            last_failure: 2,
            last_owner: 2,
        })
    );
    // A success resets the status.
    let t = t + retry_in_ms;
    refresh_once(&mut a, &store, &ha, t, "ASIA2");
    assert_eq!(
        stored_status(&store, &a),
        Some(Status {
            last_owner: 1,
            ..Status::default()
        })
    );
    assert_eq!(
        a.status(),
        Status {
            last_owner: 1,
            ..Status::default()
        }
    );
}

/// docs/credentials.md, refresh back-off: workers that fail at the same moment do
/// not retry together (the spread is seeded by the worker).
#[test]
fn workers_failing_together_retry_apart() {
    // Odd, and with the owners' bits set: `owner ^ now` is neither
    // `owner | now` nor `owner & now`.
    let now = T0 + 3;
    let mut delays = Vec::new();
    for owner in [1u64, 2] {
        let spread = |seed| backoff_ms(1, 1000, 30_000, seed);
        assert_ne!(spread(owner ^ now), spread(owner | now));
        assert_ne!(spread(owner ^ now), spread(owner & now));
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        host.refuse.set(true);
        let mut r = Refresher::new(container_setup(), owner).prepared(&store);
        let events = r.tick(&store, &host, at(now));
        let Some(Event::GaveUp { retry_in_ms }) = events.last() else {
            panic!("{events:?}")
        };
        assert_eq!(*retry_in_ms, backoff_ms(1, 1000, 30_000, owner ^ now));
        delays.push(*retry_in_ms);
    }
    assert_ne!(delays[0], delays[1]);
}

/// docs/credentials.md, chain: the chain's first configured entry is the only
/// source asked. When it fails, the refresh gives up with the shared
/// back-off (the last good credentials, if any, keep signing) and the
/// same source is asked again once the back-off ends; the next entry is
/// never tried (the review's finding: one STS timeout used to switch the
/// filter to the node's role for hours).
#[test]
fn a_failing_source_is_retried_never_replaced() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
    r.mark_serving();
    assert_eq!(r.tick(&store, &host, at(T0)), []);
    let events = r.on_reply(
        100,
        Reply {
            status: 503,
            body: b"",
        },
        &store,
        &host,
        at(T0),
    );
    let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ T0);
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Status5xx
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert_eq!(host.paths(), ["presign_container /creds"]);
    assert_eq!(r.status().last_failure, Failure::Status5xx.code());
    assert!(r.current().is_none() && stored_record(&store, &r).is_none());
    // Nothing before the back-off ends; then the same source again.
    assert_eq!(r.tick(&store, &host, at(T0 + retry_in_ms - 1)), []);
    assert_eq!(host.paths().len(), 1);
    assert_eq!(r.tick(&store, &host, at(T0 + retry_in_ms)), []);
    assert_eq!(
        host.paths(),
        ["presign_container /creds", "presign_container /creds"]
    );
    let later = T0 + retry_in_ms;
    let events = r.on_reply(
        200,
        reply(&answer("ASIACONT", later + 3_600_000)),
        &store,
        &host,
        at(later),
    );
    assert_eq!(
        events,
        [
            Event::Refreshed {
                source: "container"
            },
            Event::Adopted
        ]
    );
    assert_eq!(r.current().unwrap().source, "container");
    assert_eq!(r.status().failures, 0);
}

/// docs/credentials.md, refresh metrics: a call Envoy refuses to dispatch (unknown
/// cluster) counts as `dispatch_error`, and the refresh gives up.
#[test]
fn a_refused_dispatch_is_a_dispatch_failure() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    host.refuse.set(true);
    let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
    let events = r.tick(&store, &host, at(T0));
    let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ T0);
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Dispatch
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert_eq!(
        r.status(),
        Status {
            failures: 1,
            next_attempt_ms: T0 + retry_in_ms,
            last_failure: 1,
            last_owner: 1,
        }
    );
    assert_eq!(stored_lease(&store, &r).map(|l| l.owner), Some(0));
}

/// docs/credentials.md, refresh: a call that never comes back is abandoned once
/// the lease has run out (and counted), so no worker waits forever; a
/// late answer is then ignored. An answer with another token is not
/// this refresh's.
#[test]
fn unanswered_calls_are_abandoned_and_stray_answers_ignored() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    r.tick(&store, &host, at(T0));
    let body = answer("ASIA1", T0 + 3_600_000);
    assert_eq!(r.on_reply(999, reply(&body), &store, &host, at(T0)), []);
    assert!(r.current().is_none());
    // Still waiting until the lease's end (2.7 s), not after.
    assert_eq!(r.tick(&store, &host, at(T0 + 2_700)), []);
    assert_eq!(host.calls.borrow().len(), 1);
    let events = r.tick(&store, &host, at(T0 + 2_701));
    let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ (T0 + 2_701));
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Abandoned
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert_eq!(r.status().last_failure, 8);
    assert_eq!(
        r.on_reply(100, reply(&body), &store, &host, at(T0 + 2_800)),
        []
    );
    assert!(r.current().is_none());
    // The right token, in time, is taken.
    let store = FakeStore::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    r.tick(&store, &host, at(T0));
    let token = host.last_token.get();
    assert_eq!(
        r.on_reply(token + 1, reply(&body), &store, &host, at(T0)),
        []
    );
    assert_eq!(
        r.on_reply(token, reply(&body), &store, &host, at(T0)).len(),
        2
    );
}

/// A serving VM's heartbeat lasts SERVING_HEARTBEAT_MS (5 s) and is
/// renewed once half of it has passed, so ticking every second it never
/// lapses, and is written every few ticks rather than on each.
#[test]
fn a_serving_vms_heartbeat_never_lapses_and_is_renewed_past_half_life() {
    assert_eq!(SERVING_HEARTBEAT_MS, 5_000);
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    r.mark_serving();
    let serving = key(&r, "serving");
    let stored = |s: &FakeStore| {
        s.data
            .borrow()
            .get(&serving)
            .map(|(v, _)| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
    };
    r.tick(&store, &host, at(T0));
    assert_eq!(stored(&store), Some(T0 + 5_000));
    for s in 1..=2 {
        r.tick(&store, &host, at(T0 + s * 1_000));
        assert_eq!(stored(&store), Some(T0 + 5_000), "renewed at +{s} s");
    }
    r.tick(&store, &host, at(T0 + 3_000));
    assert_eq!(
        stored(&store),
        Some(T0 + 8_000),
        "not renewed past half its life"
    );
    // A VM that serves nothing is never written down as serving.
    let store = FakeStore::default();
    let mut idle = Refresher::new(container_setup(), 2).prepared(&store);
    idle.tick(&store, &host, at(T0));
    assert_eq!(stored(&store), None);
}

/// The failed-refresh line says what is true then: signing with the
/// last good credentials (and for how long), or no longer (the review
/// saw "while they last" after they had stopped), or none yet.
#[test]
fn the_state_line_says_what_is_true_now() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    assert_eq!(
        r.state_at(T0),
        "no credentials yet: matched requests get 503 credentials_unavailable"
    );
    refresh_once(&mut r, &store, &host, T0, "ASIA1");
    let stops = r
        .current()
        .unwrap()
        .stops_at_ms(container_setup().refresh.stops_signing_ms);
    assert_eq!(
        r.state_at(stops - 1_000),
        "signing with the last good credentials for 1 s more"
    );
    assert_eq!(
        r.state_at(stops),
        "the last credentials no longer sign: matched requests get 503 credentials_unavailable"
    );
}

/// docs/configuration.md, the 503 credentials_unavailable reply: `Retry-After` is
/// the time to the next refresh attempt in whole seconds, at least 1.
#[test]
fn retry_after_is_the_wait_for_the_next_attempt() {
    let mut r = Refresher::new(container_setup(), 1);
    assert_eq!(r.retry_after_secs(at(T0)), 1, "no failure yet");
    r.status.next_attempt_ms = T0 + 2_500;
    assert_eq!(r.retry_after_secs(at(T0)), 3);
    assert_eq!(r.retry_after_secs(at(T0 + 1_500)), 1);
    assert_eq!(r.retry_after_secs(at(T0 + 1_499)), 2);
    assert_eq!(r.retry_after_secs(at(T0 + 9_000)), 1);
    r.status.next_attempt_ms = u64::MAX;
    assert_eq!(r.retry_after_secs(at(0)), u32::MAX);
}

/// docs/credentials.md, refresh: when the refreshing worker goes away, its lease
/// lapses and another worker takes over; a live lease is never taken,
/// and the holder may renew its own.
#[test]
fn a_lapsed_lease_is_taken_over() {
    let store = FakeStore::default();
    let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let mut b = Refresher::new(container_setup(), 2).prepared(&store);
    a.tick(&store, &ha, at(T0)); // and never hears back
    assert_eq!(b.tick(&store, &hb, at(T0 + 2_699)), []);
    assert!(hb.calls.borrow().is_empty());
    assert_eq!(b.tick(&store, &hb, at(T0 + 2_700)), []);
    assert_eq!(hb.calls.borrow().len(), 1, "the lease ran out at until_ms");
    assert_eq!(
        stored_lease(&store, &b),
        Some(Lease {
            owner: 2,
            until_ms: T0 + 5_400
        })
    );
    let body = answer("ASIA1", T0 + 3_600_000);
    let events = b.on_reply(
        hb.last_token.get(),
        reply(&body),
        &store,
        &hb,
        at(T0 + 2_800),
    );
    assert_eq!(events.len(), 2);
    // Worker A, alive after all, adopts B's credentials and counts its
    // own call as abandoned, but B's success stands: no shared failure,
    // no back-off.
    assert_eq!(
        a.tick(&store, &ha, at(T0 + 2_900)),
        [
            Event::Adopted,
            Event::Failed {
                source: "container",
                failure: Failure::Abandoned
            }
        ]
    );
    assert_eq!(
        stored_status(&store, &a),
        Some(Status {
            last_owner: 2,
            ..Status::default()
        })
    );
    assert_eq!(
        a.status(),
        Status {
            last_owner: 2,
            ..Status::default()
        }
    );
    assert_eq!(a.current(), b.current());
    // The same when B's refresh failed: its back-off is not doubled.
    let store = FakeStore::default();
    let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let mut b = Refresher::new(container_setup(), 2).prepared(&store);
    a.tick(&store, &ha, at(T0));
    b.tick(&store, &hb, at(T0 + 2_700));
    let events = b.on_reply(hb.last_token.get(), FAILED_500, &store, &hb, at(T0 + 2_800));
    assert_eq!(events.len(), 2);
    let after_b = stored_status(&store, &b).unwrap();
    assert_eq!(after_b.failures, 1);
    assert_eq!(a.tick(&store, &ha, at(T0 + 2_900)).len(), 1);
    assert_eq!(stored_status(&store, &a), Some(after_b));
    // A worker whose own lease is still recorded (its release was lost)
    // may take it again.
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut c = Refresher::new(container_setup(), 3).prepared(&store);
    let own = Lease {
        owner: 3,
        until_ms: T0 + 60_000,
    };
    store.put(&key(&c, "lease"), &own.encode());
    c.tick(&store, &host, at(T0));
    assert_eq!(host.calls.borrow().len(), 1);
    // A store that refuses reads: nobody refreshes.
    let store = FakeStore::default();
    store.fail_gets.set(true);
    let host = FakeDispatcher::default();
    assert_eq!(
        Refresher::new(container_setup(), 4)
            .prepared(&store)
            .tick(&store, &host, at(T0)),
        []
    );
    assert!(host.calls.borrow().is_empty());
}

/// docs/credentials.md, refresh: credentials are shared per setup (its
/// fingerprint): a record, status or lease of another configuration is
/// never adopted nor obeyed.
#[test]
fn another_setups_records_are_never_used() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let other = setup_of(json!({"source": "container",
                                    "container": {"relative_uri": "/other", "timeout_ms": 700}}));
    let mine = container_setup();
    assert_ne!(other.fingerprint, mine.fingerprint);
    let theirs = Refresher::new(other, 9).prepared(&store);
    let rec = record("ASIAOTHER", Some("t"), T0, T0 + 3_600_000);
    store.put(&key(&theirs, "current"), &rec.encode());
    let busy = Lease {
        owner: 9,
        until_ms: T0 + 60_000,
    };
    store.put(&key(&theirs, "lease"), &busy.encode());
    let waiting = Status {
        failures: 4,
        next_attempt_ms: T0 + 60_000,
        last_failure: 4,
        last_owner: 2,
    };
    store.put(&key(&theirs, "status"), &waiting.encode());
    let mut r = Refresher::new(mine, 1).prepared(&store);
    assert_eq!(r.tick(&store, &host, at(T0)), []);
    assert!(r.current().is_none());
    assert_eq!(r.status(), Status::default());
    assert_eq!(host.paths(), ["presign_container /creds"]);
}

/// docs/credentials.md, Rotating credentials: Envoy's main-thread VM serves no
/// request and cannot reach an internal listener. Once a VM has served
/// one, only serving VMs refresh; in an idle Envoy a VM whose own attempt
/// failed lets the others take the next turn.
#[test]
fn once_workers_serve_only_they_refresh_and_idle_vms_take_turns() {
    let store = FakeStore::default();
    let (h1, h2) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut main = Refresher::new(container_setup(), 1).prepared(&store);
    let mut worker = Refresher::new(container_setup(), 2).prepared(&store);
    // Idle: the main VM may try first; it fails.
    assert_eq!(main.tick(&store, &h1, at(T0)), []);
    let events = main.on_reply(h1.last_token.get(), FAILED_500, &store, &h1, at(T0));
    assert!(
        matches!(events.last(), Some(Event::GaveUp { .. })),
        "{events:?}"
    );
    let next = main.status().next_attempt_ms;
    // Its next turn goes to another VM: it stands aside while it failed last.
    assert_eq!(main.tick(&store, &h1, at(next)), []);
    assert_eq!(h1.calls.borrow().len(), 1);
    assert_eq!(worker.tick(&store, &h2, at(next)), []);
    assert_eq!(h2.calls.borrow().len(), 1);
    let events = worker.on_reply(h2.last_token.get(), FAILED_500, &store, &h2, at(next));
    assert!(
        matches!(events.last(), Some(Event::GaveUp { .. })),
        "{events:?}"
    );
    // Now the worker failed last: the main VM may try again.
    let next = worker.status().next_attempt_ms;
    main.tick(&store, &h1, at(next));
    assert_eq!(h1.calls.borrow().len(), 2);
    main.on_reply(h1.last_token.get(), FAILED_500, &store, &h1, at(next));
    // Once a worker has served a request, the main VM never refreshes again,
    // while the serving worker may whoever failed last.
    worker.mark_serving();
    let next = main.status().next_attempt_ms + 60_000;
    worker.tick(&store, &h2, at(next - 1));
    assert!(store.data.borrow().contains_key(&key(&worker, "serving")));
    let mut main2 = Refresher::new(container_setup(), 3).prepared(&store);
    assert_eq!(main2.tick(&store, &h1, at(next)), []);
    assert_eq!(main.tick(&store, &h1, at(next)), []);
    assert_eq!(h1.calls.borrow().len(), 2, "{:?}", h1.paths());
    worker.tick(&store, &h2, at(next));
    assert_eq!(h2.calls.borrow().len(), 2);
    let body = answer("ASIA9", next + 3_600_000);
    worker.on_reply(h2.last_token.get(), reply(&body), &store, &h2, at(next));
    assert_eq!(worker.status().last_owner, 2);
    // The others adopt what it stored.
    assert_eq!(main.tick(&store, &h1, at(next + 1)), [Event::Adopted]);
    assert_eq!(main.current(), worker.current());
}

/// docs/credentials.md, Rotating credentials: a request catches up with shared data
/// while its worker has no credentials that sign, and reads nothing
/// while they do (a refresh is due before they stop; the tick adopts it).
#[test]
fn catch_up_reads_shared_data_only_while_nothing_signs() {
    let store = FakeStore::default();
    let ha = FakeDispatcher::default();
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let mut b = Refresher::new(container_setup(), 2).prepared(&store);
    assert!(!b.catch_up(&store, at(T0)), "nothing stored yet");
    refresh_once(&mut a, &store, &ha, T0, "ASIA1");
    assert!(b.catch_up(&store, at(T0 + 1)), "missing: adopts at once");
    assert_eq!(b.current(), a.current());
    assert!(!b.catch_up(&store, at(T0 + 2)), "unchanged");
    // While they sign, shared data is not read (a failing store shows any
    // read), even with a refresh due and done by another worker.
    let due = T0 + 2_700_000;
    refresh_once(&mut a, &store, &ha, due, "ASIA2");
    store.fail_gets.set(true);
    let stops = b
        .current()
        .unwrap()
        .stops_at_ms(container_setup().refresh.stops_signing_ms);
    assert_eq!(stops, T0 + 3_600_000 - 61_000);
    assert!(!b.catch_up(&store, at(stops - 1)));
    store.fail_gets.set(false);
    assert!(!b.catch_up(&store, at(stops - 1)));
    // Once they stop signing, a request adopts what is stored.
    assert!(b.catch_up(&store, at(stops)));
    assert_eq!(
        b.current().map(|r| r.credentials.access_key_id()),
        Some("ASIA2")
    );
}

/// docs/credentials.md, Rotating credentials: credentials that would not even sign
/// (less than `expiry_margin` + `min_remaining` + 1 s left) are no
/// success: counted `expired`, the refresh gives up, the last good stay.
#[test]
fn credentials_too_short_to_sign_are_a_failure() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
    refresh_once_chain_first(&mut r, &store, &host, T0, "ASIA1", 3_600_000);
    let good = r.current().cloned();
    let due = T0 + 2_700_000;
    r.tick(&store, &host, at(due));
    // 61 s is when signing stops with the 60 s margin: 61 s of life is too short.
    let body = answer("ASIA2", due + 61_000);
    let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(due));
    let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ due);
    assert_eq!(
        events,
        [
            Event::Failed {
                source: "container",
                failure: Failure::Expired
            },
            Event::GaveUp { retry_in_ms }
        ]
    );
    assert_eq!(
        host.paths().last().map(String::as_str),
        Some("presign_container /creds")
    );
    assert_eq!(r.current().cloned(), good);
    assert_eq!(stored_record(&store, &r), good);
}

/// Worker `r` refreshes through the chain's first source (container).
fn refresh_once_chain_first(
    r: &mut Refresher,
    store: &FakeStore,
    host: &FakeDispatcher,
    now_ms: u64,
    id: &str,
    life_ms: u64,
) {
    r.tick(store, host, at(now_ms));
    let body = answer(id, now_ms + life_ms);
    let events = r.on_reply(host.last_token.get(), reply(&body), store, host, at(now_ms));
    assert!(events.contains(&Event::Adopted), "{events:?}");
}

/// The lease key does not exist before the first refresh, and a write
/// creates a missing key whatever the CAS: a VM that read "no key" just
/// before another created and claimed it would wipe that claim when it
/// creates the key in turn, and both would refresh (the review's finding).
/// So a VM that creates the key, or first finds it, claims nothing on
/// that look: it claims from its next one, with a true CAS, and a stale
/// creation that lands in between wipes no claim.
#[test]
fn the_first_lease_has_one_winner() {
    let store = FakeStore::default();
    let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1);
    let mut b = Refresher::new(container_setup(), 2);
    // Both start with no key: A creates it, B finds it; neither claims.
    assert_eq!(a.tick(&store, &ha, at(T0)), []);
    assert_eq!(b.tick(&store, &hb, at(T0)), []);
    assert!(ha.calls.borrow().is_empty() && hb.calls.borrow().is_empty());
    // A third VM read "no key" before A created it: its creation lands now.
    let free = Lease {
        owner: 0,
        until_ms: 0,
    };
    store.put(&key(&a, "lease"), &free.encode());
    // A tick later they race: one claims, the other finds the claim.
    a.tick(&store, &ha, at(T0 + 1_000));
    b.tick(&store, &hb, at(T0 + 1_000));
    assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
    assert_eq!(stored_lease(&store, &b).map(|l| l.owner), Some(1));
    // Interleaved at the very claim: B claims between A's read and A's
    // compare-and-swap, so A's CAS fails. Still one winner.
    let store = FakeStore::default();
    let ha = FakeDispatcher::default();
    let hb = std::rc::Rc::new(FakeDispatcher::default());
    let mut a = Refresher::new(container_setup(), 1).prepared(&store);
    let b = std::rc::Rc::new(RefCell::new(
        Refresher::new(container_setup(), 2).prepared(&store),
    ));
    let (b2, hb2) = (std::rc::Rc::clone(&b), std::rc::Rc::clone(&hb));
    *store.interleave.borrow_mut() = Some(Box::new(move |s: &FakeStore| {
        b2.borrow_mut().tick(s, &*hb2, at(T0));
    }));
    a.tick(&store, &ha, at(T0));
    assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (0, 1));
    // With the store refusing reads nothing is claimed at all.
    let store = FakeStore::default();
    let mut c = Refresher::new(container_setup(), 3).prepared(&store);
    store.fail_gets.set(true);
    let hc = FakeDispatcher::default();
    c.tick(&store, &hc, at(T0));
    assert!(hc.calls.borrow().is_empty());
}

/// After a configuration reload the serving VMs are replaced by new ones
/// that have served nothing yet: once the old ones' heartbeat lapses,
/// the new VMs refresh without waiting for a request (the review's
/// finding: an idle Envoy answered its first requests 503 once the
/// credentials ran out). While a serving VM's heartbeat is current, a
/// VM that serves nothing stands aside.
#[test]
fn refreshes_go_on_after_a_reload_without_traffic() {
    let store = FakeStore::default();
    let (h_old, h_new) = (FakeDispatcher::default(), FakeDispatcher::default());
    let mut old = Refresher::new(container_setup(), 1).prepared(&store);
    old.mark_serving();
    refresh_once(&mut old, &store, &h_old, T0, "ASIA1");
    // The reload: a new VM of the same setup, serving nothing yet.
    let mut new = Refresher::new(container_setup(), 2).prepared(&store);
    let due = T0 + 2_700_000;
    old.tick(&store, &h_old, at(due - 1_000)); // the old VM's last heartbeat
    assert_eq!(new.tick(&store, &h_new, at(due)), [Event::Adopted]);
    assert!(
        h_new.calls.borrow().is_empty(),
        "a serving VM's heartbeat is current"
    );
    // The old VM is gone: past its heartbeat, the new VM refreshes.
    let lapsed = due - 1_000 + SERVING_HEARTBEAT_MS;
    new.tick(&store, &h_new, at(lapsed));
    assert_eq!(h_new.paths(), ["presign_container /creds"]);
}

/// An answer that comes after the lease lapsed is the abandoned call's:
/// reported as such, and nothing of it is stored.
#[test]
fn an_answer_after_the_lease_is_abandoned() {
    let store = FakeStore::default();
    let host = FakeDispatcher::default();
    let mut r = Refresher::new(container_setup(), 1).prepared(&store);
    r.tick(&store, &host, at(T0));
    let late = T0 + container_setup().refresh.lease_ms + 1;
    let body = answer("ASIA1", late + 3_600_000);
    let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(late));
    assert_eq!(
        events.first(),
        Some(&Event::Failed {
            source: "container",
            failure: Failure::Abandoned
        })
    );
    assert_eq!(r.current(), None);
    assert_eq!(stored_record(&store, &r), None);
    // Up to the lease's last millisecond the answer counts, as `tick`
    // still waits for it then.
    let store = FakeStore::default();
    let mut r = Refresher::new(container_setup(), 2).prepared(&store);
    r.tick(&store, &host, at(T0));
    let last = T0 + container_setup().refresh.lease_ms;
    assert_eq!(r.tick(&store, &host, at(last)), []);
    let body = answer("ASIA2", last + 3_600_000);
    let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(last));
    assert_eq!(
        events.first(),
        Some(&Event::Refreshed {
            source: "container"
        })
    );
}

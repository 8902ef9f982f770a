use super::*;
use crate::cache::Entry;
use crate::testing::FakeStore;

fn entry(origin: &str, path: &str, expires_at_ms: u64) -> Vec<u8> {
    Entry {
        signed_at_ms: 0,
        expires_at_ms,
        claim_until_ms: 0,
        identity: format!("v1\n{origin}\nrest"),
        path: path.into(),
    }
    .encode()
}

/// Origins a and b serve entries with at least 100 ms left.
fn min_remaining(origin: &str) -> Option<u64> {
    matches!(origin, "a" | "b").then_some(100)
}

fn tick_at(owner: u64, now_ms: u64, max_entries: u32) -> ScanTick<'static> {
    ScanTick {
        owner,
        now_ms,
        hold_ms: 3000,
        max_entries,
        scan_interval_secs: 2,
        min_remaining: &min_remaining,
    }
}

#[test]
fn scan_counts_only_servable_entries_per_origin() {
    let store = FakeStore::default();
    store.put(&slot_key(0), &entry("a", "/x", 10_000));
    store.put(&slot_key(3), &entry("b", "/yy", 10_000));
    store.put(&slot_key(4), &entry("a", "/z", 10_100));
    store.put(&slot_key(5), b"corrupt");
    store.put(&slot_key(1), &entry("a", "/expired", 9_000));
    store.put(&slot_key(2), &entry("a", "/too-late", 10_099));
    store.put(&slot_key(6), &entry("gone", "/removed-origin", 99_999));
    store.put(&slot_key(99), &entry("a", "/outside", 99_999));
    let mut s = Scanner::default();
    assert_eq!(s.step(&store, 8, 4, 10_000, &min_remaining), None);
    let t = s.step(&store, 8, 4, 10_000, &min_remaining).unwrap();
    assert_eq!(t["a"].0, 1, "only /z has 100 ms left at 10,000");
    assert!(!t.contains_key("b"), "b's entry has 0 ms left");
    assert!(!t.contains_key("gone"));
    let bytes_z = (entry("a", "/z", 10_100).len() + slot_key(4).len()) as u64;
    assert_eq!(t["a"].1, bytes_z);
    // Earlier, everything of a and b was live: the gauges fall as entries expire.
    let t = s.step(&store, 8, 8, 0, &min_remaining).unwrap();
    assert_eq!((t["a"].0, t["b"].0), (4, 1));
}

#[test]
fn lease_is_exclusive_until_it_lapses() {
    let store = FakeStore::default();
    assert!(try_lease(&store, 1, 1000, 3000));
    assert!(!try_lease(&store, 2, 2000, 3000));
    assert!(try_lease(&store, 1, 2000, 3000), "the owner renews");
    assert!(
        try_lease(&store, 2, 5001, 3000),
        "a lapsed lease is taken over"
    );
    assert!(!try_lease(&store, 1, 5002, 3000));
    store.put(SCAN_LEASE_KEY, b"bad");
    assert!(try_lease(&store, 3, 0, 1), "a garbled lease is free");
}

/// A lease taken at `now` for `hold` still holds at `now + hold` and is
/// free from the next millisecond.
#[test]
fn lease_holds_through_its_last_millisecond() {
    let store = FakeStore::default();
    assert!(try_lease(&store, 1, 1000, 3000));
    assert!(!try_lease(&store, 2, 4000, 3000));
    assert!(try_lease(&store, 2, 4001, 3000));
}

#[test]
fn two_workers_racing_for_a_new_lease_never_both_scan() {
    let store = FakeStore::default();
    let (mut a, mut b) = (Scanner::default(), Scanner::default());
    // Both read the never-written lease key before either writes it:
    // b's whole first tick runs between a's read and a's write.
    let b_first = std::rc::Rc::new(std::cell::Cell::new(None));
    let seen = b_first.clone();
    let mut b_ticker = Scanner::default();
    *store.interleave.borrow_mut() = Some(Box::new(move |s: &FakeStore| {
        seen.set(Some(b_ticker.tick(s, &tick_at(2, 1000, 1)).is_some()));
    }));
    assert_eq!(
        a.tick(&store, &tick_at(1, 1000, 1)),
        None,
        "first tick never scans"
    );
    assert_eq!(b_first.get(), Some(false));
    b.confirmed = true; // b also believed it took the lease at 1000
                        // Next tick: a wrote last and owns the existing key; b's CAS loses.
    let ta = a.tick(&store, &tick_at(1, 2000, 1));
    let tb = b.tick(&store, &tick_at(2, 2000, 1));
    assert!(ta.is_some() && tb.is_none(), "{ta:?} {tb:?}");
}

/// A worker that loses the lease mid-pass forgets its partial pass: no
/// half tally, the next pass starts at slot 0, and only after holding
/// the lease for a whole tick again.
#[test]
fn losing_the_lease_forgets_the_partial_pass() {
    let store = FakeStore::default();
    store.put(&slot_key(0), &entry("a", "/x", 10_000));
    let mut s = Scanner::default();
    assert_eq!(s.tick(&store, &tick_at(1, 0, 4)), None);
    assert_eq!(s.tick(&store, &tick_at(1, 0, 4)), None);
    assert_eq!((s.next_slot, s.tally.len()), (2, 1), "half a pass");
    let other: Vec<u8> = [2u64.to_be_bytes(), 10_000u64.to_be_bytes()].concat();
    store.put(SCAN_LEASE_KEY, &other);
    assert_eq!(s.tick(&store, &tick_at(1, 1000, 4)), None);
    assert_eq!((s.next_slot, s.tally.len(), s.confirmed), (0, 0, false));
}

#[test]
fn chunks_are_capped_whatever_the_table_size() {
    let store = FakeStore::default();
    let mut s = Scanner::default();
    let t = ScanTick {
        scan_interval_secs: 1,
        ..tick_at(1, 0, 10_000_000)
    };
    assert_eq!(s.tick(&store, &t), None);
    assert_eq!(s.tick(&store, &t), None);
    assert_eq!(s.next_slot, MAX_SCAN_SLOTS_PER_TICK);
    // A small table still finishes a pass in scan_interval ticks.
    let mut s = Scanner::default();
    let t = tick_at(1, 0, 10);
    s.tick(&store, &t);
    assert_eq!(s.tick(&store, &t), None);
    assert!(s.tick(&store, &t).is_some(), "10 slots in 2 ticks of 5");
}

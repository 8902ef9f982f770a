use super::*;
use crate::clock::unix_ms;

/// docs/cache.md's eviction model: W keys requested uniformly over S direct-mapped slots
/// evict each other on (W - occupied slots) / W of the lookups, about
/// (W - S(1 - e^(-W/S))) / W. With the real slot hash over realistic identities:
/// 5 % at W = S/10, 9.4 % at S/5, 21 % at S/2, 37 % at S; doubling S about halves it.
#[test]
fn eviction_ratio_follows_the_documented_model() {
    let ratio = |keys: u32, slots: u32| {
        let occupied: std::collections::HashSet<u32> = (0..keys)
            .map(|i| {
                slot_of(
                    &format!("media\nAKID\nGET\n/bkt/videos/clip-{i:05}.mp4?"),
                    slots,
                )
            })
            .collect();
        f64::from(keys - u32::try_from(occupied.len()).unwrap()) / f64::from(keys)
    };
    for (keys, documented) in [(100, 0.05), (200, 0.094), (500, 0.21), (1000, 0.37)] {
        let measured = ratio(keys, 1000);
        assert!(
            (measured - documented).abs() <= 0.015,
            "W = {keys}, S = 1000: {measured} vs {documented}"
        );
    }
    let (s, s2) = (ratio(200, 1000), ratio(200, 2000));
    assert!((s2 / s - 0.5).abs() < 0.15, "doubling S: {s} -> {s2}");
}
use crate::testing::FakeStore;
use std::cell::Cell;

const POLICY: Policy = Policy {
    expires_in_ms: 3_600_000,
    refresh_before_ms: 600_000,
    min_remaining_ms: 60_000,
    align: false,
};
const T0: u64 = 1_700_000_000_000;

fn lookup<'a>(identity: &'a str, policy: &'a Policy, now_ms: u64) -> Lookup<'a> {
    Lookup {
        slot_key: "slot",
        identity,
        policy,
        now_ms,
        not_after_ms: u64::MAX,
    }
}

/// A signer that names each URL after its signing time and counts calls.
fn run(
    store: &FakeStore,
    identity: &str,
    policy: &Policy,
    now_ms: u64,
    calls: &Cell<u32>,
) -> Resolved {
    let mut sign = |at: SystemTime, exp: Duration| -> Result<String, ()> {
        calls.set(calls.get() + 1);
        Ok(format!(
            "/{identity}?date={}&exp={}",
            unix_ms(at) / 1000,
            exp.as_secs()
        ))
    };
    resolve(store, lookup(identity, policy, now_ms), &mut sign).unwrap()
}

#[test]
fn miss_then_hit_then_refresh_then_too_late() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    let r = run(&store, "id", &POLICY, T0, &calls);
    assert_eq!(r.outcome, Outcome::Miss);
    assert_eq!(r.path, format!("/id?date={}&exp=3600", T0 / 1000));
    let first = r.path;

    // Fresh until refresh_before is left.
    let r = run(&store, "id", &POLICY, T0 + 3_000_000 - 1, &calls);
    assert_eq!((r.outcome, r.path.as_str()), (Outcome::Hit, first.as_str()));
    assert_eq!(calls.get(), 1);

    // Exactly refresh_before left: this request refreshes.
    let r = run(&store, "id", &POLICY, T0 + 3_000_000, &calls);
    assert_eq!(r.outcome, Outcome::Refreshed);
    assert_ne!(r.path, first);
    assert_eq!(calls.get(), 2);
    assert_eq!(store.entry("slot").signed_at_ms, T0 + 3_000_000);
    assert_eq!(store.entry("slot").claim_until_ms, 0);

    // Too late: an entry with less than min_remaining left is never
    // served. Nobody asked for it while it was due: a plain miss.
    let store = FakeStore::default();
    run(&store, "id", &POLICY, T0, &calls);
    let r = run(&store, "id", &POLICY, T0 + 3_540_001, &calls);
    assert_eq!(r.outcome, Outcome::Miss, "idle re-request is no incident");
    assert_eq!(
        r.path,
        format!("/id?date={}&exp=3600", (T0 + 3_540_001) / 1000)
    );
    // Exactly min_remaining left is still served (as a refresh).
    let store = FakeStore::default();
    run(&store, "id", &POLICY, T0, &calls);
    assert_eq!(
        run(&store, "id", &POLICY, T0 + 3_540_000, &calls).outcome,
        Outcome::Refreshed
    );
}

#[test]
fn expired_counts_only_a_refresh_that_kept_failing() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    run(&store, "id", &POLICY, T0, &calls);
    // Due: every refresh fails, the valid URL is served meanwhile.
    let mut fail = |_: SystemTime, _: Duration| -> Result<String, ()> { Err(()) };
    for now in [T0 + 3_000_000, T0 + 3_200_000, T0 + 3_400_000] {
        let r = resolve(&store, lookup("id", &POLICY, now), &mut fail).unwrap();
        assert_eq!(r.outcome, Outcome::RefreshFailed);
    }
    // Then too late: the entry was in use and could not be refreshed.
    let r = run(&store, "id", &POLICY, T0 + 3_550_000, &calls);
    assert_eq!(r.outcome, Outcome::Expired);
    // The replacement is an ordinary entry again.
    assert_eq!(store.entry("slot").claim_until_ms, 0);
}

#[test]
fn evictions_count_only_live_urls_of_other_keys() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    run(&store, "a", &POLICY, T0, &calls);
    // b takes a's slot while a's URL is still valid: an eviction.
    let r = run(&store, "b", &POLICY, T0 + 1, &calls);
    assert_eq!((r.ops.collisions, r.ops.evictions), (1, 1));
    // a comes back after b's URL expired: a collision, no eviction.
    let r = run(&store, "a", &POLICY, T0 + 3_600_001, &calls);
    assert_eq!((r.ops.collisions, r.ops.evictions), (1, 0));
    // Its own expired entry is no eviction either.
    let r = run(&store, "a", &POLICY, T0 + 7_200_002, &calls);
    assert_eq!((r.ops.collisions, r.ops.evictions), (0, 0));
}

/// A URL expiring at this very instant is no longer live: another key
/// taking its slot then is a collision, not an eviction.
#[test]
fn replacing_a_url_at_its_expiry_instant_is_no_eviction() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    run(&store, "a", &POLICY, T0, &calls);
    let r = run(&store, "b", &POLICY, T0 + 3_600_000, &calls);
    assert_eq!((r.ops.collisions, r.ops.evictions), (1, 0));
    let r = run(&store, "a", &POLICY, T0 + 3_600_000 + 1, &calls);
    assert_eq!((r.ops.collisions, r.ops.evictions), (1, 1));
}

/// Every store operation of a request is counted once, by kind (what
/// the `store_ops` metrics report): a miss reads and stores, a hit only
/// reads, a refresh reads, claims and stores; a refused read is counted
/// and the request is still signed and stored.
#[test]
fn store_operations_are_counted_by_kind() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    let ops = |get_ok, set_ok| StoreOps {
        get_ok,
        set_ok,
        ..StoreOps::default()
    };
    let r = run(&store, "id", &POLICY, T0, &calls);
    assert_eq!((r.outcome, r.ops), (Outcome::Miss, ops(1, 1)));
    let r = run(&store, "id", &POLICY, T0 + 1, &calls);
    assert_eq!((r.outcome, r.ops), (Outcome::Hit, ops(1, 0)));
    let r = run(&store, "id", &POLICY, T0 + 3_000_000, &calls);
    assert_eq!((r.outcome, r.ops), (Outcome::Refreshed, ops(1, 2)));
    store.fail_gets.set(true);
    let r = run(&store, "id", &POLICY, T0 + 3_000_001, &calls);
    assert_eq!(r.outcome, Outcome::Miss);
    assert_eq!(
        r.ops,
        StoreOps {
            get_err: 1,
            set_ok: 1,
            ..StoreOps::default()
        }
    );
}

#[test]
fn one_refresher_while_others_serve_the_valid_url() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    let old = run(&store, "id", &POLICY, T0, &calls).path;
    // Simulate a worker that claimed the refresh but has not stored yet.
    let mut e = store.entry("slot");
    e.claim_until_ms = T0 + 3_100_000 + 2_000;
    store.put("slot", &e.encode());
    let r = run(&store, "id", &POLICY, T0 + 3_100_000, &calls);
    assert_eq!((r.outcome, r.path), (Outcome::HitRefreshing, old.clone()));
    assert_eq!(calls.get(), 1, "no second signing during a live claim");
    // A lapsed claim is taken over.
    let r = run(&store, "id", &POLICY, T0 + 3_102_001, &calls);
    assert_eq!(r.outcome, Outcome::Refreshed);
}

#[test]
fn claim_race_is_lost_by_rereading() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    run(&store, "id", &POLICY, T0, &calls);
    let now = T0 + 3_100_000;
    // Another worker claims between our read and our claim.
    *store.interleave.borrow_mut() = Some(Box::new(move |s: &FakeStore| {
        let mut e = s.entry("slot");
        e.claim_until_ms = now + 2_000;
        s.put("slot", &e.encode());
    }));
    let r = run(&store, "id", &POLICY, now, &calls);
    assert_eq!(r.outcome, Outcome::HitRefreshing);
    assert_eq!(r.ops.cas_conflicts, 1);
    assert_eq!(calls.get(), 1);
}

#[test]
fn concurrent_miss_converges_on_the_stored_url() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    // Another worker stores its URL for the same identity between our
    // read and our write: we lose the CAS, re-read, and serve theirs.
    *store.interleave.borrow_mut() = Some(Box::new(|s: &FakeStore| {
        let e = Entry {
            signed_at_ms: T0,
            expires_at_ms: T0 + 3_600_000,
            claim_until_ms: 0,
            identity: "id".into(),
            path: "/theirs".into(),
        };
        s.put("slot", &e.encode());
    }));
    // The slot must exist for CAS to apply: pre-fill it with another identity.
    store.put(
        "slot",
        &Entry {
            identity: "other".into(),
            ..store_entry()
        }
        .encode(),
    );
    let r = run(&store, "id", &POLICY, T0, &calls);
    assert_eq!(r.path, "/theirs");
    assert_eq!(
        r.outcome,
        Outcome::Miss,
        "we signed, so it counts as a miss"
    );
    assert_eq!(r.ops.cas_conflicts, 1);
    assert_eq!(r.ops.collisions, 1);
}

fn store_entry() -> Entry {
    Entry {
        signed_at_ms: T0,
        expires_at_ms: T0 + 3_600_000,
        claim_until_ms: 0,
        identity: String::new(),
        path: "/p".into(),
    }
}

#[test]
fn cas_conflicts_are_bounded() {
    /// A store whose every conditional write loses.
    struct Hostile(FakeStore);
    impl Store for Hostile {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.0.put(key, b"garbage");
            self.0.get(key)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::CasMismatch)
        }
    }
    let store = Hostile(FakeStore::default());
    let calls = Cell::new(0);
    let mut sign = |_: SystemTime, _: Duration| -> Result<String, ()> {
        calls.set(calls.get() + 1);
        Ok("/mine".into())
    };
    let r = resolve(&store, lookup("id", &POLICY, T0), &mut sign).unwrap();
    assert_eq!(r.path, "/mine");
    assert_eq!(r.ops.cas_conflicts, MAX_CAS_ATTEMPTS);
    assert_eq!(calls.get(), 1, "signed once across retries");
}

#[test]
fn slot_collision_between_two_keys_never_shares_a_url() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    let a = run(&store, "key-a", &POLICY, T0, &calls);
    let b = run(&store, "key-b", &POLICY, T0, &calls);
    assert_eq!((a.outcome, b.outcome), (Outcome::Miss, Outcome::Miss));
    assert_eq!(b.ops.collisions, 1);
    assert!(b.path.starts_with("/key-b"));
    let a2 = run(&store, "key-a", &POLICY, T0, &calls);
    assert_eq!(a2.outcome, Outcome::Miss, "a replaced entry is a miss");
    assert!(a2.path.starts_with("/key-a"));
}

#[test]
fn corrupt_and_old_entries_are_misses_and_replaced() {
    let calls = Cell::new(0);
    for (bytes, corrupt, old) in [
        (b"".to_vec(), 1, 0),
        (b"garbage bytes".to_vec(), 1, 0),
        (b"EPC0\x00\x01".to_vec(), 0, 1),
        (store_entry().encode()[..20].to_vec(), 1, 0),
    ] {
        let store = FakeStore::default();
        store.put("slot", &bytes);
        let r = run(&store, "id", &POLICY, T0, &calls);
        assert_eq!(r.outcome, Outcome::Miss);
        assert_eq!((r.ops.corrupt, r.ops.other_version), (corrupt, old));
        assert_eq!(store.entry("slot").identity, "id", "replaced");
    }
}

#[test]
fn store_failures_still_serve() {
    let store = FakeStore::default();
    store.fail_sets.set(true);
    let calls = Cell::new(0);
    let r = run(&store, "id", &POLICY, T0, &calls);
    assert_eq!(r.outcome, Outcome::Miss);
    assert_eq!(r.ops.set_err, 1);
    assert_eq!(calls.get(), 1);
}

#[test]
fn signing_errors_propagate_on_miss_and_fall_back_on_refresh() {
    let store = FakeStore::default();
    let mut fail = |_: SystemTime, _: Duration| -> Result<String, &'static str> { Err("boom") };
    let err = resolve(&store, lookup("id", &POLICY, T0), &mut fail).unwrap_err();
    assert_eq!(err.0, "boom");
    let calls = Cell::new(0);
    let old = run(&store, "id", &POLICY, T0, &calls).path;
    let r = resolve(&store, lookup("id", &POLICY, T0 + 3_100_000), &mut fail).unwrap();
    assert_eq!((r.outcome, r.path), (Outcome::RefreshFailed, old));
}

#[test]
fn window_alignment_at_boundaries() {
    let p = Policy {
        align: true,
        ..POLICY
    };
    let w = p.window_ms();
    assert_eq!(w, 3_000_000);
    let start = (T0 / w + 1) * w;
    assert_eq!(p.signing_time_ms(start), start);
    assert_eq!(p.signing_time_ms(start + w - 1), start);
    assert_eq!(p.signing_time_ms(start + w), start + w);
    assert_eq!(p.signing_time_ms(start - 1), start - w);

    // Two independent stores (two Envoys) sign identical URLs in a window.
    let calls = Cell::new(0);
    let (s1, s2) = (FakeStore::default(), FakeStore::default());
    let a = run(&s1, "id", &p, start + 5, &calls).path;
    let b = run(&s2, "id", &p, start + w - 1, &calls).path;
    assert_eq!(a, b);
    // Fresh for the whole window; due exactly at the next window start,
    // where the refresh signs for the new window.
    assert_eq!(
        run(&s1, "id", &p, start + w - 1, &calls).outcome,
        Outcome::Hit
    );
    let r = run(&s1, "id", &p, start + w, &calls);
    assert_eq!(r.outcome, Outcome::Refreshed);
    assert_eq!(r.path, format!("/id?date={}&exp=3600", (start + w) / 1000));
    // Every aligned URL has more than refresh_before left when signed.
    for now in [start, start + 1, start + w - 1] {
        let at = p.signing_time_ms(now);
        assert!(at + p.expires_in_ms - now > p.refresh_before_ms);
    }
}

/// The alignment window is `expires_in - refresh_before` rounded down to
/// whole seconds (at least 1 s), so aligned `X-Amz-Date`s fall on whole
/// seconds even when the defaults give a refresh_before in milliseconds.
#[test]
fn window_is_whole_seconds_and_aligned_signing_times_too() {
    // expires_in 7 s with the default refresh_before (1/5): 1.4 s.
    let p = Policy {
        expires_in_ms: 7_000,
        refresh_before_ms: 1_400,
        min_remaining_ms: 280,
        align: true,
    };
    assert_eq!(p.window_ms(), 5_000);
    for now in [T0, T0 + 1, T0 + 4_999, T0 + 123_456] {
        let at = p.signing_time_ms(now);
        assert_eq!(at % 1000, 0, "{now}");
        assert!(at <= now && now - at < 5_000, "{now}");
    }
    let short = Policy {
        expires_in_ms: 1_000,
        refresh_before_ms: 500,
        ..p
    };
    assert_eq!(short.window_ms(), 1_000, "never below one second");
}

/// A claim holds off other refreshers for a quarter of the refresh window
/// (`refresh_before - min_remaining`), clamped to 100 ms .. 2 s.
#[test]
fn claim_is_a_quarter_of_the_refresh_window_within_bounds() {
    let with = |refresh_before_ms, min_remaining_ms| Policy {
        refresh_before_ms,
        min_remaining_ms,
        ..POLICY
    };
    assert_eq!(with(1_000, 200).claim_ms(), 200);
    assert_eq!(with(4_200, 200).claim_ms(), 1_000);
    assert_eq!(with(600_000, 60_000).claim_ms(), 2_000, "at most 2 s");
    assert_eq!(with(500, 200).claim_ms(), 100, "at least 100 ms");
}

/// A request that claims a due entry writes `now + claim_ms` into the slot:
/// while the claim holds, others serve the old URL without signing; once
/// it lapses (its refresh failed), the next request refreshes.
#[test]
fn a_failed_refresh_holds_others_off_for_exactly_the_claim() {
    let store = FakeStore::default();
    let calls = Cell::new(0);
    let old = run(&store, "id", &POLICY, T0, &calls).path;
    let now = T0 + 3_100_000;
    let mut fail = |_: SystemTime, _: Duration| -> Result<String, ()> { Err(()) };
    let r = resolve(&store, lookup("id", &POLICY, now), &mut fail).unwrap();
    assert_eq!(r.outcome, Outcome::RefreshFailed);
    let claim = POLICY.claim_ms();
    assert_eq!(store.entry("slot").claim_until_ms, now + claim);
    let r = run(&store, "id", &POLICY, now + claim - 1, &calls);
    assert_eq!((r.outcome, r.path), (Outcome::HitRefreshing, old));
    assert_eq!(calls.get(), 1, "no signing while the claim holds");
    let r = run(&store, "id", &POLICY, now + claim, &calls);
    assert_eq!(
        r.outcome,
        Outcome::Refreshed,
        "a lapsed claim is taken over"
    );
    assert_eq!(calls.get(), 2);
}

/// Freshness boundaries: fresh above refresh_before, due at it, servable
/// down to min_remaining; with min_remaining 0 an entry is still servable
/// at its expiry instant (S3 accepts a URL until then) and never after.
#[test]
fn freshness_boundaries() {
    let e = Entry {
        expires_at_ms: T0 + 3_600_000,
        ..store_entry()
    };
    let at = |p: &Policy, left: u64| p.freshness(&e, e.expires_at_ms - left);
    assert_eq!(at(&POLICY, 600_001), Freshness::Fresh);
    assert_eq!(at(&POLICY, 600_000), Freshness::Refresh);
    assert_eq!(at(&POLICY, 60_000), Freshness::Refresh);
    assert_eq!(at(&POLICY, 59_999), Freshness::TooLate);
    let zero = Policy {
        min_remaining_ms: 0,
        ..POLICY
    };
    assert_eq!(at(&zero, 1), Freshness::Refresh);
    assert_eq!(at(&zero, 0), Freshness::Refresh);
    assert_eq!(zero.freshness(&e, e.expires_at_ms + 1), Freshness::TooLate);
}

#[test]
fn slots_stay_below_the_bound() {
    for max in [1, 2, 7, 1000] {
        for i in 0..500 {
            assert!(slot_of(&format!("identity-{i}"), max) < max);
        }
    }
    assert_eq!(slot_of("x", 0), 0);
    assert_eq!(slot_key(42), "envoy_presign.cache.42");
    // A fixed function of the bytes: the same slot on every worker and host.
    assert_eq!(slot_of("a", 1_000_000), 828_315);
    // Keys differing in one character spread over a small power-of-two table.
    let slots: std::collections::HashSet<u32> = [
        "img/a.jpg",
        "img/q.jpg",
        "img/A.jpg",
        "img/Q.jpg",
        "img/1.jpg",
    ]
    .iter()
    .map(|k| slot_of(k, 16))
    .collect();
    assert!(slots.len() >= 3, "{slots:?}");
}

#[test]
fn entry_codec_roundtrip_and_never_panics() {
    let e = Entry {
        identity: "id\nwith\u{e9}".into(),
        claim_until_ms: 7,
        ..store_entry()
    };
    let bytes = e.encode();
    assert_eq!(Entry::decode(&bytes), Ok(e));
    for n in 0..bytes.len() {
        assert!(Entry::decode(&bytes[..n]).is_err());
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Entry::decode(&long), Err(DecodeError::Corrupt));
    let mut huge_len = bytes;
    huge_len[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(Entry::decode(&huge_len), Err(DecodeError::Corrupt));
}

/// An entry that expires before it was signed is corrupt; one that expires
/// the instant it was signed is well-formed (the policy then refuses to
/// serve it, not the codec).
#[test]
fn entry_expiring_before_its_signing_is_corrupt() {
    let at = |expires_at_ms| Entry {
        expires_at_ms,
        ..store_entry()
    };
    assert_eq!(
        Entry::decode(&at(T0 - 1).encode()),
        Err(DecodeError::Corrupt)
    );
    assert_eq!(Entry::decode(&at(T0).encode()), Ok(at(T0)));
}

/// Issue 10: `X-Amz-Expires` is the configured lifetime, cut to whole
/// seconds before `not_after` (the credentials' expiry less the margin),
/// never negative.
#[test]
fn expiry_is_capped_in_whole_seconds() {
    assert_eq!(capped_expiry_ms(600_000, 1_000, u64::MAX), 600_000);
    assert_eq!(capped_expiry_ms(600_000, 1_000, 601_000), 600_000);
    assert_eq!(capped_expiry_ms(600_000, 1_000, 600_999), 599_000);
    assert_eq!(capped_expiry_ms(600_000, 1_000, 241_500), 240_000);
    assert_eq!(capped_expiry_ms(600_000, 1_000, 1_999), 0);
    assert_eq!(capped_expiry_ms(600_000, 5_000, 4_000), 0);
}

/// Issue 10: "make sure the cache never serves a URL whose credentials
/// have expired": an entry signed under `not_after` expires by then, so
/// the freshness rules stop serving it in time.
#[test]
fn a_cached_entry_expires_with_its_credentials() {
    let store = FakeStore::default();
    let mut signed = Vec::new();
    let mut sign = |at: SystemTime, d: Duration| -> Result<String, ()> {
        signed.push((unix_ms(at), d));
        Ok(format!("/k?X-Amz-Expires={}", d.as_secs()))
    };
    let not_after_ms = T0 + 900_500;
    let lookup = Lookup {
        not_after_ms,
        ..lookup("id", &POLICY, T0)
    };
    let r = resolve(&store, lookup, &mut sign).unwrap();
    assert_eq!(r.path, "/k?X-Amz-Expires=900");
    assert_eq!(r.expires_at_ms, T0 + 900_000);
    assert_eq!(store.entry("slot").expires_at_ms, T0 + 900_000);
    assert_eq!(signed, [(T0, Duration::from_secs(900))]);
    // Past refresh_before (600 s left), the entry is re-signed, capped
    // again; past min_remaining it is never served.
    let e = store.entry("slot");
    assert_eq!(POLICY.freshness(&e, T0 + 300_000), Freshness::Refresh);
    assert_eq!(POLICY.freshness(&e, T0 + 840_001), Freshness::TooLate);
}

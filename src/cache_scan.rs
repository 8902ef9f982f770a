//! Measuring the shared cache for the plan's "KV storage size": one worker at a
//! time (holding a lease in shared data) walks the slots in small chunks, one
//! chunk per tick, and publishes per-origin totals of the entries that can
//! still be served (and their bytes) when a pass completes. A chunk is at most
//! `MAX_SCAN_SLOTS_PER_TICK` slots, so no tick stalls a worker at any table
//! size; a pass takes as many ticks as it needs.

use std::collections::BTreeMap;

use crate::cache::{slot_key, Entry, Store};

/// Shared-data key of the scan lease (owner id and expiry).
pub const SCAN_LEASE_KEY: &str = "envoy_presign.scan_lease";
/// Most slots read in one tick (one shared-data read each): about a
/// millisecond of work, so a pass over the largest table (10,000,000 slots)
/// takes 2,442 one-second ticks, about 41 minutes.
pub const MAX_SCAN_SLOTS_PER_TICK: u32 = 4096;

/// Entries and bytes per origin name.
pub type Tally = BTreeMap<String, (u64, u64)>;

/// The origin name recorded in an entry's identity (its second line).
fn origin_of(identity: &str) -> &str {
    identity.split('\n').nth(1).unwrap_or("")
}

/// The `min_remaining` (ms) of a configured origin by name; `None` for an
/// origin no longer configured (its entries can never be served).
pub type MinRemaining<'a> = dyn Fn(&str) -> Option<u64> + 'a;

/// Adds the entries of `slots` that can still be served at `now_ms` (more
/// than their origin's `min_remaining` left) to `tally`: count, and bytes held
/// in shared data (key plus value). Expired entries keep their slot until it
/// is reused, but they are no longer cache contents.
pub fn scan_slots<S: Store + ?Sized>(
    store: &S,
    slots: std::ops::Range<u32>,
    now_ms: u64,
    min_remaining: &MinRemaining<'_>,
    tally: &mut Tally,
) {
    for slot in slots {
        let key = slot_key(slot);
        let Ok((Some(bytes), _)) = store.get(&key) else {
            continue;
        };
        let Ok(entry) = Entry::decode(&bytes) else {
            continue;
        };
        let origin = origin_of(&entry.identity);
        let servable =
            min_remaining(origin).is_some_and(|m| entry.expires_at_ms >= now_ms.saturating_add(m));
        if servable {
            let t = tally.entry(origin.to_string()).or_default();
            t.0 += 1;
            t.1 += u64::try_from(bytes.len() + key.len()).unwrap_or(u64::MAX);
        }
    }
}

/// Takes or renews the scan lease for `owner` until `now_ms + hold_ms`.
/// True when this worker holds it now.
pub fn try_lease<S: Store + ?Sized>(store: &S, owner: u64, now_ms: u64, hold_ms: u64) -> bool {
    let Ok((value, cas)) = store.get(SCAN_LEASE_KEY) else {
        return false;
    };
    let current = value.as_deref().and_then(|v| {
        let owner = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let until = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
        Some((owner, until))
    });
    let free = match current {
        Some((o, until)) => o == owner || until < now_ms,
        None => true,
    };
    if !free {
        return false;
    }
    let mut v = owner.to_be_bytes().to_vec();
    v.extend_from_slice(&(now_ms + hold_ms).to_be_bytes());
    store.set(SCAN_LEASE_KEY, &v, cas).is_ok()
}

/// One worker's progress through a scan pass.
#[derive(Debug, Default)]
pub struct Scanner {
    next_slot: u32,
    tally: Tally,
    /// The lease was held at the previous tick too.
    confirmed: bool,
}

/// What one scan tick needs to know.
#[derive(Clone, Copy)]
pub struct ScanTick<'a> {
    /// This worker's id (random per VM).
    pub owner: u64,
    /// Now, Unix ms.
    pub now_ms: u64,
    /// How long a lease holds without renewal.
    pub hold_ms: u64,
    /// Slots in the table.
    pub max_entries: u32,
    /// Seconds a pass should take (`cache.scan_interval`), if the per-tick
    /// cap allows.
    pub scan_interval_secs: u64,
    /// `min_remaining` of each configured origin.
    pub min_remaining: &'a MinRemaining<'a>,
}

impl Scanner {
    /// One tick: takes or renews the lease and, once it has been held for a
    /// whole tick, scans the next chunk; returns a completed pass's tally.
    ///
    /// Shared data has no "create if absent", so two workers can both take a
    /// lease key that was never written; the next renewal is a real
    /// compare-and-swap on an existing key, which only one of them wins.
    /// Scanning only from the second tick on keeps the scan exclusive.
    pub fn tick<S: Store + ?Sized>(&mut self, store: &S, t: &ScanTick<'_>) -> Option<Tally> {
        if !try_lease(store, t.owner, t.now_ms, t.hold_ms) {
            self.reset();
            return None;
        }
        if !std::mem::replace(&mut self.confirmed, true) {
            return None;
        }
        let chunk = u32::try_from(u64::from(t.max_entries).div_ceil(t.scan_interval_secs.max(1)))
            .unwrap_or(u32::MAX)
            .min(MAX_SCAN_SLOTS_PER_TICK);
        self.step(store, t.max_entries, chunk, t.now_ms, t.min_remaining)
    }

    /// Scans the next `chunk` slots of `max_entries`; returns the completed
    /// pass's tally when this chunk finished it.
    fn step<S: Store + ?Sized>(
        &mut self,
        store: &S,
        max_entries: u32,
        chunk: u32,
        now_ms: u64,
        min_remaining: &MinRemaining<'_>,
    ) -> Option<Tally> {
        let end = self.next_slot.saturating_add(chunk.max(1)).min(max_entries);
        let start = std::mem::replace(&mut self.next_slot, end);
        scan_slots(store, start..end, now_ms, min_remaining, &mut self.tally);
        if end >= max_entries {
            self.next_slot = 0;
            return Some(std::mem::take(&mut self.tally));
        }
        None
    }

    /// Forgets a partial pass (the lease was lost; another worker scans).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
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
}

//! Measuring the shared cache for the plan's "KV storage size": one worker at a
//! time (holding a lease in shared data) walks the slots in small chunks, one
//! chunk per tick, and publishes per-origin entry and byte totals when a pass
//! completes. Chunks keep any single tick short, so no worker stalls.

use std::collections::BTreeMap;

use crate::cache::{slot_key, Entry, Store};

/// Shared-data key of the scan lease (owner id and expiry).
pub const SCAN_LEASE_KEY: &str = "envoy_presign.scan_lease";
/// Shared-data key of the worker id sequence.
pub const WORKER_SEQ_KEY: &str = "envoy_presign.worker_seq";

/// Entries and bytes per origin name.
pub type Tally = BTreeMap<String, (u64, u64)>;

/// The origin name recorded in an entry's identity (its second line).
fn origin_of(identity: &str) -> &str {
    identity.split('\n').nth(1).unwrap_or("")
}

/// Adds the valid entries of `slots` to `tally`: count, and bytes held in
/// shared data (key plus value).
pub fn scan_slots<S: Store + ?Sized>(store: &S, slots: std::ops::Range<u32>, tally: &mut Tally) {
    for slot in slots {
        let key = slot_key(slot);
        if let Ok((Some(bytes), _)) = store.get(&key) {
            if let Ok(entry) = Entry::decode(&bytes) {
                let t = tally
                    .entry(origin_of(&entry.identity).to_string())
                    .or_default();
                t.0 += 1;
                t.1 += u64::try_from(bytes.len() + key.len()).unwrap_or(u64::MAX);
            }
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

/// A unique id for this worker VM, from a CAS-incremented counter in shared
/// data (bounded retries; falls back to `fallback`, e.g. the start time).
pub fn next_worker_id<S: Store + ?Sized>(store: &S, fallback: u64) -> u64 {
    for _ in 0..8 {
        let Ok((value, cas)) = store.get(WORKER_SEQ_KEY) else {
            break;
        };
        let n = value
            .as_deref()
            .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)))
            .unwrap_or(0)
            + 1;
        if store.set(WORKER_SEQ_KEY, &n.to_be_bytes(), cas).is_ok() {
            return n;
        }
    }
    fallback
}

/// One worker's progress through a scan pass.
#[derive(Debug, Default)]
pub struct Scanner {
    next_slot: u32,
    tally: Tally,
}

impl Scanner {
    /// Scans the next `chunk` slots of `max_entries`; returns the completed
    /// pass's tally when this chunk finished it.
    pub fn step<S: Store + ?Sized>(
        &mut self,
        store: &S,
        max_entries: u32,
        chunk: u32,
    ) -> Option<Tally> {
        let end = self.next_slot.saturating_add(chunk.max(1)).min(max_entries);
        scan_slots(store, self.next_slot..end, &mut self.tally);
        self.next_slot = end;
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

    fn entry(origin: &str, path: &str) -> Vec<u8> {
        Entry {
            signed_at_ms: 0,
            expires_at_ms: 1,
            claim_until_ms: 0,
            identity: format!("v1\n{origin}\nrest"),
            path: path.into(),
        }
        .encode()
    }

    #[test]
    fn scan_counts_valid_entries_per_origin_in_chunks() {
        let store = FakeStore::default();
        store.put(&slot_key(0), &entry("a", "/x"));
        store.put(&slot_key(3), &entry("b", "/yy"));
        store.put(&slot_key(4), &entry("a", "/z"));
        store.put(&slot_key(5), b"corrupt");
        store.put(&slot_key(99), &entry("a", "/outside"));
        let mut s = Scanner::default();
        assert_eq!(s.step(&store, 6, 4), None);
        let t = s.step(&store, 6, 4).unwrap();
        assert_eq!(t["a"].0, 2);
        assert_eq!(t["b"].0, 1);
        let bytes_a = (entry("a", "/x").len()
            + slot_key(0).len()
            + entry("a", "/z").len()
            + slot_key(4).len()) as u64;
        assert_eq!(t["a"].1, bytes_a);
        // The next pass starts over.
        assert!(s.step(&store, 6, 6).is_some());
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

    #[test]
    fn worker_ids_are_unique() {
        let store = FakeStore::default();
        assert_eq!(next_worker_id(&store, 0), 1);
        assert_eq!(next_worker_id(&store, 0), 2);
        store.fail_sets.set(true);
        assert_eq!(next_worker_id(&store, 77), 77);
    }
}

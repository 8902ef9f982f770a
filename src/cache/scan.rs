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
#[path = "scan_tests.rs"]
mod tests;

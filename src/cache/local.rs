//! A small per-worker copy of recent rewrites, in front of the shared cache.
//!
//! Measured in Envoy, a cache hit through shared data spends most of its time
//! outside the signing logic: reading the slot (a hostcall and a copy),
//! decoding the entry, rebuilding the identity. A worker that served a request
//! `method authority path` moments ago can reuse the rewrite it computed, as
//! long as the shared entry it came from is still *fresh* — the same rule the
//! shared cache applies. Once the entry is due for refresh, the worker goes
//! back to shared data, so every worker switches to the refreshed URL at the
//! same moment the shared cache does. Direct-mapped and fixed-size: a new
//! entry replaces the one in its slot, and a request whose method, authority,
//! path and rewrite together exceed `LOCAL_ENTRY_MAX_BYTES` (a long junk query,
//! a huge `Host`) is not kept at all, so memory per worker is at most
//! `cache.local_entries` × (`LOCAL_ENTRY_MAX_BYTES` + a slot's overhead)
//! whatever clients send.

use crate::cache::{fnv1a, FNV_OFFSET};

/// Most bytes (method + authority + raw path + rewrite) one remembered
/// rewrite may hold; larger requests are served through shared data only.
pub const LOCAL_ENTRY_MAX_BYTES: usize = 4096;

/// A remembered rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalEntry {
    method: String,
    authority: String,
    path: String,
    origin: usize,
    rewrite: String,
    fresh_until_ms: u64,
}

/// A fresh rewrite found for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalHit<'a> {
    /// Index of the origin in the configuration.
    pub origin: usize,
    /// The presigned `:path`.
    pub rewrite: &'a str,
    /// Until when (Unix ms) it is fresh: `refresh_before` before the URL expires.
    pub fresh_until_ms: u64,
}

impl LocalHit<'_> {
    /// Whether it may still be served at `now_ms`: the shared cache's rule,
    /// fresh until its refresh point (exclusive).
    pub fn fresh_at(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }
}

/// The per-worker cache; `size` 0 disables it.
#[derive(Debug, Default)]
pub struct LocalCache {
    slots: Vec<Option<LocalEntry>>,
}

fn slot_hash(method: &str, authority: &str, path: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for part in [method, authority, path] {
        h = fnv1a(fnv1a(h, part.as_bytes()), &[0]);
    }
    h ^ (h >> 29)
}

impl LocalCache {
    /// A cache of `size` slots.
    pub fn new(size: usize) -> Self {
        Self {
            slots: vec![None; size],
        }
    }

    /// Forgets every rewrite (new credentials: new URLs from now on).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }

    fn index(&self, method: &str, authority: &str, path: &str) -> Option<usize> {
        let n = u64::try_from(self.slots.len()).ok().filter(|n| *n > 0)?;
        usize::try_from(slot_hash(method, authority, path) % n).ok()
    }

    /// The rewrite remembered for exactly this request, if still fresh at
    /// `now_ms` (the tests' shorthand for `find` + `LocalHit::fresh_at`).
    #[cfg(test)]
    pub fn get(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        now_ms: u64,
    ) -> Option<LocalHit<'_>> {
        self.find(method, authority, path)
            .filter(|hit| hit.fresh_at(now_ms))
    }

    /// The rewrite remembered for exactly this request, fresh or not: the
    /// caller judges it with `LocalHit::fresh_at` (or, without reading the
    /// host's clock, `clock::RequestClock::surely_before` its `fresh_until_ms`).
    pub fn find(&self, method: &str, authority: &str, path: &str) -> Option<LocalHit<'_>> {
        let e = self
            .slots
            .get(self.index(method, authority, path)?)?
            .as_ref()?;
        (e.path == path && e.method == method && e.authority == authority).then_some(LocalHit {
            origin: e.origin,
            rewrite: &e.rewrite,
            fresh_until_ms: e.fresh_until_ms,
        })
    }

    /// Remembers a rewrite until `fresh_until_ms`, unless it is larger than
    /// `LOCAL_ENTRY_MAX_BYTES`.
    pub fn put(
        &mut self,
        method: &str,
        authority: &str,
        path: &str,
        origin: usize,
        rewrite: &str,
        fresh_until_ms: u64,
    ) {
        if method.len() + authority.len() + path.len() + rewrite.len() > LOCAL_ENTRY_MAX_BYTES {
            return;
        }
        let Some(i) = self.index(method, authority, path) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(LocalEntry {
                method: method.to_string(),
                authority: authority.to_string(),
                path: path.to_string(),
                origin,
                rewrite: rewrite.to_string(),
                fresh_until_ms,
            });
        }
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;

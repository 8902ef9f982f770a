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

    /// The rewrite remembered for exactly this request, if still fresh at `now_ms`.
    pub fn get(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        now_ms: u64,
    ) -> Option<LocalHit<'_>> {
        let e = self
            .slots
            .get(self.index(method, authority, path)?)?
            .as_ref()?;
        (now_ms < e.fresh_until_ms
            && e.path == path
            && e.method == method
            && e.authority == authority)
            .then_some(LocalHit {
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
mod tests {
    use super::*;

    #[test]
    fn clear_forgets_every_rewrite() {
        let mut c = LocalCache::new(4);
        c.put("GET", "h", "/a", 0, "/x?sig", 10_000);
        assert!(c.get("GET", "h", "/a", 1).is_some());
        c.clear();
        assert!(c.get("GET", "h", "/a", 1).is_none());
        c.put("GET", "h", "/a", 0, "/y?sig", 10_000);
        assert_eq!(
            c.get("GET", "h", "/a", 1).map(|h| h.rewrite),
            Some("/y?sig")
        );
    }

    #[test]
    fn serves_only_exact_and_fresh_requests() {
        let mut c = LocalCache::new(8);
        c.put("GET", "h", "/m/a", 0, "/signed-a", 1000);
        assert_eq!(
            c.get("GET", "h", "/m/a", 999),
            Some(LocalHit {
                origin: 0,
                rewrite: "/signed-a",
                fresh_until_ms: 1_000,
            })
        );
        assert_eq!(
            c.get("GET", "h", "/m/a", 1000),
            None,
            "due entries go back to shared data"
        );
        assert_eq!(c.get("HEAD", "h", "/m/a", 0), None);
        assert_eq!(c.get("GET", "other", "/m/a", 0), None);
        assert_eq!(c.get("GET", "h", "/m/a?x", 0), None);
    }

    #[test]
    fn bounded_and_replacing() {
        let mut c = LocalCache::new(4);
        for i in 0..100 {
            c.put("GET", "h", &format!("/m/{i}"), 0, "/s", u64::MAX);
        }
        assert_eq!(c.slots.len(), 4);
        assert!(
            c.get("GET", "h", "/m/99", 0).is_some(),
            "the newest entry is kept"
        );
        let hits = (0..100)
            .filter(|i| c.get("GET", "h", &format!("/m/{i}"), 0).is_some())
            .count();
        assert!(hits <= 4);
    }

    /// Requests are spread over the slots: a cache with room to spare keeps
    /// most of a handful of requests that differ only in their path, rather
    /// than all of them fighting over one slot.
    #[test]
    fn distinct_requests_spread_over_the_slots() {
        let mut c = LocalCache::new(64);
        let paths: Vec<String> = (0..16).map(|i| format!("/m/img-{i}.jpg")).collect();
        for p in &paths {
            c.put("GET", "h", p, 0, p, u64::MAX);
        }
        let kept = paths
            .iter()
            .filter(|p| c.get("GET", "h", p, 0).is_some())
            .count();
        assert!(kept >= 12, "only {kept} of 16 kept in 64 slots");
    }

    #[test]
    fn oversized_requests_are_not_kept() {
        let mut c = LocalCache::new(4);
        let rewrite = "/signed";
        let fits = format!(
            "/m/a?{}",
            "j".repeat(LOCAL_ENTRY_MAX_BYTES - 5 - 3 - 1 - rewrite.len())
        );
        c.put("GET", "h", &fits, 0, rewrite, u64::MAX);
        assert!(c.get("GET", "h", &fits, 0).is_some());
        let junk = format!("{fits}j");
        c.put("GET", "h", &junk, 0, rewrite, u64::MAX);
        assert!(
            c.get("GET", "h", &junk, 0).is_none(),
            "one byte over the cap"
        );
        let host = "h".repeat(LOCAL_ENTRY_MAX_BYTES);
        c.put("GET", &host, "/m/a", 0, rewrite, u64::MAX);
        assert!(c.get("GET", &host, "/m/a", 0).is_none());
    }

    #[test]
    fn size_zero_disables() {
        let mut c = LocalCache::new(0);
        c.put("GET", "h", "/m/a", 0, "/s", u64::MAX);
        assert_eq!(c.get("GET", "h", "/m/a", 0), None);
    }
}

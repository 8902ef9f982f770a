//! The presigned-URL cache that every worker shares through Envoy's shared data:
//! slot derivation, the entry codec, the expiry/refresh policy and the
//! read → decide → compare-and-swap flow. Pure: the store is a trait (Envoy's
//! shared data in the wasm build, a map in tests) and time is an argument.
//!
//! Bounded memory: Envoy can never delete a shared-data key, so the cache only
//! ever writes keys `envoy_presign.cache.<slot>` with `slot < max_entries`; an
//! entry replaces whatever its slot held. Each entry stores the full identity
//! of what it was signed for, and a read serves it only when that identity
//! matches exactly, so two requests can never share a URL by accident.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Key prefix of the cache's shared-data keys.
pub const SLOT_KEY_PREFIX: &str = "envoy_presign.cache.";
/// How many times a CAS conflict is resolved by re-reading before giving up on
/// storing (the request is still served).
pub const MAX_CAS_ATTEMPTS: u32 = 3;

/// The shared store, as the cache needs it: Envoy's shared data semantics
/// (a `cas` token per key; a set with a stale token fails).
pub trait Store {
    /// The value and its CAS token, `(None, None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes the value; with `Some(cas)` only if the key still has that token.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another worker wrote the key since we read it.
    CasMismatch,
    /// The host refused the operation.
    Failed,
}

/// The shared-data key of a slot.
pub fn slot_key(slot: u32) -> String {
    format!("{SLOT_KEY_PREFIX}{slot}")
}

/// FNV-1a's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a hash `h` over `bytes`: cheap, and the same on every
/// worker, build and host.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The slot of an identity: FNV-1a (stable across workers, builds and hosts),
/// with MurmurHash3's finaliser so every output bit depends on every input
/// byte (plain FNV-1a modulo a small power of two only sees the low bits of
/// each byte), reduced modulo `max_entries`, so every slot is below the bound.
pub fn slot_of(identity: &str, max_entries: u32) -> u32 {
    let mut h = fnv1a(FNV_OFFSET, identity.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let n = u64::from(max_entries.max(1));
    u32::try_from(h % n).unwrap_or(0)
}

/// Magic and version of the entry format; an entry with other leading bytes is
/// treated as corrupt (or as an older format) and replaced.
const MAGIC: &[u8; 4] = b"EPC1";

/// One cached presigned URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `X-Amz-Date` of the URL, in Unix milliseconds (whole seconds).
    pub signed_at_ms: u64,
    /// When S3 stops accepting the URL, in Unix milliseconds.
    pub expires_at_ms: u64,
    /// Until when one request holds the right to refresh this entry (0: nobody).
    pub claim_until_ms: u64,
    /// Everything the URL was signed for; compared in full on every read.
    pub identity: String,
    /// The presigned `:path`.
    pub path: String,
}

/// Why bytes in a slot are not an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Another format version (an older filter wrote it).
    OtherVersion,
    /// Truncated, garbled or not UTF-8.
    Corrupt,
}

impl Entry {
    /// Serialises the entry: magic, three u64 (big-endian), then the identity
    /// and the path, each preceded by its u32 length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 24 + 8 + self.identity.len() + self.path.len());
        out.extend_from_slice(MAGIC);
        for n in [self.signed_at_ms, self.expires_at_ms, self.claim_until_ms] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        for s in [&self.identity, &self.path] {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// Parses bytes written by `encode`; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let magic = r.take(4).ok_or(DecodeError::Corrupt)?;
        if magic != MAGIC {
            return Err(if magic.starts_with(b"EPC") {
                DecodeError::OtherVersion
            } else {
                DecodeError::Corrupt
            });
        }
        let signed_at_ms = r.u64().ok_or(DecodeError::Corrupt)?;
        let expires_at_ms = r.u64().ok_or(DecodeError::Corrupt)?;
        let claim_until_ms = r.u64().ok_or(DecodeError::Corrupt)?;
        let identity = r.string().ok_or(DecodeError::Corrupt)?;
        let path = r.string().ok_or(DecodeError::Corrupt)?;
        if !r.0.is_empty() || expires_at_ms < signed_at_ms {
            return Err(DecodeError::Corrupt);
        }
        Ok(Self {
            signed_at_ms,
            expires_at_ms,
            claim_until_ms,
            identity,
            path,
        })
    }
}

/// Reads the big-endian, length-prefixed records of shared data.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn string(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Expiry settings of one origin, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `X-Amz-Expires` of every URL.
    pub expires_in_ms: u64,
    /// An entry with this much lifetime left (or less) is refreshed.
    pub refresh_before_ms: u64,
    /// An entry with less lifetime left than this is never served.
    pub min_remaining_ms: u64,
    /// Fleet-stable URLs: sign at the start of `expires_in - refresh_before`
    /// windows instead of at the current second.
    pub align: bool,
}

/// Where an entry stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// More than `refresh_before` left: serve.
    Fresh,
    /// Still servable, but due for a refresh.
    Refresh,
    /// Less than `min_remaining` left: never served.
    TooLate,
}

impl Policy {
    /// Length of an alignment window, in whole seconds (`X-Amz-Date` has
    /// second precision, so window starts must fall on whole seconds).
    pub fn window_ms(&self) -> u64 {
        let w = self.expires_in_ms.saturating_sub(self.refresh_before_ms);
        (w - w % 1000).max(1000)
    }

    /// How long one request's claim to refresh an entry holds off the others:
    /// a quarter of the refresh window, between 100 ms and 2 s, so a failed
    /// refresh is retried well before the entry stops being servable.
    pub fn claim_ms(&self) -> u64 {
        (self.refresh_before_ms.saturating_sub(self.min_remaining_ms) / 4).clamp(100, 2000)
    }

    /// The `X-Amz-Date` to sign with at `now_ms`: the current second, or with
    /// alignment the start of the current window (never in the future).
    pub fn signing_time_ms(&self, now_ms: u64) -> u64 {
        let step = if self.align { self.window_ms() } else { 1000 };
        now_ms - now_ms % step
    }

    /// Classifies an entry at `now_ms`.
    pub fn freshness(&self, entry: &Entry, now_ms: u64) -> Freshness {
        let remaining = entry.expires_at_ms.saturating_sub(now_ms);
        if now_ms > entry.expires_at_ms || remaining < self.min_remaining_ms {
            Freshness::TooLate
        } else if remaining <= self.refresh_before_ms {
            Freshness::Refresh
        } else {
            Freshness::Fresh
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How the URL of one request was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache.
    Hit,
    /// Served from the cache while another request refreshes it.
    HitRefreshing,
    /// No usable entry: signed and stored.
    Miss,
    /// The entry was due: this request signed its replacement.
    Refreshed,
    /// The refresh failed to sign; the still-valid entry was served.
    RefreshFailed,
    /// An entry for this identity was found too close to expiry although a
    /// request had claimed its refresh: the refresh failed or never finished
    /// in time (an incident). An idle entry found expired is a plain `Miss`.
    Expired,
}

/// Store operations made while resolving one request, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOps {
    /// Successful reads.
    pub get_ok: u32,
    /// Failed reads.
    pub get_err: u32,
    /// Successful writes.
    pub set_ok: u32,
    /// Writes refused by the host.
    pub set_err: u32,
    /// Writes that lost a compare-and-swap race.
    pub cas_conflicts: u32,
    /// Slots whose bytes were not a current-format entry.
    pub corrupt: u32,
    /// Slots held by an older entry format.
    pub other_version: u32,
    /// Slots holding a different identity (collision or replaced key).
    pub collisions: u32,
    /// Stores that replaced another identity's still-valid URL: keys
    /// evicting each other, what a too-small table costs.
    pub evictions: u32,
}

/// The URL a request gets, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Presigned `:path`.
    pub path: String,
    /// When the URL expires (Unix ms), so a per-worker copy can obey the same
    /// expiry rules.
    pub expires_at_ms: u64,
    /// How it was obtained.
    pub outcome: Outcome,
    /// What it cost in store operations.
    pub ops: StoreOps,
}

/// A signer: given the `X-Amz-Date` (Unix ms) and lifetime, the presigned path.
pub type SignAt<'a, E> = dyn FnMut(SystemTime, Duration) -> Result<String, E> + 'a;

/// The key facts of one cached lookup.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// Shared-data key of the slot.
    pub slot_key: &'a str,
    /// Full identity of the URL wanted.
    pub identity: &'a str,
    /// Expiry settings.
    pub policy: &'a Policy,
    /// Current time, Unix ms.
    pub now_ms: u64,
    /// No URL may outlive this (Unix ms): when the credentials stop working,
    /// less a margin. `u64::MAX` for static keys.
    pub not_after_ms: u64,
}

/// Finds or makes the URL for `lookup`, reading and writing the slot with CAS.
/// Conflicts are resolved by re-reading, at most `MAX_CAS_ATTEMPTS` times;
/// after that the request is served with the URL it has, unstored.
pub fn resolve<S: Store + ?Sized, E>(
    store: &S,
    lookup: Lookup<'_>,
    sign: &mut SignAt<'_, E>,
) -> Result<Resolved, (E, StoreOps)> {
    let mut ops = StoreOps::default();
    let policy = lookup.policy;
    let now_ms = lookup.now_ms;
    // A URL this request signed, kept across CAS retries so it signs once.
    let mut signed: Option<Entry> = None;
    // A claimed entry found too late: its refresh failed or starved.
    let mut refresh_missed = false;

    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = match store.get(lookup.slot_key) {
            Ok(v) => {
                ops.get_ok += 1;
                v
            }
            Err(_) => {
                ops.get_err += 1;
                (None, None)
            }
        };
        // The slot holds another identity's still-valid URL.
        let mut displacing = false;
        let current = bytes.and_then(|b| match Entry::decode(&b) {
            Ok(e) if e.identity == lookup.identity => Some(e),
            Ok(e) => {
                ops.collisions += 1;
                displacing = e.expires_at_ms > now_ms;
                None
            }
            Err(DecodeError::OtherVersion) => {
                ops.other_version += 1;
                None
            }
            Err(DecodeError::Corrupt) => {
                ops.corrupt += 1;
                None
            }
        });

        if let Some(entry) = current {
            match policy.freshness(&entry, now_ms) {
                Freshness::Fresh => {
                    return Ok(resolved(entry, Outcome::Hit, ops, signed.is_some()))
                }
                Freshness::Refresh if entry.claim_until_ms > now_ms => {
                    return Ok(resolved(
                        entry,
                        Outcome::HitRefreshing,
                        ops,
                        signed.is_some(),
                    ))
                }
                Freshness::Refresh => {
                    let claimed = Entry {
                        claim_until_ms: now_ms + policy.claim_ms(),
                        ..entry.clone()
                    };
                    match store.set(lookup.slot_key, &claimed.encode(), cas) {
                        Ok(()) => ops.set_ok += 1,
                        Err(e) => {
                            count_set_error(&mut ops, e);
                            continue;
                        }
                    }
                    // We hold the claim: sign the replacement; on failure the
                    // old URL is still valid and the claim lapses by itself.
                    return match sign_entry(lookup, sign) {
                        Ok(fresh) => {
                            // Unconditional: our claim keeps other refreshers
                            // off; a colliding key may still take the slot.
                            match store.set(lookup.slot_key, &fresh.encode(), None) {
                                Ok(()) => ops.set_ok += 1,
                                Err(e) => count_set_error(&mut ops, e),
                            }
                            Ok(Resolved {
                                path: fresh.path,
                                expires_at_ms: fresh.expires_at_ms,
                                outcome: Outcome::Refreshed,
                                ops,
                            })
                        }
                        Err(_) => Ok(resolved(entry, Outcome::RefreshFailed, ops, false)),
                    };
                }
                Freshness::TooLate => refresh_missed = entry.claim_until_ms != 0,
            }
        }

        // Miss (or too late): sign once, then store with CAS.
        let entry = match signed.take() {
            Some(e) => e,
            None => sign_entry(lookup, sign).map_err(|e| (e, ops))?,
        };
        match store.set(lookup.slot_key, &entry.encode(), cas) {
            Ok(()) => {
                ops.set_ok += 1;
                ops.evictions += u32::from(displacing);
                return Ok(resolved(entry, miss_outcome(refresh_missed), ops, false));
            }
            Err(e) => {
                count_set_error(&mut ops, e);
                signed = Some(entry);
                if e == StoreError::Failed {
                    break;
                }
            }
        }
    }
    // Out of attempts (or the store is failing): serve what we signed, unstored.
    let entry = match signed {
        Some(e) => e,
        None => sign_entry(lookup, sign).map_err(|e| (e, ops))?,
    };
    Ok(resolved(entry, miss_outcome(refresh_missed), ops, false))
}

/// A request that signed because no entry could be served: an incident when
/// the entry's refresh had been claimed and never completed.
fn miss_outcome(refresh_missed: bool) -> Outcome {
    if refresh_missed {
        Outcome::Expired
    } else {
        Outcome::Miss
    }
}

/// The answer for `entry`. A hit served after this request had already signed
/// (it lost a CAS race to an equivalent entry) still counts as the miss it was.
fn resolved(entry: Entry, outcome: Outcome, ops: StoreOps, signed_already: bool) -> Resolved {
    let outcome = if signed_already {
        Outcome::Miss
    } else {
        outcome
    };
    Resolved {
        path: entry.path,
        expires_at_ms: entry.expires_at_ms,
        outcome,
        ops,
    }
}

fn count_set_error(ops: &mut StoreOps, e: StoreError) {
    match e {
        StoreError::CasMismatch => ops.cas_conflicts += 1,
        StoreError::Failed => ops.set_err += 1,
    }
}

/// `X-Amz-Expires` (ms, whole seconds) of a URL signed at `signed_at_ms`:
/// the configured lifetime, cut so the URL never outlives `not_after_ms`.
pub fn capped_expiry_ms(expires_in_ms: u64, signed_at_ms: u64, not_after_ms: u64) -> u64 {
    let room = not_after_ms.saturating_sub(signed_at_ms);
    expires_in_ms.min(room - room % 1000)
}

fn sign_entry<E>(lookup: Lookup<'_>, sign: &mut SignAt<'_, E>) -> Result<Entry, E> {
    let policy = lookup.policy;
    let signed_at_ms = policy.signing_time_ms(lookup.now_ms);
    let expires_in_ms = capped_expiry_ms(policy.expires_in_ms, signed_at_ms, lookup.not_after_ms);
    let path = sign(
        UNIX_EPOCH + Duration::from_millis(signed_at_ms),
        Duration::from_millis(expires_in_ms),
    )?;
    Ok(Entry {
        signed_at_ms,
        expires_at_ms: signed_at_ms + expires_in_ms,
        claim_until_ms: 0,
        identity: lookup.identity.to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

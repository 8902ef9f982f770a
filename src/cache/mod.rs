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

pub mod local;
pub mod scan;

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
mod tests;

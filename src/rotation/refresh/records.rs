//! What the refresher keeps in shared data, and its byte encodings: the
//! credentials every worker signs with (`Record`), the shared refresh status
//! with its back-off (`Status`), and who refreshes (`Lease`). Each starts with
//! a magic, so a value of another kind or version decodes to `None`.

use crate::cache::Reader;
use crate::sigv4::credentials::Credentials;

const RECORD_MAGIC: &[u8; 4] = b"EPK1";
const STATUS_MAGIC: &[u8; 4] = b"EPS1";
const LEASE_MAGIC: &[u8; 4] = b"EPL1";

/// The root context's tick: how often each worker looks at shared data.
pub(super) const TICK_MS: u64 = 1000;

/// The credentials every worker signs with, as stored in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The credentials, with their expiry.
    pub credentials: Credentials,
    /// When they were obtained (Unix ms): with the expiry, their lifetime.
    pub obtained_ms: u64,
    /// Which source gave them (its metric label).
    pub source: String,
}

impl Record {
    /// magic, obtained, expiry, then source, key id, secret and token as
    /// length-prefixed strings (an empty token: none).
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.credentials;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(RECORD_MAGIC);
        out.extend_from_slice(&self.obtained_ms.to_be_bytes());
        out.extend_from_slice(&c.expires_at_ms().unwrap_or(0).to_be_bytes());
        for s in [
            self.source.as_str(),
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token().unwrap_or(""),
        ] {
            put_string(&mut out, s);
        }
        out
    }

    /// Parses what `encode` wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.take(4)? == RECORD_MAGIC).then_some(())?;
        let obtained_ms = r.u64()?;
        let expires_ms = r.u64()?;
        let source = r.string()?;
        let id = r.string()?;
        let secret = r.string()?;
        let token = r.string()?;
        if !r.0.is_empty() || id.is_empty() || secret.is_empty() || expires_ms == 0 {
            return None;
        }
        let token = (!token.is_empty()).then_some(token);
        Some(Self {
            credentials: Credentials::temporary(id, secret, token, expires_ms),
            obtained_ms,
            source,
        })
    }

    /// When a refresh is due: `before` ahead of expiry, but never earlier
    /// than half-way through the credentials' life (short-lived credentials
    /// are not refreshed right after they arrive), and in any case a tick
    /// before they stop signing (`stops_ms` before expiry).
    pub fn refresh_at_ms(&self, before_ms: u64, stops_ms: u64) -> u64 {
        let half_life = self.expires_ms().saturating_sub(self.obtained_ms) / 2;
        let ahead = self.expires_ms().saturating_sub(before_ms.min(half_life));
        ahead.min(self.stops_at_ms(stops_ms).saturating_sub(TICK_MS))
    }

    /// When they stop signing: `stops_ms` before expiry.
    pub fn stops_at_ms(&self, stops_ms: u64) -> u64 {
        self.expires_ms().saturating_sub(stops_ms)
    }

    fn expires_ms(&self) -> u64 {
        self.credentials.expires_at_ms().unwrap_or(0)
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The shared refresh status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Failed refreshes since the last success.
    pub failures: u32,
    /// No refresh before this time (Unix ms): the shared back-off.
    pub next_attempt_ms: u64,
    /// The last failure's code (`Failure::code`), 0 after a success.
    pub last_failure: u8,
    /// The VM that made the last attempt (its owner id).
    pub last_owner: u64,
}

impl Status {
    /// magic, failures, next attempt, last failure, last owner.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        out.extend_from_slice(STATUS_MAGIC);
        out.extend_from_slice(&self.failures.to_be_bytes());
        out.extend_from_slice(&self.next_attempt_ms.to_be_bytes());
        out.push(self.last_failure);
        out.extend_from_slice(&self.last_owner.to_be_bytes());
        out
    }

    /// Parses what `encode` wrote; `None` for anything else.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.take(4)? == STATUS_MAGIC).then_some(())?;
        let failures = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let next_attempt_ms = r.u64()?;
        let last_failure = *r.take(1)?.first()?;
        let last_owner = r.u64()?;
        r.0.is_empty().then_some(Self {
            failures,
            next_attempt_ms,
            last_failure,
            last_owner,
        })
    }
}

/// Who refreshes, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    /// The refreshing VM's owner id; 0 when the lease is free.
    pub(super) owner: u64,
    /// When the lease lapses (Unix ms).
    pub(super) until_ms: u64,
}

impl Lease {
    /// The free lease: no owner, lapsed.
    pub(super) const FREE: Lease = Lease {
        owner: 0,
        until_ms: 0,
    };

    /// magic, owner, until.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20);
        out.extend_from_slice(LEASE_MAGIC);
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.until_ms.to_be_bytes());
        out
    }

    /// Parses what `encode` wrote; `None` for anything else.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.take(4)? == LEASE_MAGIC).then_some(())?;
        let owner = r.u64()?;
        let until_ms = r.u64()?;
        r.0.is_empty().then_some(Self { owner, until_ms })
    }
}

//! Rotating credentials across workers: one worker at a time refreshes
//! (a lease in shared data: Envoy has no singleton for HTTP filters), every
//! worker adopts the result from shared data on its tick, and requests only
//! ever read the worker's own copy. Pure: the store, the calls and the time
//! are arguments; the glue turns the events into metrics.
//!
//! Shared data, per credentials setup (`Rotating::fingerprint`):
//! - `…current`: the last good credentials, never overwritten by a failure;
//! - `…status`: consecutive failures and the next attempt, so back-off is
//!   shared and does not multiply by the number of workers;
//! - `…lease`: which worker refreshes, until when.

use std::time::SystemTime;

use crate::cache::{unix_ms, Reader, Store};
use crate::cred_config::Rotating;
use crate::cred_fetch::{Call, Failure, Fetch, Reply, Step};
use crate::credentials::Credentials;

const RECORD_MAGIC: &[u8; 4] = b"EPK1";
const STATUS_MAGIC: &[u8; 4] = b"EPS1";
const LEASE_MAGIC: &[u8; 4] = b"EPL1";

/// Shared-data key prefix of the credential records.
pub const KEY_PREFIX: &str = "envoy_presign.cred.";

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
    /// are not refreshed right after they arrive).
    pub fn refresh_at_ms(&self, before_ms: u64) -> u64 {
        let expires = self.credentials.expires_at_ms().unwrap_or(0);
        let half_life = expires.saturating_sub(self.obtained_ms) / 2;
        expires.saturating_sub(before_ms.min(half_life))
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
}

impl Status {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        out.extend_from_slice(STATUS_MAGIC);
        out.extend_from_slice(&self.failures.to_be_bytes());
        out.extend_from_slice(&self.next_attempt_ms.to_be_bytes());
        out.push(self.last_failure);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.take(4)? == STATUS_MAGIC).then_some(())?;
        let failures = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let next_attempt_ms = r.u64()?;
        let last_failure = *r.take(1)?.first()?;
        r.0.is_empty().then_some(Self {
            failures,
            next_attempt_ms,
            last_failure,
        })
    }
}

/// Who refreshes, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    owner: u64,
    until_ms: u64,
}

impl Lease {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20);
        out.extend_from_slice(LEASE_MAGIC);
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.until_ms.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.take(4)? == LEASE_MAGIC).then_some(())?;
        let owner = r.u64()?;
        let until_ms = r.u64()?;
        r.0.is_empty().then_some(Self { owner, until_ms })
    }
}

/// The delay before retrying after `failures` consecutive failures: doubling
/// from `min` up to `max`, then spread by up to a quarter either way (`seed`
/// picks where), so a fleet that failed together does not retry together.
pub fn backoff_ms(failures: u32, min_ms: u64, max_ms: u64, seed: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(32);
    let base = min_ms.saturating_mul(1u64 << doublings).min(max_ms);
    let quarter = base / 4;
    let spread = if quarter == 0 {
        0
    } else {
        seed % (2 * quarter + 1)
    };
    (base - quarter + spread).max(1)
}

/// What the host does for the refresher: dispatch a call (the token the
/// answer will carry, or `None` when Envoy refused it).
pub trait Dispatcher {
    /// Sends `call`; `None` if Envoy refused it (unknown cluster).
    fn dispatch(&self, call: &Call) -> Option<u32>;
}

/// Something the glue reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A source answered with credentials.
    Refreshed {
        /// The source's label.
        source: &'static str,
    },
    /// A source failed (the chain then tries the next one).
    Failed {
        /// The source's label.
        source: &'static str,
        /// Why.
        failure: Failure,
    },
    /// Every source of the chain failed; the next attempt is `retry_in_ms` away.
    GaveUp {
        /// The shared back-off delay.
        retry_in_ms: u64,
    },
    /// This worker now signs with new credentials (from any worker's refresh).
    Adopted,
}

/// The refresh this worker is making.
#[derive(Debug)]
struct InFlight {
    fetch: Fetch,
    /// Position in the chain.
    position: usize,
    /// The answer expected.
    token: u32,
    /// Past this, the answer is no longer awaited (the lease has lapsed).
    deadline_ms: u64,
}

/// One worker's side of the rotation.
#[derive(Debug)]
pub struct Refresher {
    setup: Rotating,
    owner: u64,
    /// The CAS of the record this worker adopted.
    adopted_cas: Option<u32>,
    /// What this worker signs with.
    current: Option<Record>,
    /// The shared status, as last read.
    status: Status,
    in_flight: Option<InFlight>,
}

impl Refresher {
    /// A worker's refresher; `owner` identifies it in the lease (non-zero).
    pub fn new(setup: Rotating, owner: u64) -> Self {
        Self {
            setup,
            owner,
            adopted_cas: None,
            current: None,
            status: Status::default(),
            in_flight: None,
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{KEY_PREFIX}{}.{what}", self.setup.fingerprint)
    }

    /// The credentials this worker signs with, if any.
    pub fn current(&self) -> Option<&Record> {
        self.current.as_ref()
    }

    /// The shared status as last read.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Seconds a client should wait before retrying a request refused for
    /// want of credentials: until the next attempt, at least 1.
    pub fn retry_after_secs(&self, now: SystemTime) -> u32 {
        let wait = self.status.next_attempt_ms.saturating_sub(unix_ms(now));
        u32::try_from(wait.div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// Runs once per tick: adopts what another worker stored, gives up on a
    /// call that never came back, and starts a refresh when one is due and
    /// this worker wins the lease.
    pub fn tick<S: Store + ?Sized>(
        &mut self,
        store: &S,
        host: &dyn Dispatcher,
        now: SystemTime,
    ) -> Vec<Event> {
        let now_ms = unix_ms(now);
        let mut events = Vec::new();
        self.adopt(store, &mut events);
        if let Ok((Some(bytes), _)) = store.get(&self.key("status")) {
            if let Some(s) = Status::decode(&bytes) {
                self.status = s;
            }
        }
        if let Some(f) = &self.in_flight {
            if now_ms <= f.deadline_ms {
                return events;
            }
            let source = f.fetch.label();
            self.in_flight = None;
            events.push(Event::Failed {
                source,
                failure: Failure::Abandoned,
            });
            // Once another worker has taken the lapsed lease over, the shared
            // status is its refresh's: a late give-up would record a failure
            // after its success, or count its failure twice.
            if self.holds_lease(store) {
                self.give_up(store, now_ms, Failure::Abandoned, &mut events);
            }
            return events;
        }
        let due = self
            .current
            .as_ref()
            .is_none_or(|r| now_ms >= r.refresh_at_ms(self.setup.refresh.before_ms));
        if !due || now_ms < self.status.next_attempt_ms || !self.take_lease(store, now_ms) {
            return events;
        }
        self.start_after(0, None, store, host, now, &mut events);
        events
    }

    /// Feeds the answer to call `token`; an answer this worker is not
    /// waiting for is ignored.
    pub fn on_reply<S: Store + ?Sized>(
        &mut self,
        token: u32,
        reply: Reply<'_>,
        store: &S,
        host: &dyn Dispatcher,
        now: SystemTime,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(mut f) = self.in_flight.take() else {
            return events;
        };
        if f.token != token {
            self.in_flight = Some(f);
            return events;
        }
        let step = f.fetch.on_reply(reply, now);
        self.advance(f, step, store, host, now, &mut events);
        events
    }

    fn adopt<S: Store + ?Sized>(&mut self, store: &S, events: &mut Vec<Event>) {
        let Ok((Some(bytes), cas)) = store.get(&self.key("current")) else {
            return;
        };
        if cas.is_some() && cas == self.adopted_cas {
            return;
        }
        if let Some(r) = Record::decode(&bytes) {
            if self.current.as_ref() != Some(&r) {
                self.current = Some(r);
                events.push(Event::Adopted);
            }
            self.adopted_cas = cas;
        }
    }

    /// Claims the lease when it is free or lapsed (CAS: one winner).
    fn take_lease<S: Store + ?Sized>(&self, store: &S, now_ms: u64) -> bool {
        let key = self.key("lease");
        let Ok((bytes, cas)) = store.get(&key) else {
            return false;
        };
        if let Some(l) = bytes.as_deref().and_then(Lease::decode) {
            if l.until_ms > now_ms && l.owner != self.owner {
                return false;
            }
        }
        let lease = Lease {
            owner: self.owner,
            until_ms: now_ms.saturating_add(self.setup.refresh.lease_ms),
        };
        store.set(&key, &lease.encode(), cas).is_ok()
    }

    /// Whether the lease is still recorded as this worker's (lapsed or not).
    fn holds_lease<S: Store + ?Sized>(&self, store: &S) -> bool {
        matches!(store.get(&self.key("lease")), Ok((Some(bytes), _))
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner))
    }

    fn release_lease<S: Store + ?Sized>(&self, store: &S) {
        let key = self.key("lease");
        if let Ok((Some(bytes), cas)) = store.get(&key) {
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner) {
                let free = Lease {
                    owner: 0,
                    until_ms: 0,
                };
                let _ = store.set(&key, &free.encode(), cas);
            }
        }
    }

    /// Starts the chain's source at `position` (or gives up past its end,
    /// reporting `last`).
    fn start_after<S: Store + ?Sized>(
        &mut self,
        position: usize,
        last: Option<Failure>,
        store: &S,
        host: &dyn Dispatcher,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) {
        let Some(source) = self.setup.chain.get(position) else {
            let failure = last.unwrap_or(Failure::Dispatch);
            self.give_up(store, unix_ms(now), failure, events);
            return;
        };
        let mut fetch = Fetch::new(source);
        let step = fetch.begin(now);
        let f = InFlight {
            fetch,
            position,
            token: 0,
            deadline_ms: unix_ms(now).saturating_add(self.setup.refresh.lease_ms),
        };
        self.advance(f, step, store, host, now, events);
    }

    fn advance<S: Store + ?Sized>(
        &mut self,
        mut f: InFlight,
        step: Step,
        store: &S,
        host: &dyn Dispatcher,
        now: SystemTime,
        events: &mut Vec<Event>,
    ) {
        let source = f.fetch.label();
        let failure = match step {
            Step::Call(call) => match host.dispatch(&call) {
                Some(token) => {
                    f.token = token;
                    self.in_flight = Some(f);
                    return;
                }
                None => Failure::Dispatch,
            },
            Step::Done(credentials) => {
                self.succeed(store, credentials, source, unix_ms(now), events);
                return;
            }
            Step::Failed(failure) => failure,
        };
        events.push(Event::Failed { source, failure });
        self.start_after(f.position + 1, Some(failure), store, host, now, events);
    }

    fn succeed<S: Store + ?Sized>(
        &mut self,
        store: &S,
        credentials: Credentials,
        source: &'static str,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        events.push(Event::Refreshed { source });
        let record = Record {
            credentials,
            obtained_ms: now_ms,
            source: source.to_string(),
        };
        let _ = store.set(&self.key("current"), &record.encode(), None);
        self.status = Status::default();
        let _ = store.set(&self.key("status"), &self.status.encode(), None);
        self.release_lease(store);
        if self.current.as_ref() != Some(&record) {
            self.current = Some(record);
            self.adopted_cas = None;
            events.push(Event::Adopted);
        }
    }

    fn give_up<S: Store + ?Sized>(
        &mut self,
        store: &S,
        now_ms: u64,
        failure: Failure,
        events: &mut Vec<Event>,
    ) {
        let r = &self.setup.refresh;
        let failures = self.status.failures.saturating_add(1);
        let seed = self.owner ^ now_ms;
        let retry_in_ms = backoff_ms(failures, r.retry_min_ms, r.retry_max_ms, seed);
        self.status = Status {
            failures,
            next_attempt_ms: now_ms.saturating_add(retry_in_ms),
            last_failure: failure.code(),
        };
        let _ = store.set(&self.key("status"), &self.status.encode(), None);
        self.release_lease(store);
        events.push(Event::GaveUp { retry_in_ms });
    }
}


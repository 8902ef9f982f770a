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

use crate::cache::{Reader, Store};
use crate::config::credentials::Rotating;
use crate::rotation::fetch::{Call, Failure, Fetch, Reply, Step};
use crate::rotation::now::Now;
use crate::sigv4::credentials::Credentials;

const RECORD_MAGIC: &[u8; 4] = b"EPK1";
const STATUS_MAGIC: &[u8; 4] = b"EPS1";
const LEASE_MAGIC: &[u8; 4] = b"EPL1";

/// The root context's tick: how often each worker looks at shared data.
const TICK_MS: u64 = 1000;

/// Shared-data key prefix of the credential records.
pub const KEY_PREFIX: &str = "envoy_presign.cred.";
/// How long a serving VM's heartbeat lasts; renewed every tick past half of
/// it. Once serving VMs are gone (a configuration reload replaced them) the
/// others refresh within this long.
pub const SERVING_HEARTBEAT_MS: u64 = 5 * TICK_MS;

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
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25);
        out.extend_from_slice(STATUS_MAGIC);
        out.extend_from_slice(&self.failures.to_be_bytes());
        out.extend_from_slice(&self.next_attempt_ms.to_be_bytes());
        out.push(self.last_failure);
        out.extend_from_slice(&self.last_owner.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
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
    /// The source failed (the refresh then gives up until its back-off ends).
    Failed {
        /// The source's label.
        source: &'static str,
        /// Why.
        failure: Failure,
    },
    /// The refresh failed; the next attempt is `retry_in_ms` away.
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
    /// This VM handles requests (Envoy also runs one on its main thread,
    /// which never does: see `mark_serving`).
    serving: bool,
    /// Until when (Unix ms) this VM's last heartbeat says it serves.
    heartbeat_until_ms: u64,
    /// Whether this VM has seen the lease key exist at an earlier look: only
    /// then may it claim it (see `take_lease`).
    lease_seen: bool,
    /// The shared-data keys, built once.
    keys: Keys,
}

/// The shared-data keys of one credentials setup.
#[derive(Debug)]
struct Keys {
    current: String,
    status: String,
    lease: String,
    serving: String,
}

impl Refresher {
    /// A worker's refresher; `owner` identifies it in the lease (non-zero).
    pub fn new(setup: Rotating, owner: u64) -> Self {
        Self {
            owner,
            adopted_cas: None,
            current: None,
            status: Status::default(),
            in_flight: None,
            serving: false,
            heartbeat_until_ms: 0,
            lease_seen: false,
            keys: {
                let key = |what: &str| format!("{KEY_PREFIX}{}.{what}", setup.fingerprint);
                Keys {
                    current: key("current"),
                    status: key("status"),
                    lease: key("lease"),
                    serving: key("serving"),
                }
            },
            setup,
        }
    }

    /// Looks at the lease key once at startup (creating it free when it
    /// does not exist), so the first tick may already claim it.
    pub fn prepared<S: Store + ?Sized>(mut self, store: &S) -> Self {
        self.look_at_lease(store);
        self
    }

    /// Records that this VM handles requests. Envoy runs the filter's VM on
    /// each worker and one more on its main thread, which handles no request
    /// and cannot reach an internal listener (no connection handler is
    /// there): its calls to the token-adding clusters fail. So while any VM
    /// serves (its heartbeat in shared data, renewed every tick, is
    /// current), only serving VMs refresh; when none does (an idle Envoy, or
    /// one whose serving VMs were replaced by a configuration reload) every
    /// VM may, but not twice in a row after failing itself, so the others
    /// get turns.
    pub fn mark_serving(&mut self) {
        self.serving = true;
    }

    /// Renews this serving VM's heartbeat when half of it has passed.
    fn beat<S: Store + ?Sized>(&mut self, store: &S, now_ms: u64) {
        let renew_at = self
            .heartbeat_until_ms
            .saturating_sub(SERVING_HEARTBEAT_MS / 2);
        if self.serving && now_ms >= renew_at {
            let until = now_ms.saturating_add(SERVING_HEARTBEAT_MS);
            if store
                .set(&self.keys.serving, &until.to_be_bytes(), None)
                .is_ok()
            {
                self.heartbeat_until_ms = until;
            }
        }
    }

    /// Whether this VM may take the lease now (see `mark_serving`).
    fn may_refresh<S: Store + ?Sized>(&self, store: &S, now_ms: u64) -> bool {
        if self.serving {
            return true;
        }
        let workers_serve = match store.get(&self.keys.serving) {
            Ok((Some(bytes), _)) => {
                <[u8; 8]>::try_from(bytes.as_slice()).is_ok_and(|b| u64::from_be_bytes(b) > now_ms)
            }
            _ => false,
        };
        let failed_last = self.status.failures > 0 && self.status.last_owner == self.owner;
        !workers_serve && !failed_last
    }

    /// Whether a refresh of this worker's credentials is due at `now_ms`.
    fn due(&self, now_ms: u64) -> bool {
        let r = &self.setup.refresh;
        self.current
            .as_ref()
            .is_none_or(|c| now_ms >= c.refresh_at_ms(r.before_ms, r.stops_signing_ms))
    }

    /// The credentials this worker signs with, if any.
    pub fn current(&self) -> Option<&Record> {
        self.current.as_ref()
    }

    /// What the credentials held allow at `now_ms`, for the log line of a
    /// failed refresh: each message says what is true at that moment.
    pub fn state_at(&self, now_ms: u64) -> String {
        let stops = self.setup.refresh.stops_signing_ms;
        match &self.current {
            Some(r) if now_ms < r.stops_at_ms(stops) => format!(
                "signing with the last good credentials for {} s more",
                (r.stops_at_ms(stops) - now_ms) / 1000
            ),
            Some(_) => "the last credentials no longer sign: matched requests get 503 credentials_unavailable".into(),
            None => "no credentials yet: matched requests get 503 credentials_unavailable".into(),
        }
    }

    /// The shared status as last read.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Seconds a client should wait before retrying a request refused for
    /// want of credentials: until the next attempt, at least 1.
    pub fn retry_after_secs(&self, now: SystemTime) -> u32 {
        let wait = self.status.next_attempt_ms.saturating_sub(Now::at(now).ms);
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
        let now = Now::at(now);
        let mut events = Vec::new();
        self.beat(store, now.ms);
        self.adopt(store, &mut events);
        if let Ok((Some(bytes), _)) = store.get(&self.keys.status) {
            if let Some(s) = Status::decode(&bytes) {
                self.status = s;
            }
        }
        if let Some(f) = &self.in_flight {
            if now.ms <= f.deadline_ms {
                return events;
            }
            events.extend(self.tick_abandon(store, now.ms));
            return events;
        }
        if !self.due(now.ms)
            || now.ms < self.status.next_attempt_ms
            || !self.may_refresh(store, now.ms)
            || !self.take_lease(store, now.ms)
        {
            return events;
        }
        let deadline_ms = now.ms.saturating_add(self.setup.refresh.lease_ms);
        let mut fetch = Fetch::new(&self.setup.source);
        let step = fetch.begin(now);
        let f = InFlight {
            fetch,
            token: 0,
            deadline_ms,
        };
        self.advance(f, step, store, host, now.ms, &mut events);
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
        let now = Now::at(now);
        let mut events = Vec::new();
        let Some(mut f) = self.in_flight.take() else {
            return events;
        };
        if f.token != token {
            self.in_flight = Some(f);
            return events;
        }
        if now.ms > f.deadline_ms {
            // Past the lease: another worker may be refreshing; this answer
            // is the abandoned call's, reported as `tick` would.
            self.in_flight = Some(f);
            return self.tick_abandon(store, now.ms);
        }
        let step = f.fetch.on_reply(reply, now);
        self.advance(f, step, store, host, now.ms, &mut events);
        events
    }

    /// Gives up on the call in flight, past its lease.
    fn tick_abandon<S: Store + ?Sized>(&mut self, store: &S, now_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(f) = self.in_flight.take() else {
            return events;
        };
        events.push(Event::Failed {
            source: f.fetch.label(),
            failure: Failure::Abandoned,
        });
        // Once another worker has taken the lapsed lease over, the shared
        // status is its refresh's: a late give-up would record a failure
        // after its success, or count its failure twice.
        if self.holds_lease(store) {
            self.give_up(store, now_ms, Failure::Abandoned, &mut events);
        }
        events
    }

    /// Adopts what shared data holds while this worker has no credentials
    /// that sign: a request then picks up credentials another worker has
    /// just stored instead of waiting for this worker's tick. One
    /// shared-data read per such request, and none while the credentials
    /// sign (a refresh is due before they stop, and the tick adopts its
    /// result). Returns whether the credentials changed.
    pub fn catch_up<S: Store + ?Sized>(&mut self, store: &S, now: SystemTime) -> bool {
        let now_ms = Now::at(now).ms;
        let stops = self.setup.refresh.stops_signing_ms;
        let signs = self
            .current
            .as_ref()
            .is_some_and(|r| now_ms < r.stops_at_ms(stops));
        let mut events = Vec::new();
        if !signs {
            self.adopt(store, &mut events);
        }
        !events.is_empty()
    }

    fn adopt<S: Store + ?Sized>(&mut self, store: &S, events: &mut Vec<Event>) {
        let Ok((Some(bytes), cas)) = store.get(&self.keys.current) else {
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

    /// Reads the lease key, creating it free when it does not exist; returns
    /// what was read, and whether this VM had seen (or created) the key at an
    /// earlier look.
    fn look_at_lease<S: Store + ?Sized>(&mut self, store: &S) -> Option<(Vec<u8>, u32, bool)> {
        let key = &self.keys.lease;
        match store.get(key) {
            Ok((Some(bytes), Some(cas))) => {
                let seen_before = std::mem::replace(&mut self.lease_seen, true);
                Some((bytes, cas, seen_before))
            }
            Ok((None, _)) => {
                let free = Lease {
                    owner: 0,
                    until_ms: 0,
                };
                self.lease_seen = store.set(key, &free.encode(), None).is_ok();
                None
            }
            _ => None,
        }
    }

    /// Claims the lease when it is free or lapsed (CAS: one winner). A write
    /// creates a missing key whatever the CAS, so a VM that read "no key"
    /// just before another created and claimed it would wipe that claim when
    /// it creates the key in turn, and both would refresh. So the key is
    /// created free, and a VM claims it only from its second look on
    /// (`prepared` at startup is the first): by then, a tick later, every
    /// creation from a stale read has landed, and claims are true CASes.
    fn take_lease<S: Store + ?Sized>(&mut self, store: &S, now_ms: u64) -> bool {
        let Some((bytes, cas, seen_before)) = self.look_at_lease(store) else {
            return false;
        };
        if !seen_before {
            return false;
        }
        if let Some(l) = Lease::decode(&bytes) {
            if l.until_ms > now_ms && l.owner != self.owner {
                return false;
            }
        }
        let lease = Lease {
            owner: self.owner,
            until_ms: now_ms.saturating_add(self.setup.refresh.lease_ms),
        };
        store
            .set(&self.keys.lease, &lease.encode(), Some(cas))
            .is_ok()
    }

    /// Whether the lease is still recorded as this worker's (lapsed or not).
    fn holds_lease<S: Store + ?Sized>(&self, store: &S) -> bool {
        matches!(store.get(&self.keys.lease), Ok((Some(bytes), _))
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner))
    }

    fn release_lease<S: Store + ?Sized>(&self, store: &S) {
        let key = &self.keys.lease;
        if let Ok((Some(bytes), cas)) = store.get(key) {
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner) {
                let free = Lease {
                    owner: 0,
                    until_ms: 0,
                };
                let _ = store.set(key, &free.encode(), cas);
            }
        }
    }

    fn advance<S: Store + ?Sized>(
        &mut self,
        mut f: InFlight,
        step: Step,
        store: &S,
        host: &dyn Dispatcher,
        now_ms: u64,
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
            // Credentials that would not even sign are no success: the
            // last good ones stay.
            Step::Done(credentials)
                if credentials.expires_at_ms().is_some_and(|e| {
                    e <= now_ms.saturating_add(self.setup.refresh.stops_signing_ms)
                }) =>
            {
                Failure::Expired
            }
            Step::Done(credentials) => {
                self.succeed(store, credentials, source, now_ms, events);
                return;
            }
            Step::Failed(failure) => failure,
        };
        events.push(Event::Failed { source, failure });
        self.give_up(store, now_ms, failure, events);
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
        let _ = store.set(&self.keys.current, &record.encode(), None);
        self.status = Status {
            last_owner: self.owner,
            ..Status::default()
        };
        let _ = store.set(&self.keys.status, &self.status.encode(), None);
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
            last_owner: self.owner,
        };
        let _ = store.set(&self.keys.status, &self.status.encode(), None);
        self.release_lease(store);
        events.push(Event::GaveUp { retry_in_ms });
    }
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;

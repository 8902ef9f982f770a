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
        self.beat(store, now_ms);
        self.adopt(store, &mut events);
        if let Ok((Some(bytes), _)) = store.get(&self.keys.status) {
            if let Some(s) = Status::decode(&bytes) {
                self.status = s;
            }
        }
        if let Some(f) = &self.in_flight {
            if now_ms <= f.deadline_ms {
                return events;
            }
            events.extend(self.tick_abandon(store, now_ms));
            return events;
        }
        if !self.due(now_ms)
            || now_ms < self.status.next_attempt_ms
            || !self.may_refresh(store, now_ms)
            || !self.take_lease(store, now_ms)
        {
            return events;
        }
        let deadline_ms = now_ms.saturating_add(self.setup.refresh.lease_ms);
        let mut fetch = Fetch::new(&self.setup.source);
        let step = fetch.begin(now);
        let f = InFlight {
            fetch,
            token: 0,
            deadline_ms,
        };
        self.advance(f, step, store, host, now, &mut events);
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
        if unix_ms(now) > f.deadline_ms {
            // Past the lease: another worker may be refreshing; this answer
            // is the abandoned call's, reported as `tick` would.
            self.in_flight = Some(f);
            return self.tick_abandon(store, unix_ms(now));
        }
        let step = f.fetch.on_reply(reply, now);
        self.advance(f, step, store, host, now, &mut events);
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
        let stops = self.setup.refresh.stops_signing_ms;
        let signs = self
            .current
            .as_ref()
            .is_some_and(|r| unix_ms(now) < r.stops_at_ms(stops));
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
            // Credentials that would not even sign are no success: the
            // last good ones stay.
            Step::Done(credentials)
                if credentials.expires_at_ms().is_some_and(|e| {
                    e <= unix_ms(now).saturating_add(self.setup.refresh.stops_signing_ms)
                }) =>
            {
                Failure::Expired
            }
            Step::Done(credentials) => {
                self.succeed(store, credentials, source, unix_ms(now), events);
                return;
            }
            Step::Failed(failure) => failure,
        };
        events.push(Event::Failed { source, failure });
        self.give_up(store, unix_ms(now), failure, events);
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
mod tests {
    use super::*;
    use crate::cred_config::{compile, RawCredentials};
    use crate::testing::FakeStore;
    use serde_json::json;
    use std::cell::{Cell, RefCell};
    use std::time::{Duration, UNIX_EPOCH};

    /// Records the calls dispatched; answers each with the next token, or
    /// refuses them all (`None`, as Envoy does for an unknown cluster).
    #[derive(Default)]
    struct FakeDispatcher {
        calls: RefCell<Vec<Call>>,
        last_token: Cell<u32>,
        refuse: Cell<bool>,
    }

    impl Dispatcher for FakeDispatcher {
        fn dispatch(&self, call: &Call) -> Option<u32> {
            if self.refuse.get() {
                return None;
            }
            self.calls.borrow_mut().push(call.clone());
            self.last_token.set(self.last_token.get() + 100);
            Some(self.last_token.get())
        }
    }

    impl FakeDispatcher {
        fn paths(&self) -> Vec<String> {
            self.calls
                .borrow()
                .iter()
                .map(|c| format!("{} {}", c.cluster, c.get(":path").unwrap_or("")))
                .collect()
        }
    }

    /// 2023-11-14T22:13:20Z.
    const T0: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A setup from the `credentials` JSON block.
    fn setup_of(doc: serde_json::Value) -> Rotating {
        let raw: RawCredentials = serde_json::from_value(doc).unwrap();
        compile(Some(raw), &|_| None).unwrap().rotating.unwrap()
    }

    /// The container source alone: one 700 ms call, so a 2.7 s lease.
    fn container_setup() -> Rotating {
        setup_of(json!({"source": "container",
                        "container": {"relative_uri": "/creds", "timeout_ms": 700}}))
    }

    /// Container, then IMDS.
    fn chain_setup() -> Rotating {
        setup_of(json!({"source": "chain", "chain": ["container", "imds"],
                        "container": {"relative_uri": "/creds", "timeout_ms": 700},
                        "imds": {"timeout_ms": 500}}))
    }

    /// A container answer: credentials `id` expiring at `expires_ms`.
    fn answer(id: &str, expires_ms: u64) -> String {
        format!(
            r#"{{"AccessKeyId":"{id}","SecretAccessKey":"secret-{id}","Token":"token-{id}","Expiration":{}}}"#,
            expires_ms / 1000
        )
    }

    fn reply(body: &str) -> Reply<'_> {
        Reply {
            status: 200,
            body: body.as_bytes(),
        }
    }

    const FAILED_500: Reply<'static> = Reply {
        status: 500,
        body: b"",
    };

    fn key(r: &Refresher, what: &str) -> String {
        format!("{KEY_PREFIX}{}.{what}", r.setup.fingerprint)
    }

    fn stored_lease(store: &FakeStore, r: &Refresher) -> Option<Lease> {
        let data = store.data.borrow();
        data.get(&key(r, "lease"))
            .and_then(|(b, _)| Lease::decode(b))
    }

    fn stored_record(store: &FakeStore, r: &Refresher) -> Option<Record> {
        let data = store.data.borrow();
        data.get(&key(r, "current"))
            .and_then(|(b, _)| Record::decode(b))
    }

    fn stored_status(store: &FakeStore, r: &Refresher) -> Option<Status> {
        let data = store.data.borrow();
        data.get(&key(r, "status"))
            .and_then(|(b, _)| Status::decode(b))
    }

    /// Worker `r` refreshes at `now_ms` through the container source and
    /// gets credentials `id` for an hour.
    fn refresh_once(
        r: &mut Refresher,
        store: &FakeStore,
        host: &FakeDispatcher,
        now_ms: u64,
        id: &str,
    ) {
        let events = r.tick(store, host, at(now_ms));
        assert!(events.iter().all(|e| *e == Event::Adopted), "{events:?}");
        let body = answer(id, now_ms + 3_600_000);
        let events = r.on_reply(host.last_token.get(), reply(&body), store, host, at(now_ms));
        assert_eq!(
            events,
            [
                Event::Refreshed {
                    source: "container"
                },
                Event::Adopted
            ]
        );
    }

    fn record(id: &str, token: Option<&str>, obtained_ms: u64, expires_ms: u64) -> Record {
        Record {
            credentials: Credentials::temporary(
                id.into(),
                format!("secret-{id}"),
                token.map(str::to_string),
                expires_ms,
            ),
            obtained_ms,
            source: "imds".into(),
        }
    }

    /// Shared data holds exactly what `encode` wrote: a record reads back
    /// equal (with or without a session token), and anything else (another
    /// magic, cut short, trailing bytes, no key id, no secret, no expiry) is
    /// no record at all.
    #[test]
    fn record_codec_round_trips_and_rejects_garbage() {
        for r in [
            record("ASIA1", Some("tok"), T0, T0 + 3_600_000),
            record("ASIA2", None, 0, 1),
        ] {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes), Some(r.clone()));
            assert_eq!(&bytes[..4], b"EPK1");
            for cut in 0..bytes.len() {
                assert_eq!(Record::decode(&bytes[..cut]), None, "cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(Record::decode(&long), None, "trailing byte");
            let mut magic = bytes.clone();
            magic[3] = b'2';
            assert_eq!(Record::decode(&magic), None, "other magic");
        }
        let no_token = Record::decode(&record("A", None, 1, 2).encode()).unwrap();
        assert_eq!(no_token.credentials.session_token(), None);
        for bad in [
            record("", Some("t"), 1, 2),
            Record {
                credentials: Credentials::temporary("A".into(), String::new(), None, 2),
                obtained_ms: 1,
                source: "imds".into(),
            },
            record("A", Some("t"), 1, 0),
        ] {
            assert_eq!(Record::decode(&bad.encode()), None, "{bad:?}");
        }
        assert_eq!(Record::decode(b""), None);
    }

    /// The shared status and lease read back what was written; anything
    /// else is ignored.
    #[test]
    fn status_and_lease_codecs() {
        let s = Status {
            failures: 3,
            next_attempt_ms: T0 + 4000,
            last_failure: 5,
            last_owner: 7,
        };
        let bytes = s.encode();
        assert_eq!(Status::decode(&bytes), Some(s));
        assert_eq!(&bytes[..4], b"EPS1");
        let l = Lease {
            owner: 7,
            until_ms: T0,
        };
        let lb = l.encode();
        assert_eq!(Lease::decode(&lb), Some(l));
        assert_eq!(&lb[..4], b"EPL1");
        for (good, decode) in [
            (
                bytes,
                (|b: &[u8]| Status::decode(b).is_some()) as fn(&[u8]) -> bool,
            ),
            (lb, |b: &[u8]| Lease::decode(b).is_some()),
        ] {
            for cut in 0..good.len() {
                assert!(!decode(&good[..cut]), "cut at {cut}");
            }
            let mut long = good.clone();
            long.push(1);
            assert!(!decode(&long), "trailing byte");
            let mut magic = good.clone();
            magic[0] = b'X';
            assert!(!decode(&magic), "other magic");
        }
        // A status under a lease's magic and the reverse.
        assert_eq!(Status::decode(&l.encode()), None);
        assert_eq!(Lease::decode(&s.encode()), None);
    }

    /// docs/credentials.md, refresh: due `before` ahead of expiry, but never before
    /// half-way through the credentials' life, and in any case a tick
    /// before they stop signing.
    #[test]
    fn refresh_is_due_before_expiry_or_at_half_life() {
        let hour = record("A", None, T0, T0 + 3_600_000);
        assert_eq!(hour.refresh_at_ms(900_000, 61_000), T0 + 2_700_000);
        let minute = record("A", None, T0, T0 + 60_000);
        assert_eq!(minute.refresh_at_ms(900_000, 1_000), T0 + 30_000);
        let short = record("A", None, T0, T0 + 10_001);
        assert_eq!(short.refresh_at_ms(900_000, 0), T0 + 5_001);
        // Credentials that stop signing 40 s before their expiry, half-way
        // through a minute: refreshed a tick before they stop, at 19 s.
        assert_eq!(minute.stops_at_ms(40_000), T0 + 20_000);
        assert_eq!(minute.refresh_at_ms(900_000, 40_000), T0 + 19_000);
        assert_eq!(hour.refresh_at_ms(900_000, 1_000_000), T0 + 2_599_000);
    }

    /// docs/credentials.md, refresh back-off: doubling from retry_min_ms to
    /// retry_max_ms, spread by up to a quarter either way.
    #[test]
    fn backoff_doubles_is_capped_and_spread() {
        // A seed of a quarter lands in the middle: the unspread delay.
        assert_eq!(backoff_ms(0, 1000, 30_000, 250), 1000);
        assert_eq!(backoff_ms(1, 1000, 30_000, 250), 1000);
        assert_eq!(backoff_ms(2, 1000, 30_000, 500), 2000);
        assert_eq!(backoff_ms(3, 1000, 30_000, 1000), 4000);
        assert_eq!(backoff_ms(5, 1000, 30_000, 4000), 16_000);
        assert_eq!(backoff_ms(6, 1000, 30_000, 7500), 30_000);
        assert_eq!(backoff_ms(u32::MAX, 1000, 30_000, 7500), 30_000);
        assert_eq!(
            backoff_ms(40, u64::MAX / 2, u64::MAX, 0),
            u64::MAX - u64::MAX / 4
        );
        // The spread's bounds: base - quarter ..= base + quarter.
        assert_eq!(backoff_ms(3, 1000, 30_000, 0), 3000);
        assert_eq!(backoff_ms(3, 1000, 30_000, 2000), 5000);
        assert_eq!(backoff_ms(3, 1000, 30_000, 2001), 3000);
        for seed in 0..5000 {
            let d = backoff_ms(3, 1000, 30_000, seed);
            assert!((3000..=5000).contains(&d), "{seed}: {d}");
        }
        // Too small to spread; never 0.
        assert_eq!(backoff_ms(1, 3, 30_000, 12_345), 3);
        assert_eq!(backoff_ms(1, 0, 0, 9), 1);
    }

    /// docs/credentials.md, refresh: with no credentials a worker refreshes at once,
    /// stores the result for every worker, resets the status and frees the
    /// lease; the shared keys are named by the setup's fingerprint.
    #[test]
    fn a_refresh_stores_the_credentials_and_frees_the_lease() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        assert!(r.current().is_none());
        assert_eq!(r.tick(&store, &host, at(T0)), []);
        assert_eq!(host.paths(), ["presign_container /creds"]);
        assert_eq!(
            stored_lease(&store, &r),
            Some(Lease {
                owner: 1,
                until_ms: T0 + 2_700
            })
        );
        let body = answer("ASIA1", T0 + 3_600_000);
        let events = r.on_reply(100, reply(&body), &store, &host, at(T0 + 5));
        assert_eq!(
            events,
            [
                Event::Refreshed {
                    source: "container"
                },
                Event::Adopted
            ]
        );
        let want = Record {
            credentials: Credentials::temporary(
                "ASIA1".into(),
                "secret-ASIA1".into(),
                Some("token-ASIA1".into()),
                T0 + 3_600_000,
            ),
            obtained_ms: T0 + 5,
            source: "container".into(),
        };
        assert_eq!(r.current(), Some(&want));
        assert_eq!(stored_record(&store, &r), Some(want));
        assert_eq!(
            stored_status(&store, &r),
            Some(Status {
                last_owner: 1,
                ..Status::default()
            })
        );
        assert_eq!(
            stored_lease(&store, &r),
            Some(Lease {
                owner: 0,
                until_ms: 0
            })
        );
        let mut keys: Vec<String> = store.data.borrow().keys().cloned().collect();
        keys.sort();
        let fp = &r.setup.fingerprint;
        assert_eq!(
            keys,
            [
                format!("envoy_presign.cred.{fp}.current"),
                format!("envoy_presign.cred.{fp}.lease"),
                format!("envoy_presign.cred.{fp}.status"),
            ]
        );
        // Not due again until 900 s before expiry: ticks do nothing.
        assert_eq!(r.tick(&store, &host, at(T0 + 2_699_999)), []);
        assert_eq!(host.calls.borrow().len(), 1);
        assert_eq!(r.tick(&store, &host, at(T0 + 2_700_000)), []);
        assert_eq!(host.calls.borrow().len(), 2, "due at refresh_at_ms");
    }

    /// docs/credentials.md, refresh: only one worker refreshes at a time (the lease);
    /// every other worker adopts the result from shared data on its next
    /// tick, and does not refresh again.
    #[test]
    fn two_workers_one_refresh() {
        let store = FakeStore::default();
        let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let mut b = Refresher::new(container_setup(), 2).prepared(&store);
        assert_eq!(a.tick(&store, &ha, at(T0)), []);
        assert_eq!(b.tick(&store, &hb, at(T0)), []);
        assert_eq!(b.tick(&store, &hb, at(T0 + 1000)), []);
        assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
        let body = answer("ASIA1", T0 + 3_600_000);
        a.on_reply(100, reply(&body), &store, &ha, at(T0 + 1000));
        assert!(b.current().is_none());
        assert_eq!(b.tick(&store, &hb, at(T0 + 2000)), [Event::Adopted]);
        assert_eq!(b.current(), a.current());
        assert_eq!(b.tick(&store, &hb, at(T0 + 3000)), [], "adopted once");
        assert_eq!(a.tick(&store, &ha, at(T0 + 3000)), [], "its own is no news");
        assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
        // The same credentials written again (another CAS) are not news
        // either; new ones are.
        let bytes = stored_record(&store, &a).unwrap().encode();
        store.put(&key(&a, "current"), &bytes);
        assert_eq!(b.tick(&store, &hb, at(T0 + 4000)), []);
        let newer = record("ASIA2", Some("t2"), T0 + 4000, T0 + 7_200_000);
        store.put(&key(&a, "current"), &newer.encode());
        assert_eq!(b.tick(&store, &hb, at(T0 + 5000)), [Event::Adopted]);
        assert_eq!(b.current(), Some(&newer));
        // Garbage under the key is ignored: the worker keeps what it has.
        store.put(&key(&a, "current"), b"EPK1garbage");
        assert_eq!(b.tick(&store, &hb, at(T0 + 6000)), []);
        assert_eq!(b.current(), Some(&newer));
    }

    /// docs/credentials.md, refresh: a failed refresh never replaces the stored
    /// credentials; the failure and the retry delay are shared, so no other
    /// worker retries before `next_attempt`, and then one does.
    #[test]
    fn failures_keep_the_credentials_and_share_the_back_off() {
        let store = FakeStore::default();
        let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let mut b = Refresher::new(container_setup(), 2).prepared(&store);
        refresh_once(&mut a, &store, &ha, T0, "ASIA1");
        b.tick(&store, &hb, at(T0));
        let good = a.current().cloned().unwrap();
        // Due 900 s before expiry; worker A's call fails with a 500.
        let due = T0 + 2_700_000;
        assert_eq!(a.tick(&store, &ha, at(due)), []);
        let events = a.on_reply(200, FAILED_500, &store, &ha, at(due));
        let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ due);
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Status5xx
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert!((750..=1250).contains(&retry_in_ms));
        let shared = Status {
            failures: 1,
            next_attempt_ms: due + retry_in_ms,
            last_failure: 5,
            last_owner: 1,
        };
        assert_eq!(a.status(), shared);
        assert_eq!(stored_status(&store, &a), Some(shared));
        assert_eq!(a.current(), Some(&good));
        assert_eq!(stored_record(&store, &a), Some(good.clone()));
        assert_eq!(stored_lease(&store, &a).map(|l| l.owner), Some(0), "freed");
        // Worker B reads the shared status and waits for next_attempt.
        assert_eq!(b.tick(&store, &hb, at(due + 1)), []);
        assert_eq!(b.status(), shared);
        assert_eq!(b.tick(&store, &hb, at(shared.next_attempt_ms - 1)), []);
        assert!(hb.calls.borrow().is_empty());
        assert_eq!(b.current(), Some(&good));
        // At next_attempt it retries, and a second failure doubles the delay.
        let t = shared.next_attempt_ms;
        assert_eq!(b.tick(&store, &hb, at(t)), []);
        assert_eq!(hb.calls.borrow().len(), 1);
        let events = b.on_reply(
            100,
            Reply {
                status: 0,
                body: b"",
            },
            &store,
            &hb,
            at(t),
        );
        let retry_in_ms = backoff_ms(2, 1000, 30_000, 2 ^ t);
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Transport
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert!((1500..=2500).contains(&retry_in_ms));
        assert_eq!(
            stored_status(&store, &b),
            Some(Status {
                failures: 2,
                next_attempt_ms: t + retry_in_ms,
                last_failure: 2,
                last_owner: 2,
            })
        );
        // A success resets the status.
        let t = t + retry_in_ms;
        refresh_once(&mut a, &store, &ha, t, "ASIA2");
        assert_eq!(
            stored_status(&store, &a),
            Some(Status {
                last_owner: 1,
                ..Status::default()
            })
        );
        assert_eq!(
            a.status(),
            Status {
                last_owner: 1,
                ..Status::default()
            }
        );
    }

    /// docs/credentials.md, refresh back-off: workers that fail at the same moment do
    /// not retry together (the spread is seeded by the worker).
    #[test]
    fn workers_failing_together_retry_apart() {
        // Odd, and with the owners' bits set: `owner ^ now` is neither
        // `owner | now` nor `owner & now`.
        let now = T0 + 3;
        let mut delays = Vec::new();
        for owner in [1u64, 2] {
            let spread = |seed| backoff_ms(1, 1000, 30_000, seed);
            assert_ne!(spread(owner ^ now), spread(owner | now));
            assert_ne!(spread(owner ^ now), spread(owner & now));
            let store = FakeStore::default();
            let host = FakeDispatcher::default();
            host.refuse.set(true);
            let mut r = Refresher::new(container_setup(), owner).prepared(&store);
            let events = r.tick(&store, &host, at(now));
            let Some(Event::GaveUp { retry_in_ms }) = events.last() else {
                panic!("{events:?}")
            };
            assert_eq!(*retry_in_ms, backoff_ms(1, 1000, 30_000, owner ^ now));
            delays.push(*retry_in_ms);
        }
        assert_ne!(delays[0], delays[1]);
    }

    /// docs/credentials.md, chain: the chain's first configured entry is the only
    /// source asked. When it fails, the refresh gives up with the shared
    /// back-off (the last good credentials, if any, keep signing) and the
    /// same source is asked again once the back-off ends; the next entry is
    /// never tried (the review's finding: one STS timeout used to switch the
    /// filter to the node's role for hours).
    #[test]
    fn a_failing_source_is_retried_never_replaced() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
        r.mark_serving();
        assert_eq!(r.tick(&store, &host, at(T0)), []);
        let events = r.on_reply(
            100,
            Reply {
                status: 503,
                body: b"",
            },
            &store,
            &host,
            at(T0),
        );
        let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ T0);
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Status5xx
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert_eq!(host.paths(), ["presign_container /creds"]);
        assert_eq!(r.status().last_failure, Failure::Status5xx.code());
        assert!(r.current().is_none() && stored_record(&store, &r).is_none());
        // Nothing before the back-off ends; then the same source again.
        assert_eq!(r.tick(&store, &host, at(T0 + retry_in_ms - 1)), []);
        assert_eq!(host.paths().len(), 1);
        assert_eq!(r.tick(&store, &host, at(T0 + retry_in_ms)), []);
        assert_eq!(
            host.paths(),
            ["presign_container /creds", "presign_container /creds"]
        );
        let later = T0 + retry_in_ms;
        let events = r.on_reply(
            200,
            reply(&answer("ASIACONT", later + 3_600_000)),
            &store,
            &host,
            at(later),
        );
        assert_eq!(
            events,
            [
                Event::Refreshed {
                    source: "container"
                },
                Event::Adopted
            ]
        );
        assert_eq!(r.current().unwrap().source, "container");
        assert_eq!(r.status().failures, 0);
    }

    /// docs/credentials.md, refresh metrics: a call Envoy refuses to dispatch (unknown
    /// cluster) counts as `dispatch_error`, and the refresh gives up.
    #[test]
    fn a_refused_dispatch_is_a_dispatch_failure() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        host.refuse.set(true);
        let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
        let events = r.tick(&store, &host, at(T0));
        let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ T0);
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Dispatch
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert_eq!(
            r.status(),
            Status {
                failures: 1,
                next_attempt_ms: T0 + retry_in_ms,
                last_failure: 1,
                last_owner: 1,
            }
        );
        assert_eq!(stored_lease(&store, &r).map(|l| l.owner), Some(0));
    }

    /// docs/credentials.md, refresh: a call that never comes back is abandoned once
    /// the lease has run out (and counted), so no worker waits forever; a
    /// late answer is then ignored. An answer with another token is not
    /// this refresh's.
    #[test]
    fn unanswered_calls_are_abandoned_and_stray_answers_ignored() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        r.tick(&store, &host, at(T0));
        let body = answer("ASIA1", T0 + 3_600_000);
        assert_eq!(r.on_reply(999, reply(&body), &store, &host, at(T0)), []);
        assert!(r.current().is_none());
        // Still waiting until the lease's end (2.7 s), not after.
        assert_eq!(r.tick(&store, &host, at(T0 + 2_700)), []);
        assert_eq!(host.calls.borrow().len(), 1);
        let events = r.tick(&store, &host, at(T0 + 2_701));
        let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ (T0 + 2_701));
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Abandoned
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert_eq!(r.status().last_failure, 8);
        assert_eq!(
            r.on_reply(100, reply(&body), &store, &host, at(T0 + 2_800)),
            []
        );
        assert!(r.current().is_none());
        // The right token, in time, is taken.
        let store = FakeStore::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        r.tick(&store, &host, at(T0));
        let token = host.last_token.get();
        assert_eq!(
            r.on_reply(token + 1, reply(&body), &store, &host, at(T0)),
            []
        );
        assert_eq!(
            r.on_reply(token, reply(&body), &store, &host, at(T0)).len(),
            2
        );
    }

    /// A serving VM's heartbeat lasts SERVING_HEARTBEAT_MS (5 s) and is
    /// renewed once half of it has passed, so ticking every second it never
    /// lapses, and is written every few ticks rather than on each.
    #[test]
    fn a_serving_vms_heartbeat_never_lapses_and_is_renewed_past_half_life() {
        assert_eq!(SERVING_HEARTBEAT_MS, 5_000);
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        r.mark_serving();
        let serving = key(&r, "serving");
        let stored = |s: &FakeStore| {
            s.data
                .borrow()
                .get(&serving)
                .map(|(v, _)| u64::from_be_bytes(v.as_slice().try_into().unwrap()))
        };
        r.tick(&store, &host, at(T0));
        assert_eq!(stored(&store), Some(T0 + 5_000));
        for s in 1..=2 {
            r.tick(&store, &host, at(T0 + s * 1_000));
            assert_eq!(stored(&store), Some(T0 + 5_000), "renewed at +{s} s");
        }
        r.tick(&store, &host, at(T0 + 3_000));
        assert_eq!(
            stored(&store),
            Some(T0 + 8_000),
            "not renewed past half its life"
        );
        // A VM that serves nothing is never written down as serving.
        let store = FakeStore::default();
        let mut idle = Refresher::new(container_setup(), 2).prepared(&store);
        idle.tick(&store, &host, at(T0));
        assert_eq!(stored(&store), None);
    }

    /// The failed-refresh line says what is true then: signing with the
    /// last good credentials (and for how long), or no longer (the review
    /// saw "while they last" after they had stopped), or none yet.
    #[test]
    fn the_state_line_says_what_is_true_now() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        assert_eq!(
            r.state_at(T0),
            "no credentials yet: matched requests get 503 credentials_unavailable"
        );
        refresh_once(&mut r, &store, &host, T0, "ASIA1");
        let stops = r
            .current()
            .unwrap()
            .stops_at_ms(container_setup().refresh.stops_signing_ms);
        assert_eq!(
            r.state_at(stops - 1_000),
            "signing with the last good credentials for 1 s more"
        );
        assert_eq!(
            r.state_at(stops),
            "the last credentials no longer sign: matched requests get 503 credentials_unavailable"
        );
    }

    /// docs/configuration.md, the 503 credentials_unavailable reply: `Retry-After` is
    /// the time to the next refresh attempt in whole seconds, at least 1.
    #[test]
    fn retry_after_is_the_wait_for_the_next_attempt() {
        let mut r = Refresher::new(container_setup(), 1);
        assert_eq!(r.retry_after_secs(at(T0)), 1, "no failure yet");
        r.status.next_attempt_ms = T0 + 2_500;
        assert_eq!(r.retry_after_secs(at(T0)), 3);
        assert_eq!(r.retry_after_secs(at(T0 + 1_500)), 1);
        assert_eq!(r.retry_after_secs(at(T0 + 1_499)), 2);
        assert_eq!(r.retry_after_secs(at(T0 + 9_000)), 1);
        r.status.next_attempt_ms = u64::MAX;
        assert_eq!(r.retry_after_secs(at(0)), u32::MAX);
    }

    /// docs/credentials.md, refresh: when the refreshing worker goes away, its lease
    /// lapses and another worker takes over; a live lease is never taken,
    /// and the holder may renew its own.
    #[test]
    fn a_lapsed_lease_is_taken_over() {
        let store = FakeStore::default();
        let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let mut b = Refresher::new(container_setup(), 2).prepared(&store);
        a.tick(&store, &ha, at(T0)); // and never hears back
        assert_eq!(b.tick(&store, &hb, at(T0 + 2_699)), []);
        assert!(hb.calls.borrow().is_empty());
        assert_eq!(b.tick(&store, &hb, at(T0 + 2_700)), []);
        assert_eq!(hb.calls.borrow().len(), 1, "the lease ran out at until_ms");
        assert_eq!(
            stored_lease(&store, &b),
            Some(Lease {
                owner: 2,
                until_ms: T0 + 5_400
            })
        );
        let body = answer("ASIA1", T0 + 3_600_000);
        let events = b.on_reply(
            hb.last_token.get(),
            reply(&body),
            &store,
            &hb,
            at(T0 + 2_800),
        );
        assert_eq!(events.len(), 2);
        // Worker A, alive after all, adopts B's credentials and counts its
        // own call as abandoned, but B's success stands: no shared failure,
        // no back-off.
        assert_eq!(
            a.tick(&store, &ha, at(T0 + 2_900)),
            [
                Event::Adopted,
                Event::Failed {
                    source: "container",
                    failure: Failure::Abandoned
                }
            ]
        );
        assert_eq!(
            stored_status(&store, &a),
            Some(Status {
                last_owner: 2,
                ..Status::default()
            })
        );
        assert_eq!(
            a.status(),
            Status {
                last_owner: 2,
                ..Status::default()
            }
        );
        assert_eq!(a.current(), b.current());
        // The same when B's refresh failed: its back-off is not doubled.
        let store = FakeStore::default();
        let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let mut b = Refresher::new(container_setup(), 2).prepared(&store);
        a.tick(&store, &ha, at(T0));
        b.tick(&store, &hb, at(T0 + 2_700));
        let events = b.on_reply(hb.last_token.get(), FAILED_500, &store, &hb, at(T0 + 2_800));
        assert_eq!(events.len(), 2);
        let after_b = stored_status(&store, &b).unwrap();
        assert_eq!(after_b.failures, 1);
        assert_eq!(a.tick(&store, &ha, at(T0 + 2_900)).len(), 1);
        assert_eq!(stored_status(&store, &a), Some(after_b));
        // A worker whose own lease is still recorded (its release was lost)
        // may take it again.
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut c = Refresher::new(container_setup(), 3).prepared(&store);
        let own = Lease {
            owner: 3,
            until_ms: T0 + 60_000,
        };
        store.put(&key(&c, "lease"), &own.encode());
        c.tick(&store, &host, at(T0));
        assert_eq!(host.calls.borrow().len(), 1);
        // A store that refuses reads: nobody refreshes.
        let store = FakeStore::default();
        store.fail_gets.set(true);
        let host = FakeDispatcher::default();
        assert_eq!(
            Refresher::new(container_setup(), 4)
                .prepared(&store)
                .tick(&store, &host, at(T0)),
            []
        );
        assert!(host.calls.borrow().is_empty());
    }

    /// docs/credentials.md, refresh: credentials are shared per setup (its
    /// fingerprint): a record, status or lease of another configuration is
    /// never adopted nor obeyed.
    #[test]
    fn another_setups_records_are_never_used() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let other = setup_of(json!({"source": "container",
                                    "container": {"relative_uri": "/other", "timeout_ms": 700}}));
        let mine = container_setup();
        assert_ne!(other.fingerprint, mine.fingerprint);
        let theirs = Refresher::new(other, 9).prepared(&store);
        let rec = record("ASIAOTHER", Some("t"), T0, T0 + 3_600_000);
        store.put(&key(&theirs, "current"), &rec.encode());
        let busy = Lease {
            owner: 9,
            until_ms: T0 + 60_000,
        };
        store.put(&key(&theirs, "lease"), &busy.encode());
        let waiting = Status {
            failures: 4,
            next_attempt_ms: T0 + 60_000,
            last_failure: 4,
            last_owner: 2,
        };
        store.put(&key(&theirs, "status"), &waiting.encode());
        let mut r = Refresher::new(mine, 1).prepared(&store);
        assert_eq!(r.tick(&store, &host, at(T0)), []);
        assert!(r.current().is_none());
        assert_eq!(r.status(), Status::default());
        assert_eq!(host.paths(), ["presign_container /creds"]);
    }

    /// docs/credentials.md, Rotating credentials: Envoy's main-thread VM serves no
    /// request and cannot reach an internal listener. Once a VM has served
    /// one, only serving VMs refresh; in an idle Envoy a VM whose own attempt
    /// failed lets the others take the next turn.
    #[test]
    fn once_workers_serve_only_they_refresh_and_idle_vms_take_turns() {
        let store = FakeStore::default();
        let (h1, h2) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut main = Refresher::new(container_setup(), 1).prepared(&store);
        let mut worker = Refresher::new(container_setup(), 2).prepared(&store);
        // Idle: the main VM may try first; it fails.
        assert_eq!(main.tick(&store, &h1, at(T0)), []);
        let events = main.on_reply(h1.last_token.get(), FAILED_500, &store, &h1, at(T0));
        assert!(
            matches!(events.last(), Some(Event::GaveUp { .. })),
            "{events:?}"
        );
        let next = main.status().next_attempt_ms;
        // Its next turn goes to another VM: it stands aside while it failed last.
        assert_eq!(main.tick(&store, &h1, at(next)), []);
        assert_eq!(h1.calls.borrow().len(), 1);
        assert_eq!(worker.tick(&store, &h2, at(next)), []);
        assert_eq!(h2.calls.borrow().len(), 1);
        let events = worker.on_reply(h2.last_token.get(), FAILED_500, &store, &h2, at(next));
        assert!(
            matches!(events.last(), Some(Event::GaveUp { .. })),
            "{events:?}"
        );
        // Now the worker failed last: the main VM may try again.
        let next = worker.status().next_attempt_ms;
        main.tick(&store, &h1, at(next));
        assert_eq!(h1.calls.borrow().len(), 2);
        main.on_reply(h1.last_token.get(), FAILED_500, &store, &h1, at(next));
        // Once a worker has served a request, the main VM never refreshes again,
        // while the serving worker may whoever failed last.
        worker.mark_serving();
        let next = main.status().next_attempt_ms + 60_000;
        worker.tick(&store, &h2, at(next - 1));
        assert!(store.data.borrow().contains_key(&key(&worker, "serving")));
        let mut main2 = Refresher::new(container_setup(), 3).prepared(&store);
        assert_eq!(main2.tick(&store, &h1, at(next)), []);
        assert_eq!(main.tick(&store, &h1, at(next)), []);
        assert_eq!(h1.calls.borrow().len(), 2, "{:?}", h1.paths());
        worker.tick(&store, &h2, at(next));
        assert_eq!(h2.calls.borrow().len(), 2);
        let body = answer("ASIA9", next + 3_600_000);
        worker.on_reply(h2.last_token.get(), reply(&body), &store, &h2, at(next));
        assert_eq!(worker.status().last_owner, 2);
        // The others adopt what it stored.
        assert_eq!(main.tick(&store, &h1, at(next + 1)), [Event::Adopted]);
        assert_eq!(main.current(), worker.current());
    }

    /// docs/credentials.md, Rotating credentials: a request catches up with shared data
    /// while its worker has no credentials that sign, and reads nothing
    /// while they do (a refresh is due before they stop; the tick adopts it).
    #[test]
    fn catch_up_reads_shared_data_only_while_nothing_signs() {
        let store = FakeStore::default();
        let ha = FakeDispatcher::default();
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let mut b = Refresher::new(container_setup(), 2).prepared(&store);
        assert!(!b.catch_up(&store, at(T0)), "nothing stored yet");
        refresh_once(&mut a, &store, &ha, T0, "ASIA1");
        assert!(b.catch_up(&store, at(T0 + 1)), "missing: adopts at once");
        assert_eq!(b.current(), a.current());
        assert!(!b.catch_up(&store, at(T0 + 2)), "unchanged");
        // While they sign, shared data is not read (a failing store shows any
        // read), even with a refresh due and done by another worker.
        let due = T0 + 2_700_000;
        refresh_once(&mut a, &store, &ha, due, "ASIA2");
        store.fail_gets.set(true);
        let stops = b
            .current()
            .unwrap()
            .stops_at_ms(container_setup().refresh.stops_signing_ms);
        assert_eq!(stops, T0 + 3_600_000 - 61_000);
        assert!(!b.catch_up(&store, at(stops - 1)));
        store.fail_gets.set(false);
        assert!(!b.catch_up(&store, at(stops - 1)));
        // Once they stop signing, a request adopts what is stored.
        assert!(b.catch_up(&store, at(stops)));
        assert_eq!(
            b.current().map(|r| r.credentials.access_key_id()),
            Some("ASIA2")
        );
    }

    /// docs/credentials.md, Rotating credentials: credentials that would not even sign
    /// (less than `expiry_margin` + `min_remaining` + 1 s left) are no
    /// success: counted `expired`, the refresh gives up, the last good stay.
    #[test]
    fn credentials_too_short_to_sign_are_a_failure() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(chain_setup(), 1).prepared(&store);
        refresh_once_chain_first(&mut r, &store, &host, T0, "ASIA1", 3_600_000);
        let good = r.current().cloned();
        let due = T0 + 2_700_000;
        r.tick(&store, &host, at(due));
        // 61 s is when signing stops with the 60 s margin: 61 s of life is too short.
        let body = answer("ASIA2", due + 61_000);
        let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(due));
        let retry_in_ms = backoff_ms(1, 1000, 30_000, 1 ^ due);
        assert_eq!(
            events,
            [
                Event::Failed {
                    source: "container",
                    failure: Failure::Expired
                },
                Event::GaveUp { retry_in_ms }
            ]
        );
        assert_eq!(
            host.paths().last().map(String::as_str),
            Some("presign_container /creds")
        );
        assert_eq!(r.current().cloned(), good);
        assert_eq!(stored_record(&store, &r), good);
    }

    /// Worker `r` refreshes through the chain's first source (container).
    fn refresh_once_chain_first(
        r: &mut Refresher,
        store: &FakeStore,
        host: &FakeDispatcher,
        now_ms: u64,
        id: &str,
        life_ms: u64,
    ) {
        r.tick(store, host, at(now_ms));
        let body = answer(id, now_ms + life_ms);
        let events = r.on_reply(host.last_token.get(), reply(&body), store, host, at(now_ms));
        assert!(events.contains(&Event::Adopted), "{events:?}");
    }

    /// The lease key does not exist before the first refresh, and a write
    /// creates a missing key whatever the CAS: a VM that read "no key" just
    /// before another created and claimed it would wipe that claim when it
    /// creates the key in turn, and both would refresh (the review's finding).
    /// So a VM that creates the key, or first finds it, claims nothing on
    /// that look: it claims from its next one, with a true CAS, and a stale
    /// creation that lands in between wipes no claim.
    #[test]
    fn the_first_lease_has_one_winner() {
        let store = FakeStore::default();
        let (ha, hb) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1);
        let mut b = Refresher::new(container_setup(), 2);
        // Both start with no key: A creates it, B finds it; neither claims.
        assert_eq!(a.tick(&store, &ha, at(T0)), []);
        assert_eq!(b.tick(&store, &hb, at(T0)), []);
        assert!(ha.calls.borrow().is_empty() && hb.calls.borrow().is_empty());
        // A third VM read "no key" before A created it: its creation lands now.
        let free = Lease {
            owner: 0,
            until_ms: 0,
        };
        store.put(&key(&a, "lease"), &free.encode());
        // A tick later they race: one claims, the other finds the claim.
        a.tick(&store, &ha, at(T0 + 1_000));
        b.tick(&store, &hb, at(T0 + 1_000));
        assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (1, 0));
        assert_eq!(stored_lease(&store, &b).map(|l| l.owner), Some(1));
        // Interleaved at the very claim: B claims between A's read and A's
        // compare-and-swap, so A's CAS fails. Still one winner.
        let store = FakeStore::default();
        let ha = FakeDispatcher::default();
        let hb = std::rc::Rc::new(FakeDispatcher::default());
        let mut a = Refresher::new(container_setup(), 1).prepared(&store);
        let b = std::rc::Rc::new(RefCell::new(
            Refresher::new(container_setup(), 2).prepared(&store),
        ));
        let (b2, hb2) = (std::rc::Rc::clone(&b), std::rc::Rc::clone(&hb));
        *store.interleave.borrow_mut() = Some(Box::new(move |s: &FakeStore| {
            b2.borrow_mut().tick(s, &*hb2, at(T0));
        }));
        a.tick(&store, &ha, at(T0));
        assert_eq!((ha.calls.borrow().len(), hb.calls.borrow().len()), (0, 1));
        // With the store refusing reads nothing is claimed at all.
        let store = FakeStore::default();
        let mut c = Refresher::new(container_setup(), 3).prepared(&store);
        store.fail_gets.set(true);
        let hc = FakeDispatcher::default();
        c.tick(&store, &hc, at(T0));
        assert!(hc.calls.borrow().is_empty());
    }

    /// After a configuration reload the serving VMs are replaced by new ones
    /// that have served nothing yet: once the old ones' heartbeat lapses,
    /// the new VMs refresh without waiting for a request (the review's
    /// finding: an idle Envoy answered its first requests 503 once the
    /// credentials ran out). While a serving VM's heartbeat is current, a
    /// VM that serves nothing stands aside.
    #[test]
    fn refreshes_go_on_after_a_reload_without_traffic() {
        let store = FakeStore::default();
        let (h_old, h_new) = (FakeDispatcher::default(), FakeDispatcher::default());
        let mut old = Refresher::new(container_setup(), 1).prepared(&store);
        old.mark_serving();
        refresh_once(&mut old, &store, &h_old, T0, "ASIA1");
        // The reload: a new VM of the same setup, serving nothing yet.
        let mut new = Refresher::new(container_setup(), 2).prepared(&store);
        let due = T0 + 2_700_000;
        old.tick(&store, &h_old, at(due - 1_000)); // the old VM's last heartbeat
        assert_eq!(new.tick(&store, &h_new, at(due)), [Event::Adopted]);
        assert!(
            h_new.calls.borrow().is_empty(),
            "a serving VM's heartbeat is current"
        );
        // The old VM is gone: past its heartbeat, the new VM refreshes.
        let lapsed = due - 1_000 + SERVING_HEARTBEAT_MS;
        new.tick(&store, &h_new, at(lapsed));
        assert_eq!(h_new.paths(), ["presign_container /creds"]);
    }

    /// An answer that comes after the lease lapsed is the abandoned call's:
    /// reported as such, and nothing of it is stored.
    #[test]
    fn an_answer_after_the_lease_is_abandoned() {
        let store = FakeStore::default();
        let host = FakeDispatcher::default();
        let mut r = Refresher::new(container_setup(), 1).prepared(&store);
        r.tick(&store, &host, at(T0));
        let late = T0 + container_setup().refresh.lease_ms + 1;
        let body = answer("ASIA1", late + 3_600_000);
        let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(late));
        assert_eq!(
            events.first(),
            Some(&Event::Failed {
                source: "container",
                failure: Failure::Abandoned
            })
        );
        assert_eq!(r.current(), None);
        assert_eq!(stored_record(&store, &r), None);
        // Up to the lease's last millisecond the answer counts, as `tick`
        // still waits for it then.
        let store = FakeStore::default();
        let mut r = Refresher::new(container_setup(), 2).prepared(&store);
        r.tick(&store, &host, at(T0));
        let last = T0 + container_setup().refresh.lease_ms;
        assert_eq!(r.tick(&store, &host, at(last)), []);
        let body = answer("ASIA2", last + 3_600_000);
        let events = r.on_reply(host.last_token.get(), reply(&body), &store, &host, at(last));
        assert_eq!(
            events.first(),
            Some(&Event::Refreshed {
                source: "container"
            })
        );
    }
}

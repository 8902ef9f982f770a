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
//! - `…lease`: which worker refreshes, until when;
//! - `…serving`: until when some VM that handles requests is alive.
//!
//! The files: `records` (what those keys hold, encoded), `lease` (who
//! refreshes: the lease and the serving heartbeat), and here the refresher
//! itself: its tick, the calls it dispatches, and what it publishes.

mod lease;
mod records;

use std::time::SystemTime;

use crate::cache::Store;
use crate::config::credentials::Rotating;
use crate::rotation::fetch::{Call, Failure, Fetch, Reply, Step};
use crate::rotation::now::Now;
use crate::sigv4::credentials::Credentials;
/// The serving heartbeat's length, named from here as before the split.
pub use lease::SERVING_HEARTBEAT_MS;
use lease::{Heartbeat, LeaseKey};
/// What `Refresher::current` and `Refresher::status` return, named from here.
pub use records::{Record, Status};

/// Shared-data key prefix of the credential records.
pub const KEY_PREFIX: &str = "envoy_presign.cred.";

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
    /// Whether this VM serves, and its heartbeat (see `mark_serving`).
    heartbeat: Heartbeat,
    /// Who refreshes (see `LeaseKey::take`).
    lease: LeaseKey,
    /// The shared-data keys of the records, built once.
    keys: Keys,
}

/// The shared-data keys of one credentials setup's records.
#[derive(Debug)]
struct Keys {
    current: String,
    status: String,
}

impl Refresher {
    /// A worker's refresher; `owner` identifies it in the lease (non-zero).
    pub fn new(setup: Rotating, owner: u64) -> Self {
        let key = |what: &str| format!("{KEY_PREFIX}{}.{what}", setup.fingerprint);
        Self {
            owner,
            adopted_cas: None,
            current: None,
            status: Status::default(),
            in_flight: None,
            heartbeat: Heartbeat::new(key("serving")),
            lease: LeaseKey::new(key("lease"), owner),
            keys: Keys {
                current: key("current"),
                status: key("status"),
            },
            setup,
        }
    }

    /// Looks at the lease key once at startup (creating it free when it
    /// does not exist), so the first tick may already claim it.
    pub fn prepared<S: Store + ?Sized>(mut self, store: &S) -> Self {
        self.lease.look(store);
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
        self.heartbeat.mark_serving();
    }

    /// Whether this VM may take the lease now (see `mark_serving`).
    fn may_refresh<S: Store + ?Sized>(&self, store: &S, now_ms: u64) -> bool {
        if self.heartbeat.serving() {
            return true;
        }
        let workers_serve = self.heartbeat.some_vm_serves(store, now_ms);
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
        self.heartbeat.beat(store, now.ms);
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
            || !self.lease.take(store, now.ms, self.setup.refresh.lease_ms)
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
        if self.lease.held(store) {
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
        self.lease.release(store);
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
        self.lease.release(store);
        events.push(Event::GaveUp { retry_in_ms });
    }
}

#[cfg(test)]
mod tests;

//! This worker's side of the rotating credentials: its refresher, the signer
//! of the credentials it holds, and how the refresher's events (on ticks and
//! call answers) become metrics, log lines and this worker's keys.

use std::cell::{Cell, Ref, RefCell};
use std::time::SystemTime;

use crate::cache::local::LocalCache;
use crate::clock::unix_ms;
use crate::config::credentials::Rotating;
use crate::metrics::CredentialMetrics;
use crate::request::url_source::Keys;
use crate::rotation::fetch::Reply;
use crate::rotation::parse::MAX_BODY_BYTES;
use crate::rotation::refresh::{Event, Refresher};
use crate::sigv4::presign::Signer;
use crate::wasm::host::{http_call_response, now, SharedData, WasmDispatcher, WasmMetrics};

/// This worker's side of the rotating credentials: its refresher and a
/// signer for the credentials it holds. Requests sign with this copy; they
/// read shared data only while it holds no credentials that sign
/// (`Refresher::catch_up`).
pub struct Rotation {
    /// Fetches, publishes and adopts the credentials (through shared data).
    refresher: RefCell<Refresher>,
    /// The signer of the credentials this worker installed (`None` before any).
    signer: RefCell<Option<Signer>>,
    /// URLs end this long before the credentials do.
    margin_ms: u64,
    /// What a refused request is told to wait, as of the last event applied.
    retry_after_secs: Cell<u32>,
}

impl Rotation {
    /// The worker's side for a configuration's `rotating`, its refresher
    /// prepared in shared data (no credentials yet).
    pub fn new(setup: &Rotating, worker_id: u64) -> Self {
        Self {
            refresher: RefCell::new(Refresher::new(setup.clone(), worker_id).prepared(&SharedData)),
            signer: RefCell::new(None),
            margin_ms: setup.refresh.expiry_margin_ms,
            retry_after_secs: Cell::new(1),
        }
    }

    /// Signs from now on with the refresher's current credentials; URLs of
    /// the old ones stay valid (their expiry is capped by them), but this
    /// worker's own copies of them are dropped.
    fn install(&self, local: &RefCell<LocalCache>) {
        let signer = self
            .refresher
            .borrow()
            .current()
            .map(|r| Signer::new(&r.credentials));
        *self.signer.borrow_mut() = signer;
        local.borrow_mut().clear();
    }

    /// Before a request: installs credentials another worker published since
    /// (read from shared data only while this worker holds none that sign).
    pub fn catch_up(&self, now: SystemTime, local: &RefCell<LocalCache>) {
        let changed = self.refresher.borrow_mut().catch_up(&SharedData, now);
        if changed {
            self.install(local);
        }
    }

    /// The signer a request signs with, borrowed for the request's span.
    pub fn signer(&self) -> Ref<'_, Option<Signer>> {
        self.signer.borrow()
    }

    /// The request's view of the credentials, with `signer` from `signer()`.
    pub fn keys<'a>(&self, signer: Option<&'a Signer>) -> Keys<'a> {
        Keys {
            signer,
            margin_ms: self.margin_ms,
            retry_after_secs: self.retry_after_secs.get(),
        }
    }

    /// The root context's tick: adopts what was published and refreshes when
    /// due (never per request); `served`: this VM has handled a request.
    pub fn on_tick(&self, served: bool) -> Vec<Event> {
        let mut refresher = self.refresher.borrow_mut();
        if served {
            refresher.mark_serving();
        }
        refresher.tick(&SharedData, &WasmDispatcher, now())
    }

    /// The answer to a credentials call being delivered (no headers: Envoy
    /// delivers a reset or a connection failure so), handed to the refresher.
    pub fn on_call_response(
        &self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
    ) -> Vec<Event> {
        let (status, body) = if num_headers == 0 {
            (0, Vec::new())
        } else {
            http_call_response(body_size, MAX_BODY_BYTES + 1)
        };
        let reply = Reply {
            status,
            body: &body,
        };
        self.refresher
            .borrow_mut()
            .on_reply(token_id, reply, &SharedData, &WasmDispatcher, now())
    }

    /// Turns refresh events into metrics, logs and this worker's keys.
    pub fn apply(
        &self,
        events: Vec<Event>,
        metrics: &CredentialMetrics,
        local: &RefCell<LocalCache>,
    ) {
        let now_ms = unix_ms(now());
        let mut adopted = false;
        {
            let refresher = self.refresher.borrow();
            for event in events {
                match event {
                    Event::Refreshed { source } => {
                        metrics.refreshed(&WasmMetrics, source, "success");
                        if let Some(r) = refresher.current() {
                            log::info!(
                            "envoy-presign: credentials refreshed from {source}: access key {}, {} s left",
                            r.credentials.access_key_id(),
                            r.credentials.expires_at_ms().unwrap_or(0).saturating_sub(now_ms) / 1000
                        );
                        }
                    }
                    Event::Failed { source, failure } => {
                        metrics.refreshed(&WasmMetrics, source, failure.category());
                        log::warn!(
                            "envoy-presign: credential refresh from {source} failed: {}",
                            failure.describe()
                        );
                    }
                    Event::GaveUp { retry_in_ms } => log::warn!(
                        "envoy-presign: credential refresh failed; next attempt in {retry_in_ms} ms; {}",
                        refresher.state_at(now_ms)
                    ),
                    Event::Adopted => adopted = true,
                }
            }
            self.retry_after_secs.set(refresher.retry_after_secs(now()));
            let left = refresher
                .current()
                .and_then(|r| r.credentials.expires_at_ms())
                .map_or(0, |e| e.saturating_sub(now_ms) / 1000);
            metrics.record_state(&WasmMetrics, left, refresher.status().last_failure);
        }
        if adopted {
            self.install(local);
        }
    }
}

//! Who refreshes: the lease in shared data (one worker at a time, claimed by
//! CAS) and the serving VMs' heartbeat (while any VM handles requests, only
//! those refresh). Each is this VM's handle on one shared-data key; the
//! refresher decides when to use them.

use crate::cache::Store;
use crate::rotation::refresh::records::{Lease, TICK_MS};

/// How long a serving VM's heartbeat lasts; renewed every tick past half of
/// it. Once serving VMs are gone (a configuration reload replaced them) the
/// others refresh within this long.
pub const SERVING_HEARTBEAT_MS: u64 = 5 * TICK_MS;

/// This VM's handle on the lease key: who refreshes, until when.
#[derive(Debug)]
pub(super) struct LeaseKey {
    /// The shared-data key.
    key: String,
    /// This VM's owner id (non-zero).
    owner: u64,
    /// Whether this VM has seen the lease key exist at an earlier look: only
    /// then may it claim it (see `take`).
    seen: bool,
}

impl LeaseKey {
    /// The handle of `owner` on `key`, not looked at yet.
    pub(super) fn new(key: String, owner: u64) -> Self {
        Self {
            key,
            owner,
            seen: false,
        }
    }

    /// Reads the lease key, creating it free when it does not exist; returns
    /// what was read, and whether this VM had seen (or created) the key at an
    /// earlier look.
    pub(super) fn look<S: Store + ?Sized>(&mut self, store: &S) -> Option<(Vec<u8>, u32, bool)> {
        let key = &self.key;
        match store.get(key) {
            Ok((Some(bytes), Some(cas))) => {
                let seen_before = std::mem::replace(&mut self.seen, true);
                Some((bytes, cas, seen_before))
            }
            Ok((None, _)) => {
                self.seen = store.set(key, &Lease::FREE.encode(), None).is_ok();
                None
            }
            _ => None,
        }
    }

    /// Claims the lease for `lease_ms` when it is free or lapsed (CAS: one
    /// winner). A write creates a missing key whatever the CAS, so a VM that
    /// read "no key" just before another created and claimed it would wipe
    /// that claim when it creates the key in turn, and both would refresh. So
    /// the key is created free, and a VM claims it only from its second look
    /// on (`Refresher::prepared` at startup is the first): by then, a tick
    /// later, every creation from a stale read has landed, and claims are
    /// true CASes.
    pub(super) fn take<S: Store + ?Sized>(
        &mut self,
        store: &S,
        now_ms: u64,
        lease_ms: u64,
    ) -> bool {
        let Some((bytes, cas, seen_before)) = self.look(store) else {
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
            until_ms: now_ms.saturating_add(lease_ms),
        };
        store.set(&self.key, &lease.encode(), Some(cas)).is_ok()
    }

    /// Whether the lease is still recorded as this VM's (lapsed or not).
    pub(super) fn held<S: Store + ?Sized>(&self, store: &S) -> bool {
        matches!(store.get(&self.key), Ok((Some(bytes), _))
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner))
    }

    /// Frees the lease if it is still this VM's.
    pub(super) fn release<S: Store + ?Sized>(&self, store: &S) {
        let key = &self.key;
        if let Ok((Some(bytes), cas)) = store.get(key) {
            if Lease::decode(&bytes).is_some_and(|l| l.owner == self.owner) {
                let _ = store.set(key, &Lease::FREE.encode(), cas);
            }
        }
    }
}

/// This VM's handle on the serving heartbeat key (see
/// `Refresher::mark_serving`).
#[derive(Debug)]
pub(super) struct Heartbeat {
    /// The shared-data key.
    key: String,
    /// This VM handles requests (Envoy also runs one on its main thread,
    /// which never does).
    serving: bool,
    /// Until when (Unix ms) this VM's last heartbeat says it serves.
    until_ms: u64,
}

impl Heartbeat {
    /// The handle on `key` of a VM that has not served yet.
    pub(super) fn new(key: String) -> Self {
        Self {
            key,
            serving: false,
            until_ms: 0,
        }
    }

    /// Records that this VM handles requests.
    pub(super) fn mark_serving(&mut self) {
        self.serving = true;
    }

    /// Whether this VM handles requests.
    pub(super) fn serving(&self) -> bool {
        self.serving
    }

    /// Renews this serving VM's heartbeat when half of it has passed.
    pub(super) fn beat<S: Store + ?Sized>(&mut self, store: &S, now_ms: u64) {
        let renew_at = self.until_ms.saturating_sub(SERVING_HEARTBEAT_MS / 2);
        if self.serving && now_ms >= renew_at {
            let until = now_ms.saturating_add(SERVING_HEARTBEAT_MS);
            if store.set(&self.key, &until.to_be_bytes(), None).is_ok() {
                self.until_ms = until;
            }
        }
    }

    /// Whether some VM's heartbeat is current at `now_ms`.
    pub(super) fn some_vm_serves<S: Store + ?Sized>(&self, store: &S, now_ms: u64) -> bool {
        match store.get(&self.key) {
            Ok((Some(bytes), _)) => {
                <[u8; 8]>::try_from(bytes.as_slice()).is_ok_and(|b| u64::from_be_bytes(b) > now_ms)
            }
            _ => false,
        }
    }
}

//! Test fakes for the host-facing traits (compiled only for tests).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::cache::{Entry, Store, StoreError};
use crate::request::actions::{HostError, RequestHost};
use crate::request::url_source::{Host, ObjectRequest};
use crate::sigv4::presign::Method;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Simulates another worker acting between a read and a write.
pub type Interleave = Box<dyn FnMut(&FakeStore)>;

/// Envoy's shared-data semantics: a global CAS counter, a set with a stale
/// token fails, a set on a missing key always succeeds.
#[derive(Default)]
pub struct FakeStore {
    /// Key → (value, CAS token).
    pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Called before each `set`, to simulate another worker writing in between.
    pub interleave: RefCell<Option<Interleave>>,
    /// Makes every `set` fail, like a host refusing writes.
    pub fail_sets: Cell<bool>,
    /// Makes every `get` fail, like a host refusing reads.
    pub fail_gets: Cell<bool>,
}

impl FakeStore {
    /// Writes like the host does: a new CAS token every time.
    pub fn put(&self, key: &str, value: &[u8]) {
        self.next_cas.set(self.next_cas.get() + 1);
        self.data
            .borrow_mut()
            .insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
    }
    /// The decoded entry under `key` (panics in tests if absent).
    pub fn entry(&self, key: &str) -> Entry {
        Entry::decode(&self.data.borrow()[key].0).unwrap()
    }
}

impl Store for FakeStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        if self.fail_gets.get() {
            return Err(StoreError::Failed);
        }
        Ok(match self.data.borrow().get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        })
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        // Taken out first: the interleaved worker may write too.
        let other_worker = self.interleave.borrow_mut().take();
        if let Some(mut f) = other_worker {
            f(self);
        }
        if self.fail_sets.get() {
            return Err(StoreError::Failed);
        }
        if let (Some(c), Some((_, cur))) = (cas, self.data.borrow().get(key)) {
            if c != *cur {
                return Err(StoreError::CasMismatch);
            }
        }
        self.put(key, value);
        Ok(())
    }
}

/// One boto3-generated presigned URL and what it was made from
/// (`tests/vectors/presign.json`, `scripts/gen_vectors.py`): the independent
/// reference the signer and the host command are compared with.
#[derive(serde::Deserialize)]
pub struct Vector {
    pub name: String,
    pub method: String,
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub addressing: String,
    pub region: String,
    pub service: String,
    pub expires_in: u64,
    pub time: u64,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub query: Vec<(String, String)>,
    pub url: String,
}

/// Every boto3 vector.
pub fn boto3_vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("../tests/vectors/presign.json"))
        .expect("tests/vectors/presign.json parses")
}

/// A URL lookup's host: `store` at `secs` past the epoch, timing the signing
/// with `clock` when one is given.
pub fn host_at<'a>(
    store: &'a FakeStore,
    secs: u64,
    clock: Option<&'a dyn Fn() -> SystemTime>,
) -> Host<'a, FakeStore> {
    Host {
        store,
        now: UNIX_EPOCH + Duration::from_secs(secs),
        clock,
        keys: None,
    }
}

/// A GET of `key` with no query.
pub fn get_object(key: &str) -> ObjectRequest<'_> {
    ObjectRequest {
        method: Method::Get,
        key,
        query: &[],
    }
}

/// A VM environment holding exactly `pairs`, as `Config::parse` reads it.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

/// The host command's file reader over in-memory files (`cli::Io::read`'s shape): a path
/// not among them is `NotFound`, as a missing file is.
pub fn file_reader<'a>(
    files: &'a [(&'a str, String)],
) -> impl Fn(&str) -> std::io::Result<Vec<u8>> + 'a {
    move |p| {
        files
            .iter()
            .find(|(name, _)| *name == p)
            .map(|(_, body)| body.clone().into_bytes())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

/// A request host that records what the filter does to a request (the host
/// calls of `request::actions`), and can refuse some of it.
/// Fails the n-th header write (0-based) or every reply.
#[derive(Default)]
pub struct FakeHost {
    /// The calls that succeeded, in order (`set name=value`, `remove name`,
    /// `reply status headers`).
    pub calls: Vec<String>,
    /// The header write (0-based) to refuse.
    pub fail_write: Option<usize>,
    /// Refuse every local reply.
    pub fail_reply: bool,
    /// Header writes attempted.
    pub writes: usize,
}

impl FakeHost {
    fn write(&mut self, call: String) -> Result<(), HostError> {
        let n = self.writes;
        self.writes += 1;
        if self.fail_write == Some(n) {
            return Err(HostError(10));
        }
        self.calls.push(call);
        Ok(())
    }
}

impl RequestHost for FakeHost {
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.write(format!("set {name}={value}"))
    }
    fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
        self.write(format!("remove {name}"))
    }
    fn send_reply(&mut self, status: u32, h: &[(&str, &str)], _: &[u8]) -> Result<(), HostError> {
        if self.fail_reply {
            return Err(HostError(2));
        }
        self.calls.push(format!("reply {status} {h:?}"));
        Ok(())
    }
}

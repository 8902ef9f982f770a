//! The floor of a rewrite in `make bench`: the least any filter that rewrites
//! a request to a presigned URL must make Envoy do. It speaks the proxy-wasm
//! ABI 0.2.1 itself (no SDK), exports only the callbacks envoy-presign exports
//! (`proxy_on_context_create`, `proxy_on_request_headers`, `proxy_on_done`, the
//! allocator and the configuration's), and per request reads the request
//! header map once and writes the configured headers, with no logic between.
//!
//! Configuration: three lines, `authority` (`-`: left alone, as a route's
//! `host_rewrite_literal` would set it), `path` and `marker` (the value of
//! `x-envoy-presign-origin`), and an optional fourth line of flags: `sign`
//! makes every request also do a SigV4 signature's hashing (the floor of
//! signing in Wasm, see `Signing`); `time` (with `sign`) times that hashing on
//! one request in 16, as the filter samples its own signatures, into the
//! filter's histogram name (`SIGN_HISTOGRAM`), so the bench's report gives
//! the floor's signing time beside the filter's. Without the first three, the
//! module leaves requests alone. A benchmark tool, not shipped: it trusts Envoy
//! and its configuration.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use sha2::{Digest, Sha256};

const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;
const OK: u32 = 0;
const HISTOGRAM: u32 = 2;
/// The filter's own name for its signing histogram (`metrics.rs`), with the
/// bench's origin: one Envoy runs one configuration, so the names never meet.
const SIGN_HISTOGRAM: &str = "envoy_presign.sign_duration_us.origin.media";
/// One request in this many is timed: the filter's default
/// `metrics.latency_sample_every`, so the floor pays the same sampling.
const SAMPLE_EVERY: u32 = 16;

extern "C" {
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        name: *const u8,
        name_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

thread_local! {
    /// The headers every request gets, in write order.
    static WRITES: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    /// With the `sign` flag: the hashing every request does before its writes.
    static SIGNING: RefCell<Option<Signing>> = const { RefCell::new(None) };
}

/// The least hashing any SigV4 presigned URL takes in Wasm, where SHA-256 has
/// no CPU instructions: the SHA-256 of the canonical request, then the HMAC of
/// the string to sign with the signing key's pad blocks and the string to
/// sign's head already hashed (as the filter keeps them per derived key and
/// per second). For the bench's request that is eight SHA-256 blocks, as many
/// as the filter's signatures within one second.
struct Signing {
    /// The canonical request of the configured path (its query less the
    /// signature) for the configured authority.
    canonical: Vec<u8>,
    /// The HMAC's inner SHA-256 after the key's pad block and the string to
    /// sign up to the canonical request's hash.
    head: Sha256,
    /// The HMAC's outer SHA-256 after the key's pad block.
    outer: Sha256,
    /// With the `time` flag: the histogram's id and the requests since the
    /// last timed one.
    timing: Option<(u32, Cell<u32>)>,
}

impl Signing {
    fn new(authority: &str, path: &str, timed: bool) -> Self {
        let (object, query) = path.split_once('?').unwrap_or((path, ""));
        let signed: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("X-Amz-Signature="))
            .collect();
        let param = |name: &str| {
            signed
                .iter()
                .find_map(|p| p.strip_prefix(name))
                .unwrap_or_default()
        };
        let scope = param("X-Amz-Credential=")
            .split_once("%2F")
            .map_or("", |(_, s)| s)
            .replace("%2F", "/");
        let canonical = format!(
            "GET\n{object}\n{}\nhost:{authority}\n\nhost\nUNSIGNED-PAYLOAD",
            signed.join("&")
        );
        let prefix = format!("AWS4-HMAC-SHA256\n{}\n{scope}\n", param("X-Amz-Date="));
        let key = [0x5a_u8; 64];
        let mut head = Sha256::new();
        head.update(key.map(|b| b ^ 0x36));
        head.update(prefix);
        let mut outer = Sha256::new();
        outer.update(key.map(|b| b ^ 0x5c));
        let timing = timed.then(|| {
            let mut id = 0;
            // SAFETY: a live string with its length, an out-pointer to a local.
            let defined = unsafe {
                proxy_define_metric(
                    HISTOGRAM,
                    SIGN_HISTOGRAM.as_ptr(),
                    SIGN_HISTOGRAM.len(),
                    &mut id,
                )
            };
            (defined == OK).then_some((id, Cell::new(0)))
        });
        Self {
            canonical: canonical.into_bytes(),
            head,
            outer,
            timing: timing.flatten(),
        }
    }

    /// `sign`, timed (in whole microseconds, as the filter records its own)
    /// on one request in `SAMPLE_EVERY` when configured to.
    fn sign_sampled(&self) -> [u8; 64] {
        let Some((id, count)) = &self.timing else {
            return self.sign();
        };
        let n = count.get().wrapping_add(1) % SAMPLE_EVERY;
        count.set(n);
        if n != 0 {
            return self.sign();
        }
        let start = now_ns();
        let signature = self.sign();
        let took_us = now_ns().saturating_sub(start) / 1000;
        // SAFETY: plain values.
        unsafe { proxy_record_metric(*id, took_us) };
        signature
    }

    /// The signature's 64 hex digits.
    fn sign(&self) -> [u8; 64] {
        let mut sts = self.head.clone();
        sts.update(hex(&Sha256::digest(&self.canonical).into()));
        let mut outer = self.outer.clone();
        outer.update(sts.finalize());
        hex(&outer.finalize().into())
    }
}

/// The host's clock in nanoseconds (0 if it cannot be read).
fn now_ns() -> u64 {
    let mut t = 0;
    // SAFETY: an out-pointer to a local.
    unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

fn hex(digest: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Takes back memory the host filled (allocated by `proxy_on_memory_allocate`).
///
/// # Safety
/// `data` and `size` come from a successful hostcall.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    Vec::from_raw_parts(data, size, size)
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buf = std::mem::ManuallyDrop::new(vec![0u8; size].into_boxed_slice());
    buf.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context: u32, _root: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_context: u32, size: usize) -> u32 {
    let (mut data, mut len) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers to locals; the host fills memory it got from our allocator.
    let config = unsafe {
        if proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) != OK {
            Vec::new()
        } else {
            take(data, len)
        }
    };
    let text = String::from_utf8_lossy(&config);
    let lines: Vec<&str> = text.lines().collect();
    let signing = match lines.as_slice() {
        [authority, path, _, flags, ..] if flags.split_whitespace().any(|f| f == "sign") => {
            let timed = flags.split_whitespace().any(|f| f == "time");
            Some(Signing::new(authority, path, timed))
        }
        _ => None,
    };
    SIGNING.with(|s| *s.borrow_mut() = signing);
    let writes = match lines.as_slice() {
        [authority, path, marker, ..] => {
            let mut w = Vec::new();
            if *authority != "-" {
                w.push((":authority".to_string(), authority.to_string()));
            }
            w.push((":path".to_string(), path.to_string()));
            w.push(("x-envoy-presign-origin".to_string(), marker.to_string()));
            w
        }
        _ => Vec::new(),
    };
    WRITES.with(|w| *w.borrow_mut() = writes);
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _eos: u32) -> u32 {
    WRITES.with(|writes| {
        let writes = writes.borrow();
        if writes.is_empty() {
            return;
        }
        let (mut data, mut len) = (std::ptr::null_mut(), 0);
        // SAFETY: as above; then pointers to live strings with their lengths.
        unsafe {
            if proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut len) == OK {
                drop(take(data, len));
            }
            // With `sign`, the path's last 64 characters become the signature.
            let signed = SIGNING.with(|s| s.borrow().as_ref().map(Signing::sign_sampled));
            for (name, value) in writes.iter() {
                let value = match (&signed, name.as_str()) {
                    (Some(signature), ":path") if value.len() >= 64 => {
                        let mut v = value.as_bytes()[..value.len() - 64].to_vec();
                        v.extend_from_slice(signature);
                        Cow::Owned(v)
                    }
                    _ => Cow::Borrowed(value.as_bytes()),
                };
                proxy_replace_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                );
            }
        }
    });
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context: u32) -> u32 {
    1
}

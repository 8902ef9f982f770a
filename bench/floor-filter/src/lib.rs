//! The floor of a rewrite in `make bench`: the least any filter that rewrites
//! a request to a presigned URL must make Envoy do. It speaks the proxy-wasm
//! ABI 0.2.1 itself (no SDK), exports only the callbacks envoy-presign exports
//! (`proxy_on_context_create`, `proxy_on_request_headers`, `proxy_on_done`, the
//! allocator and the configuration's), and per request reads the request
//! header map once and writes the configured headers, with no logic between.
//!
//! Configuration: three lines, `authority` (`-`: left alone, as a route's
//! `host_rewrite_literal` would set it), `path` and `marker` (the value of
//! `x-envoy-presign-origin`). Without one, the module leaves requests alone.
//! A benchmark tool, not shipped: it trusts Envoy and its configuration.

use std::cell::RefCell;

const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;
const OK: u32 = 0;

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
}

thread_local! {
    /// The headers every request gets, in write order.
    static WRITES: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
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
            for (name, value) in writes.iter() {
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

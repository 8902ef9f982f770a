//! Credential calls through Envoy's async HTTP client: sending one from the
//! root context, and reading its answer when Envoy delivers it.

use super::{
    counted, owned, proxy_get_buffer_bytes, proxy_get_header_map_pairs, proxy_http_call,
    HTTP_CALL_RESPONSE_BODY, HTTP_CALL_RESPONSE_HEADERS, STATUS_OK,
};

/// Sends a credentials call through Envoy's async HTTP client, from the root
/// context; `abi` keeps the token and routes the answer back to that context.
/// Envoy refuses a call with BadArgument (unknown cluster) or InternalFailure;
/// any status but Ok is a refusal (`None`). No body, no trailers.
pub struct WasmDispatcher;

impl crate::rotation::refresh::Dispatcher for WasmDispatcher {
    fn dispatch(&self, call: &crate::rotation::fetch::Call) -> Option<u32> {
        let headers = crate::request::headers::serialize(&call.headers);
        let trailers = crate::request::headers::serialize::<&str, &str>(&[]);
        let timeout_ms = u32::try_from(call.timeout_ms).unwrap_or(u32::MAX);
        let mut token = 0u32;
        counted();
        // SAFETY: pointers to live slices with their lengths (no body: null,
        // 0) and an out-pointer to a local.
        let s = unsafe {
            proxy_http_call(
                call.cluster.as_ptr(),
                call.cluster.len(),
                headers.as_ptr(),
                headers.len(),
                std::ptr::null(),
                0,
                trailers.as_ptr(),
                trailers.len(),
                timeout_ms,
                &mut token,
            )
        };
        if s != STATUS_OK {
            return None;
        }
        crate::wasm::abi::track_http_call(token);
        Some(token)
    }
}

/// The status of the call answer being delivered (0 when none: a reset or
/// connection failure delivers no headers), and at most `max_body` bytes
/// of its body (valid only inside `on_http_call_response`).
pub fn http_call_response(body_size: usize, max_body: usize) -> (u16, Vec<u8>) {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: out-pointers to locals; on success the host hands us `size` bytes.
    let headers = unsafe {
        if proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS, &mut data, &mut size) == STATUS_OK
        {
            owned(data, size).unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    let status = crate::request::headers::pairs(&headers)
        .find(|(k, _)| *k == b":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    if body_size == 0 {
        return (status, Vec::new());
    }
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: as above.
    let body = unsafe {
        let want = body_size.min(max_body);
        if proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, want, &mut data, &mut size)
            == STATUS_OK
        {
            owned(data, size).unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    (status, body)
}

//! The current request as the host holds it: its serialized headers, the
//! header changes and the local reply the pipeline asks for.

use super::{
    counted, owned, proxy_get_header_map_pairs, proxy_remove_header_map_value,
    proxy_replace_header_map_value, proxy_send_local_response, REQUEST_HEADERS, STATUS_OK,
};
use crate::request::actions::{HostError, RequestHost};

/// The host's status as the pipeline's result: Ok, or the refusal it counts.
fn status(s: u32) -> Result<(), HostError> {
    if s == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(s))
    }
}

/// The request headers as Envoy serializes them (see `headers::pairs`); empty
/// if the host refuses.
pub fn request_header_map() -> Vec<u8> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    counted();
    // SAFETY: out-pointers to locals; on success the host hands us `size` bytes.
    unsafe {
        if proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) != STATUS_OK {
            return Vec::new();
        }
        owned(data, size).unwrap_or_default()
    }
}

/// The current request's headers and local replies.
pub struct WasmRequest;

impl RequestHost for WasmRequest {
    fn set_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        counted();
        // SAFETY: pointers to live slices with their lengths.
        status(unsafe {
            proxy_replace_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn remove_header(&mut self, name: &str) -> Result<(), HostError> {
        counted();
        // SAFETY: as above.
        status(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
    }

    fn send_reply(
        &mut self,
        code: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let headers = crate::request::headers::serialize(headers);
        counted();
        // SAFETY: as above; no details string (null, 0); -1: not gRPC.
        status(unsafe {
            proxy_send_local_response(
                code,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        })
    }
}

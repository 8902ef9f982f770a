//! Any bytes in a cache slot: decoding never panics, and whatever decodes
//! re-encodes to the same bytes (no two encodings of one entry).
#![no_main]

use envoy_presign::cache::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data);
    }
});

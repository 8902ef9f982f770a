//! Envoy's shared data as the cache's (and the credentials') store.

use super::{
    counted, owned, proxy_get_shared_data, proxy_set_shared_data, STATUS_CAS_MISMATCH,
    STATUS_NOT_FOUND, STATUS_OK,
};
use crate::cache::{Store, StoreError};

/// The cache's store on Envoy's shared data (one namespace per `vm_id`,
/// visible to every worker).
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
        counted();
        // SAFETY: out-pointers to locals; on success the host hands us `size` bytes.
        unsafe {
            match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
                STATUS_OK => Ok((owned(data, size), (cas != 0).then_some(cas))),
                STATUS_NOT_FOUND => Ok((None, None)),
                _ => Err(StoreError::Failed),
            }
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        counted();
        // SAFETY: pointers to live slices with their lengths.
        let s = unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match s {
            STATUS_OK => Ok(()),
            STATUS_CAS_MISMATCH => Err(StoreError::CasMismatch),
            _ => Err(StoreError::Failed),
        }
    }
}

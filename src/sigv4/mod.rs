//! SigV4 query-string presigning: path and query canonicalisation, the signer,
//! and the credentials it signs with. Knows nothing of the filter's configuration:
//! callers hand it a signing target.

pub mod canonical;
pub mod credentials;
pub mod presign;

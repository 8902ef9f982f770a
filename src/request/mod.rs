//! One request's way through the filter: the decision (sign, refuse, bypass),
//! the presigned URL's source (cache or signer), the redirect, the header
//! actions, and the pipeline that chains them for the filter and the host command.

pub mod actions;
pub mod decide;
pub mod headers;
pub mod pipeline;
pub mod record;
pub mod redirect;
pub mod url_source;

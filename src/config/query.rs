//! Which client query parameters an origin forwards and signs (`allow_query`),
//! and which `response-content-type` values a request may ask for
//! (`response_content_types`).

use crate::config::error::ConfigError;
use crate::config::overrides;
use crate::config::raw::RawOrigin;

/// Most `allow_query` names per origin (bounds what a request can store).
pub const MAX_ALLOW_QUERY: usize = 8;
/// Longest `allow_query` name.
pub const MAX_QUERY_NAME_BYTES: usize = 128;

/// Checks an origin's `allow_query` (under `at`, e.g. `origins[0]`) and
/// compiles its `response_content_types`.
pub(super) fn compile_query(o: &RawOrigin, at: &str) -> Result<Vec<String>, ConfigError> {
    if o.allow_query.len() > MAX_ALLOW_QUERY {
        return Err(ConfigError::new(
            format!("{at}.allow_query"),
            format!(
                "at most {MAX_ALLOW_QUERY} names, got {}",
                o.allow_query.len()
            ),
        ));
    }
    for (j, name) in o.allow_query.iter().enumerate() {
        if name.is_empty()
            || name.len() > MAX_QUERY_NAME_BYTES
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(ConfigError::new(
                format!("{at}.allow_query[{j}]"),
                format!("must be a parameter name of 1 to {MAX_QUERY_NAME_BYTES} characters A-Z a-z 0-9 - _ . ~"),
            ));
        }
        if name.len() >= 6 && name[..6].eq_ignore_ascii_case("x-amz-") {
            return Err(ConfigError::new(
                format!("{at}.allow_query[{j}]"),
                "X-Amz-* parameters are set by the signer and can never come from a client",
            ));
        }
    }

    compile_content_types(
        o.response_content_types.as_deref(),
        o.allow_query.iter().any(|n| n == overrides::CONTENT_TYPE),
        &format!("{at}.response_content_types"),
    )
}

/// `response_content_types`: the allow-list of `response-content-type`
/// values, the defaults when not given. It only means something when
/// `allow_query` names `response-content-type`, so it is refused otherwise.
fn compile_content_types(
    raw: Option<&[String]>,
    type_override_allowed: bool,
    at: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(list) = raw else {
        return Ok(overrides::DEFAULT_CONTENT_TYPES.map(String::from).to_vec());
    };
    if !type_override_allowed {
        return Err(ConfigError::new(
            at,
            format!(
                "applies only when allow_query names {:?}",
                overrides::CONTENT_TYPE
            ),
        ));
    }
    if list.is_empty() || list.len() > overrides::MAX_CONTENT_TYPES {
        return Err(ConfigError::new(
            at,
            format!(
                "must list 1 to {} media types, got {}",
                overrides::MAX_CONTENT_TYPES,
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(j, v)| {
            overrides::compile_content_type(v)
                .map_err(|r| ConfigError::new(format!("{at}[{j}]"), format!("{r}, got {v:?}")))
        })
        .collect()
}

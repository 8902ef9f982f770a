//! The `credentials` block as serde reads it: unknown fields refused,
//! nothing validated yet (the other files compile it).

use serde::Deserialize;

/// The `credentials` block as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub(super) source: String,
    #[serde(default)]
    pub(super) access_key_id: Option<String>,
    #[serde(default)]
    pub(super) secret_access_key: Option<String>,
    #[serde(default)]
    pub(super) session_token: Option<String>,
    #[serde(default)]
    pub(super) chain: Option<Vec<String>>,
    #[serde(default)]
    pub(super) imds: Option<RawImds>,
    #[serde(default)]
    pub(super) container: Option<RawContainer>,
    #[serde(default)]
    pub(super) assume_role: Option<RawSts>,
    #[serde(default)]
    pub(super) web_identity: Option<RawSts>,
    #[serde(default)]
    pub(super) refresh: Option<RawRefresh>,
}

/// The `imds` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImds {
    pub(super) cluster: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) token_ttl: Option<u32>,
    pub(super) timeout_ms: Option<u64>,
}

/// The `container` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainer {
    pub(super) cluster: Option<String>,
    pub(super) relative_uri: Option<String>,
    pub(super) full_uri: Option<String>,
    pub(super) timeout_ms: Option<u64>,
}

/// An `assume_role` or `web_identity` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSts {
    pub(super) cluster: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) region: Option<String>,
    pub(super) role_arn: Option<String>,
    pub(super) session_name: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) duration: Option<u32>,
    pub(super) timeout_ms: Option<u64>,
    /// `assume_role` only: where the credentials that sign the call come from.
    pub(super) base: Option<String>,
}

/// The `refresh` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRefresh {
    pub(super) before: Option<u64>,
    pub(super) expiry_margin: Option<u64>,
    pub(super) retry_min_ms: Option<u64>,
    pub(super) retry_max_ms: Option<u64>,
}

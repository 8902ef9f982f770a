//! SigV4 query-string presigning of one object request, through the `aws-sigv4`
//! crate. Pure: the time is an argument, the output is the new `:path`.
//!
//! Settings follow what S3 verifies: the path is encoded once by us (no double
//! encoding, no normalisation), the only signed header is `host`, the payload is
//! `UNSIGNED-PAYLOAD`, and a session token is part of the signed query.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::canonical::{encode_key_into, encode_query_into, format_query};
use crate::config::Origin;
use crate::credentials::Credentials;

/// The two methods the filter signs; each URL is valid for its own method only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: download (and ranged download).
    Get,
    /// `HEAD`: metadata only.
    Head,
}

impl Method {
    /// Recognises the signable methods (exact, upper-case, as HTTP requires).
    pub fn parse(m: &str) -> Option<Self> {
        match m {
            "GET" => Some(Method::Get),
            "HEAD" => Some(Method::Head),
            _ => None,
        }
    }

    /// The method as it appears on the wire and in the canonical request.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }
}

/// Why signing failed; the category is stable and never carries a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// The URL we built was rejected by the signer's URI parser.
    InvalidUri,
    /// The signer itself failed.
    Signer,
}

impl SignError {
    /// Stable category for logs and metrics.
    pub fn category(self) -> &'static str {
        match self {
            SignError::InvalidUri => "invalid_uri",
            SignError::Signer => "signer",
        }
    }
}

/// Credentials ready for the signer, built once per configuration.
#[derive(Debug, Clone)]
pub struct Signer {
    identity: Identity,
    access_key_id: String,
}

impl Signer {
    /// Wraps credentials into the signer's identity type once, not per request.
    pub fn new(creds: &Credentials) -> Self {
        let c = aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().map(str::to_string),
            None,
            "envoy-presign",
        );
        Self {
            identity: c.into(),
            access_key_id: creds.access_key_id().to_string(),
        }
    }

    /// The access key id, which identifies the credentials in cache keys and logs.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

/// The signed request: what the filter puts in `:path` (and `:authority`, from
/// the origin), plus when the URL stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// Path and query of the presigned URL.
    pub path: String,
    /// The instant `X-Amz-Date + X-Amz-Expires`, after which S3 refuses the URL.
    pub expires_at: SystemTime,
}

/// The encoded path (without query) of the object on the origin.
pub fn object_path(origin: &Origin, key: &str) -> String {
    let mut p = String::with_capacity(origin.url_path_prefix.len() + 1 + key.len() * 3);
    p.push_str(&origin.url_path_prefix);
    p.push('/');
    encode_key_into(&mut p, key);
    p
}

/// Presigns `method key` on `origin` at time `now` for `expires_in`.
pub fn presign(
    origin: &Origin,
    method: Method,
    key: &str,
    query: &[(String, String)],
    signer: &Signer,
    now: SystemTime,
    expires_in: Duration,
) -> Result<Presigned, SignError> {
    let mut path = object_path(origin, key);
    let base_query = format_query(query);
    let uri = if base_query.is_empty() {
        format!("{}://{}{}", origin.endpoint.scheme, origin.authority, path)
    } else {
        format!(
            "{}://{}{}?{}",
            origin.endpoint.scheme, origin.authority, path, base_query
        )
    };

    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.expires_in = Some(expires_in);

    let params = SigningParams::builder()
        .identity(&signer.identity)
        .region(&origin.region)
        .name(&origin.service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|_| SignError::Signer)?
        .into();

    let request = SignableRequest::new(
        method.as_str(),
        uri,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|_| SignError::InvalidUri)?;
    let output = sign(request, &params).map_err(|_| SignError::Signer)?;
    let (instructions, _signature) = output.into_parts();

    path.push('?');
    path.push_str(&base_query);
    let mut first = base_query.is_empty();
    for (name, value) in instructions.params() {
        if !first {
            path.push('&');
        }
        first = false;
        encode_query_into(&mut path, name);
        path.push('=');
        encode_query_into(&mut path, value);
    }
    Ok(Presigned {
        path,
        expires_at: now + expires_in,
    })
}

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
    fingerprint: String,
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
            fingerprint: fingerprint(creds),
        }
    }

    /// Identifies the whole credential set (key id, secret, token) in cache
    /// identities, so rotating the secret or the token for the same key id
    /// never serves a URL signed with the old one. A truncated SHA-256: it
    /// reveals nothing usable about the secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The access key id, which identifies the credentials in cache keys and logs.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

fn fingerprint(creds: &Credentials) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"envoy-presign credential fingerprint\0");
    h.update(creds.access_key_id().as_bytes());
    h.update(b"\0");
    h.update(creds.secret_access_key().as_bytes());
    h.update(b"\0");
    h.update(creds.session_token().unwrap_or_default().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(16 + creds.access_key_id().len() + 1);
    out.push_str(creds.access_key_id());
    out.push('/');
    for b in digest.iter().take(8) {
        out.push_str(&format!("{b:02x}"));
    }
    out
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
    // boto3's order: client parameters, the X-Amz-* parameters as the signer
    // lists them, and the signature last (the signer puts the session token
    // after it). Same order, same bytes: downstream caches see one URL.
    let params = instructions.params();
    let is_signature = |name: &str| name == "X-Amz-Signature";
    let ordered = params
        .iter()
        .filter(|(n, _)| !is_signature(n))
        .chain(params.iter().filter(|(n, _)| is_signature(n)));
    for (i, (name, value)) in ordered.enumerate() {
        if i > 0 || !base_query.is_empty() {
            path.push('&');
        }
        encode_query_into(&mut path, name);
        path.push('=');
        encode_query_into(&mut path, value);
    }
    Ok(Presigned {
        path,
        expires_at: now + expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde::Deserialize;
    use std::time::UNIX_EPOCH;

    /// One boto3-generated URL (see `scripts/gen_vectors.py`).
    #[derive(Deserialize)]
    struct Vector {
        name: String,
        method: String,
        endpoint: String,
        bucket: String,
        key: String,
        addressing: String,
        region: String,
        service: String,
        expires_in: u64,
        time: u64,
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        query: Vec<(String, String)>,
        url: String,
    }

    fn config_for(v: &Vector) -> Config {
        let doc = serde_json::json!({
            "credentials": {
                "source": "inline",
                "access_key_id": v.access_key_id,
                "secret_access_key": v.secret_access_key,
                "session_token": v.session_token,
            },
            "origins": [{
                "name": "vector",
                "match": {"prefix": "/"},
                "endpoint": v.endpoint,
                "bucket": v.bucket,
                "addressing": v.addressing,
                "region": v.region,
                "service": v.service,
                "expires_in": v.expires_in,
                "allow_query": v.query.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            }],
        });
        Config::parse(doc.to_string().as_bytes(), &|_| None)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name))
    }

    #[test]
    fn byte_identical_to_boto3() {
        let vectors: Vec<Vector> =
            serde_json::from_str(include_str!("../tests/vectors/presign.json")).unwrap();
        assert!(vectors.len() >= 40, "vector file too small");
        for v in &vectors {
            let config = config_for(v);
            let origin = &config.origins[0];
            let signer = config.signer.as_ref().unwrap();
            let method = Method::parse(&v.method).unwrap();
            let now = UNIX_EPOCH + Duration::from_secs(v.time);
            let p = presign(
                origin,
                method,
                &v.key,
                &v.query,
                signer,
                now,
                origin.expires_in,
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
            let url = format!(
                "{}://{}{}",
                origin.endpoint.scheme, origin.authority, p.path
            );
            assert_eq!(url, v.url, "vector {}", v.name);
            assert_eq!(p.expires_at, now + Duration::from_secs(v.expires_in));
        }
    }

    #[test]
    fn get_and_head_sign_differently() {
        let doc = br#"{"credentials":{"source":"inline","access_key_id":"AKID","secret_access_key":"s"},
            "origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#;
        let c = Config::parse(doc, &|_| None).unwrap();
        let s = c.signer.as_ref().unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = Duration::from_secs(60);
        let get = presign(&c.origins[0], Method::Get, "k", &[], s, t, d).unwrap();
        let head = presign(&c.origins[0], Method::Head, "k", &[], s, t, d).unwrap();
        assert_ne!(get.path, head.path);
        assert!(get
            .path
            .starts_with("/bkt/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
        assert!(
            !get.path.contains("&s&") && !get.path.contains("=s&"),
            "secret must not appear"
        );
    }
}

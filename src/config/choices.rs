//! The settings of an origin that are one word out of a few: how the bucket
//! appears in the URL, how the object is delivered, and what happens to a
//! request the filter cannot or will not sign. Read as they are from the
//! JSON, and kept as they are in the compiled `Origin`.

use serde::Deserialize;

/// How the bucket appears in the URL: `/bucket/key` or `bucket.host/key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `https://host/bucket/key` — works with every S3-compatible server.
    Path,
    /// `https://bucket.host/key` — AWS's preferred style; needs DNS for the bucket.
    Virtual,
}

/// What to do when a matched request cannot be signed (no credentials, signer error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer 503 `signing_unavailable` locally; nothing reaches the origin.
    Deny,
    /// Forward the request unsigned (the origin decides); counted as a fallback.
    Passthrough,
}

/// How a matched GET or HEAD reaches the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Envoy forwards the presigned request and relays the object (the default).
    Proxy,
    /// Envoy answers 307 with the presigned URL in `Location`; the client
    /// fetches the object from `public_endpoint` itself, so no object byte
    /// flows through Envoy.
    Redirect,
}

/// What to do with methods other than GET and HEAD on a matched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherMethods {
    /// Answer 405 locally with `Allow: GET, HEAD`.
    Deny,
    /// Forward unchanged and unsigned.
    Passthrough,
}

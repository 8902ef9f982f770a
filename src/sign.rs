//! SigV4 query-string presigning of one object request. Pure: the time is an
//! argument, the output is the new `:path`.
//!
//! What S3 verifies decides the shape: the path is encoded once by us (no
//! double encoding, no normalisation), the only signed header is `host`, the
//! payload is `UNSIGNED-PAYLOAD`, and a session token is part of the signed
//! query. For this one shape the canonical request is written directly, and
//! the `aws-sigv4` crate supplies the cryptography (`generate_signing_key`,
//! `calculate_signature`). The derived signing key only changes with the UTC
//! date, region and service, so it is kept instead of re-derived (four HMACs)
//! on every request. The tests check every URL against boto3's and against
//! `aws-sigv4`'s own full signer.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest, Sha256};

use crate::canonical::{encode_key_into, encode_query_into, format_query_into};
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
    /// The URL could not be built (kept for the metrics' stable categories).
    InvalidUri,
    /// The signing time is not representable (before 1970 or after 9999).
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

/// A signing key derived for one UTC day, region and service.
#[derive(Clone)]
struct DerivedKey {
    day: u64,
    region: String,
    service: String,
    key: Vec<u8>,
}

/// How many (day, region, service) keys a signer keeps: a few origins' worth.
const KEY_CACHE_SIZE: usize = 8;

/// Credentials ready for signing, built once per configuration.
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    fingerprint: String,
    keys: RefCell<Vec<DerivedKey>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Keeps the credentials for signing.
    pub fn new(creds: &Credentials) -> Self {
        Self {
            credentials: creds.clone(),
            fingerprint: fingerprint(creds),
            keys: RefCell::new(Vec::new()),
        }
    }

    /// When the credentials stop working (Unix ms); `None` for static keys.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.credentials.expires_at_ms()
    }

    /// The access key id, which identifies the credentials in cache keys and logs.
    pub fn access_key_id(&self) -> &str {
        self.credentials.access_key_id()
    }

    /// Identifies the whole credential set (key id, secret, token) in cache
    /// identities, so rotating the secret or the token for the same key id
    /// never serves a URL signed with the old one. A truncated SHA-256: it
    /// reveals nothing usable about the secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs `string_to_sign` with the key of `day` (days since the epoch).
    fn signature(
        &self,
        at: SystemTime,
        day: u64,
        region: &str,
        service: &str,
        string_to_sign: &str,
    ) -> String {
        let mut keys = self.keys.borrow_mut();
        if let Some(k) = keys
            .iter()
            .find(|k| k.day == day && k.region == region && k.service == service)
        {
            return calculate_signature(&k.key, string_to_sign.as_bytes());
        }
        let key = generate_signing_key(self.credentials.secret_access_key(), at, region, service)
            .as_ref()
            .to_vec();
        let signature = calculate_signature(&key, string_to_sign.as_bytes());
        if keys.len() >= KEY_CACHE_SIZE {
            keys.remove(0);
        }
        keys.push(DerivedKey {
            day,
            region: region.to_string(),
            service: service.to_string(),
            key,
        });
        signature
    }
}

fn fingerprint(creds: &Credentials) -> String {
    let mut h = Sha256::new();
    h.update(b"envoy-presign credential fingerprint\0");
    h.update(creds.access_key_id().as_bytes());
    h.update(b"\0");
    h.update(creds.secret_access_key().as_bytes());
    h.update(b"\0");
    h.update(creds.session_token().unwrap_or_default().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(creds.access_key_id().len() + 17);
    out.push_str(creds.access_key_id());
    out.push('/');
    push_hex(&mut out, digest.get(..8).unwrap_or_default());
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
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
    object_path_into(&mut p, origin, key);
    p
}

/// Appends `object_path(origin, key)` to `out`.
pub fn object_path_into(out: &mut String, origin: &Origin, key: &str) {
    out.push_str(&origin.url_path_prefix);
    out.push('/');
    encode_key_into(out, key);
}

/// The object's URL path and allowed query without a signature: what an
/// unsigned fallback (`on_error: passthrough`) forwards.
pub fn unsigned_path(origin: &Origin, key: &str, query: &[(String, String)]) -> String {
    let mut p = object_path(origin, key);
    if !query.is_empty() {
        p.push('?');
        format_query_into(&mut p, query);
    }
    p
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a Unix time (proleptic Gregorian, UTC).
fn amz_dates(secs: u64) -> Option<(String, String)> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
    let z = i64::try_from(days).ok()? + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let date = format!("{year:04}{month:02}{day:02}");
    let datetime = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    Some((date, datetime))
}

/// Presigns `method key` on `origin` at time `now` (whole seconds) for `expires_in`.
pub fn presign(
    origin: &Origin,
    method: Method,
    key: &str,
    query: &[(String, String)],
    signer: &Signer,
    now: SystemTime,
    expires_in: Duration,
) -> Result<Presigned, SignError> {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignError::Signer)?
        .as_secs();
    let (date, datetime) = amz_dates(secs).ok_or(SignError::Signer)?;
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    let creds = &signer.credentials;
    let credential = format!(
        "{}/{date}/{}/{}/aws4_request",
        creds.access_key_id(),
        origin.region,
        origin.service
    );
    let expires = expires_in.as_secs().to_string();

    // The X-Amz-* parameters in the order boto3 writes them; the signature
    // (appended last) is not part of the canonical request.
    let mut amz: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", &datetime),
        ("X-Amz-Expires", &expires),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = creds.session_token() {
        amz.push(("X-Amz-Security-Token", token));
    }

    // Encoded pairs: client parameters first (as boto3), then ours.
    let encode = |k: &str, v: &str| {
        let mut ek = String::with_capacity(k.len());
        encode_query_into(&mut ek, k);
        let mut ev = String::with_capacity(v.len() + 16);
        encode_query_into(&mut ev, v);
        (ek, ev)
    };
    let pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| encode(k, v))
        .chain(amz.iter().map(|(k, v)| encode(k, v)))
        .collect();
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();

    let path = object_path(origin, key);
    let mut creq = String::with_capacity(
        256 + path.len()
            + pairs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    creq.push_str(method.as_str());
    creq.push('\n');
    creq.push_str(&path);
    creq.push('\n');
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            creq.push('&');
        }
        creq.push_str(k);
        creq.push('=');
        creq.push_str(v);
    }
    creq.push_str("\nhost:");
    creq.push_str(&origin.authority);
    creq.push_str("\n\nhost\nUNSIGNED-PAYLOAD");

    let mut sts = String::with_capacity(160);
    sts.push_str("AWS4-HMAC-SHA256\n");
    sts.push_str(&datetime);
    sts.push('\n');
    sts.push_str(
        credential
            .get(creds.access_key_id().len() + 1..)
            .unwrap_or_default(),
    );
    sts.push('\n');
    push_hex(&mut sts, &Sha256::digest(creq.as_bytes()));

    let signature = signer.signature(at, secs / 86_400, &origin.region, &origin.service, &sts);

    let mut out = path;
    out.reserve(
        pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
            + 90,
    );
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.push_str("&X-Amz-Signature=");
    out.push_str(&signature);
    Ok(Presigned {
        path: out,
        expires_at: at + expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::testing::Vector;
    use std::time::UNIX_EPOCH;

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
                // The lifetime is passed to `presign` directly: vectors cover
                // the signer's whole range (1 s too), below what a cache
                // configuration accepts.
                "allow_query": v.query.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            }],
        });
        Config::parse(doc.to_string().as_bytes(), &|_| None)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name))
    }

    #[test]
    fn byte_identical_to_boto3() {
        let vectors = crate::testing::boto3_vectors();
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
                Duration::from_secs(v.expires_in),
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

    /// `aws-sigv4`'s own full signer, configured as S3 requires: the reference
    /// the direct canonical request must agree with.
    fn reference(
        origin: &Origin,
        method: Method,
        key: &str,
        query: &[(String, String)],
        creds: &Credentials,
        now: SystemTime,
        expires_in: Duration,
    ) -> String {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SignatureLocation, SigningSettings, UriPathNormalizationMode,
        };
        use aws_sigv4::sign::v4::SigningParams;
        let identity = aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().map(str::to_string),
            None,
            "test",
        )
        .into();
        let path = object_path(origin, key);
        let q = crate::canonical::format_query(query);
        let uri = format!(
            "{}://{}{}?{}",
            origin.endpoint.scheme, origin.authority, path, q
        );
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.expires_in = Some(expires_in);
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&origin.region)
            .name(&origin.service)
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let req = SignableRequest::new(
            method.as_str(),
            uri,
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .unwrap();
        let (instructions, _) = sign(req, &params).unwrap().into_parts();
        let sig = instructions
            .params()
            .iter()
            .find(|(k, _)| *k == "X-Amz-Signature")
            .unwrap()
            .1
            .to_string();
        sig
    }

    #[test]
    fn agrees_with_the_aws_sigv4_signer_across_days_regions_and_keys() {
        let keys = [
            "a",
            "my file(1).mp4",
            "caf\u{e9}/\u{4e2d}.png",
            "a+b=c&d;e,f'g!h*i(j)k@l$m:n",
            "//x//",
            "%25",
            "\u{1f3ac}",
        ];
        let regions = ["us-east-1", "eu-west-3", "auto"];
        for (t, token) in [
            (1_700_000_000u64, None),
            (1_709_251_199, Some("tok/en+=")),
            (1_709_251_200, None),
            (4_102_444_799, Some("x")),
        ] {
            for region in regions {
                let doc = serde_json::json!({
                    "credentials": {"source": "inline", "access_key_id": "AKIDX", "secret_access_key": "sec/ret+", "session_token": token},
                    "origins": [{"name": "o", "match": {"prefix": "/"}, "endpoint": "https://s3.example.com:8443",
                                 "bucket": "bkt", "addressing": "virtual", "region": region, "allow_query": ["versionId"]}],
                });
                let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
                let signer = c.signer.as_ref().unwrap();
                let creds = &signer.credentials;
                for key in keys {
                    for method in [Method::Get, Method::Head] {
                        for query in [vec![], vec![("versionId".to_string(), "v+1/=".to_string())]]
                        {
                            let now = UNIX_EPOCH + Duration::from_secs(t);
                            let exp = Duration::from_secs(900);
                            let ours =
                                presign(&c.origins[0], method, key, &query, signer, now, exp)
                                    .unwrap();
                            let sig =
                                reference(&c.origins[0], method, key, &query, creds, now, exp);
                            assert!(
                                ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                                "{key} {region} {t}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// One signer keeps derived keys per (UTC day, region, service). Signing
    /// with one `Signer` on both sides of UTC midnight, in two regions and two
    /// services, in an order that comes back to each key after the others,
    /// must give the reference signer's signature every time: a lookup that
    /// served yesterday's key, or another region's or service's, would not.
    #[test]
    fn one_signer_uses_the_key_of_each_day_region_and_service() {
        let creds = Credentials::new("AKIDX".into(), "sec/ret+".into(), None);
        let signer = Signer::new(&creds);
        let origins: Vec<Config> = [("us-east-1", "s3"), ("eu-west-3", "s3"), ("us-east-1", "s3express")]
            .iter()
            .map(|(region, service)| {
                let doc = serde_json::json!({
                    "origins": [{"name": "o", "match": {"prefix": "/"}, "endpoint": "https://s3.example.com",
                                 "bucket": "bkt", "region": region, "service": service}],
                });
                Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap()
            })
            .collect();
        let exp = Duration::from_secs(900);
        // 23:59:59 on 2024-02-29, then 00:00:00 on 2024-03-01, then back.
        for t in [
            1_709_251_199u64,
            1_709_251_200,
            1_709_251_199,
            1_709_337_600,
        ] {
            for c in &origins {
                let origin = &c.origins[0];
                let now = UNIX_EPOCH + Duration::from_secs(t);
                let ours = presign(origin, Method::Get, "k", &[], &signer, now, exp).unwrap();
                let sig = reference(origin, Method::Get, "k", &[], &creds, now, exp);
                assert!(
                    ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                    "{t} {} {}",
                    origin.region,
                    origin.service
                );
            }
        }
    }

    /// A signer's `Debug` names the access key id and never the secret or
    /// the session token.
    #[test]
    fn signer_debug_shows_the_key_id_only() {
        let s = Signer::new(&Credentials::new(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI".into(),
            Some("SESSIONTOKEN".into()),
        ));
        let d = format!("{s:?}");
        assert!(d.contains("AKIDEXAMPLE"), "{d}");
        assert!(
            !d.contains("wJalrXUtnFEMI") && !d.contains("SESSIONTOKEN"),
            "{d}"
        );
    }

    /// Credentials, a fresh signer and one origin, for the derived-key cache tests.
    fn key_cache_fixture() -> (Credentials, Signer, Config) {
        let creds = Credentials::new("AKIDX".into(), "sec/ret+".into(), None);
        let signer = Signer::new(&creds);
        let c = Config::parse(br#"{"origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#, &|_| None).unwrap();
        (creds, signer, c)
    }

    /// Within one UTC day, region and service the signing key is derived once
    /// and reused, whatever the time of day.
    #[test]
    fn one_key_per_day_is_derived_and_reused() {
        let (creds, signer, c) = key_cache_fixture();
        let origin = &c.origins[0];
        let midnight = 1_699_920_000u64; // 2023-11-14T00:00:00Z
        for t in [midnight, midnight + 1, midnight + 43_200, midnight + 86_399] {
            let now = UNIX_EPOCH + Duration::from_secs(t);
            let exp = Duration::from_secs(60);
            let ours = presign(origin, Method::Get, "k", &[], &signer, now, exp).unwrap();
            let sig = reference(origin, Method::Get, "k", &[], &creds, now, exp);
            assert!(
                ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                "{t}"
            );
        }
        assert_eq!(signer.keys.borrow().len(), 1);
    }

    /// The derived-key cache is bounded: signing on more distinct days than
    /// it holds keeps `KEY_CACHE_SIZE` keys, and a day whose key was evicted
    /// is derived again correctly.
    #[test]
    fn key_cache_is_bounded_and_rederives_evicted_keys() {
        let (creds, signer, c) = key_cache_fixture();
        let origin = &c.origins[0];
        let exp = Duration::from_secs(60);
        let days = u64::try_from(KEY_CACHE_SIZE).unwrap() + 3;
        for round in 0..2 {
            for d in 0..days {
                let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + d * 86_400);
                let ours = presign(origin, Method::Get, "k", &[], &signer, now, exp).unwrap();
                let sig = reference(origin, Method::Get, "k", &[], &creds, now, exp);
                assert!(
                    ours.path.ends_with(&format!("&X-Amz-Signature={sig}")),
                    "round {round} day {d}"
                );
                assert!(signer.keys.borrow().len() <= KEY_CACHE_SIZE);
            }
        }
        assert_eq!(signer.keys.borrow().len(), KEY_CACHE_SIZE);
    }

    #[test]
    fn dates() {
        assert_eq!(
            amz_dates(0).unwrap(),
            ("19700101".into(), "19700101T000000Z".into())
        );
        assert_eq!(amz_dates(951_782_400).unwrap().0, "20000229");
        assert_eq!(amz_dates(1_709_251_199).unwrap().1, "20240229T235959Z");
        assert_eq!(amz_dates(4_102_444_800).unwrap().0, "21000101");
        assert!(amz_dates(253_402_300_800).is_none(), "year 10000");
        let s = Signer::new(&Credentials::new("A".into(), "s".into(), None));
        let c = Config::parse(br#"{"origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#, &|_| None).unwrap();
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            presign(
                &c.origins[0],
                Method::Get,
                "k",
                &[],
                &s,
                before_epoch,
                Duration::from_secs(1)
            ),
            Err(SignError::Signer)
        );
    }

    /// `amz_dates` against a naive calendar over its whole range (1970 to
    /// 9999): the first and last day of every year and the days around the
    /// end of February, where the century and 400-year rules bite.
    #[test]
    fn dates_agree_with_a_naive_calendar_through_9999() {
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut first_day = 0u64; // days since 1970-01-01 of January 1st
        for year in 1970..=9999u64 {
            let feb = if leap(year) { 29 } else { 28 };
            let check = |day_of_year: u64, month: u64, day: u64| {
                let secs = (first_day + day_of_year) * 86_400 + 86_399;
                let (date, datetime) = amz_dates(secs).unwrap();
                assert_eq!(date, format!("{year:04}{month:02}{day:02}"));
                assert_eq!(datetime, format!("{date}T235959Z"));
            };
            check(0, 1, 1);
            check(31 + 27, 2, 28);
            check(31 + feb - 1, 2, feb);
            check(31 + feb, 3, 1);
            let len = 337 + feb;
            check(len - 1, 12, 31);
            first_day += len;
        }
        assert!(amz_dates(first_day * 86_400).is_none(), "year 10000");
    }

    #[test]
    fn get_and_head_sign_differently() {
        let doc = br#"{"credentials":{"source":"inline","access_key_id":"AKID","secret_access_key":"s"},
            "origins":[{"name":"o","match":{"prefix":"/"},"endpoint":"http://h","bucket":"bkt","region":"r"}]}"#;
        let c = Config::parse(doc, &|_| None).unwrap();
        let s = c.signer.as_ref().unwrap();
        assert!(
            !format!("{s:?}").contains("\"s\""),
            "Debug redacts the secret"
        );
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

    /// Issue 10: a signer knows when its credentials stop working (what
    /// caps its URLs); static keys never do.
    #[test]
    fn a_signer_knows_when_its_credentials_expire() {
        let tmp = Credentials::temporary(
            "ASIA".into(),
            "s".into(),
            Some("t".into()),
            1_700_000_000_000,
        );
        assert_eq!(Signer::new(&tmp).expires_at_ms(), Some(1_700_000_000_000));
        let fixed = Credentials::new("AKID".into(), "s".into(), None);
        assert_eq!(Signer::new(&fixed).expires_at_ms(), None);
    }
}
